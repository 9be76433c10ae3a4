//! bertlite-tool: compile BERT checkpoints into bertlite bundles on the host.

// Layers, each using only those above it in this list:
// the checkpoint in memory and what is read beside it;
mod config;
mod data;
mod model;
mod quantize;
mod train;
// the two readers, and the choice between them;
mod hf;
mod onnx;
mod source;
// checkpoint → graph → bundle, and embedding with the runtime;
mod bundle;
mod calibrate;
mod embed;
mod gptq;
mod graph;
// the commands' work.
mod budget;
mod compile;
mod distill;
mod eval;
mod finetune;
mod latency;
mod onnx_check;
mod prune;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bertlite::PoolingMode;
use bertlite::PrecisionChoice;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::source::Source;

/// Compile, quantize and evaluate BERT classifiers for bertlite.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The model to read: a Hugging Face folder or an ONNX export.
#[derive(Args)]
struct SourceArgs {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json or vocab.txt).
    #[arg(long, conflicts_with = "onnx")]
    model_dir: Option<PathBuf>,
    /// An ONNX export of a BERT model (BertModel, BertForSequenceClassification or
    /// sentence-transformers; fp32, or int8 weights behind DequantizeLinear or Cast/Mul).
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// With --onnx: tokenizer.json, vocab.txt, or a folder holding one (default: beside the
    /// ONNX file; an ONNX file carries no tokenizer).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// With --onnx: attention heads per layer (default: config.json beside the file, else read
    /// off the graph).
    #[arg(long)]
    heads: Option<usize>,
    /// With --onnx: sentence pooling (default: the graph's own, else mean).
    #[arg(long)]
    pooling: Option<PoolingArg>,
    /// With --onnx: L2-normalize the pooled vector (default: as the graph does).
    #[arg(long)]
    normalize: Option<bool>,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolingArg {
    Mean,
    Cls,
    Max,
}

impl SourceArgs {
    fn source(self) -> anyhow::Result<Option<Source>> {
        let onnx_only = self.tokenizer.is_some()
            || self.heads.is_some()
            || self.pooling.is_some()
            || self.normalize.is_some();
        anyhow::ensure!(
            self.onnx.is_some() || !onnx_only,
            "--tokenizer, --heads, --pooling and --normalize apply to --onnx input only"
        );
        if let Some(dir) = self.model_dir {
            return Ok(Some(Source::Dir(dir)));
        }
        let pooling = self.pooling.map(|p| match p {
            PoolingArg::Mean => PoolingMode::Mean,
            PoolingArg::Cls => PoolingMode::Cls,
            PoolingArg::Max => PoolingMode::Max,
        });
        let opts = onnx::OnnxOptions {
            tokenizer: self.tokenizer,
            heads: self.heads,
            pooling,
            normalize: self.normalize,
        };
        Ok(self.onnx.map(|path| Source::Onnx(path, opts)))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Compile a BERT checkpoint (Hugging Face folder or ONNX export) into one bundle file.
    Compile {
        #[command(flatten)]
        source: SourceArgs,
        /// Output bundle (default: the model folder's or ONNX file's name, with .blt).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Labeled examples (JSONL {"text","label"} or CSV with text,label) to train a head on.
        #[arg(long)]
        train: Option<PathBuf>,
        /// Maximum tokens per text, special tokens included (default: from the checkpoint).
        #[arg(long)]
        max_len: Option<usize>,
        /// Keep f32 weights (no int8 quantization).
        #[arg(long)]
        no_quantize: bool,
        /// Train independent (sigmoid) labels instead of one label per text.
        #[arg(long)]
        multi_label: bool,
        /// L2 penalty of the trained head (default: chosen on a held-out fifth of --train).
        #[arg(long)]
        l2: Option<f32>,
        /// Threads used to embed training data (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Remove this fraction of the FFN neurons in every layer (e.g. 0.5).
        #[arg(long, default_value_t = 0.0)]
        prune_ffn: f32,
        /// Remove this fraction of the attention heads in every layer (e.g. 0.25).
        #[arg(long, default_value_t = 0.0)]
        prune_heads: f32,
        /// Remove this many whole layers (the ones that change their input least).
        #[arg(long, default_value_t = 0)]
        drop_layers: usize,
        /// Prune to this fraction of the encoder's FLOPs (e.g. 0.5), each layer cut by what it
        /// can spare (measured on the calibration texts), instead of --prune-ffn/--prune-heads/
        /// --drop-layers.
        #[arg(long, conflicts_with_all = ["prune_ffn", "prune_heads", "drop_layers"])]
        target_flops: Option<f32>,
        /// Prune to this fraction of the encoder's estimated batch-1 latency (e.g. 0.55 for a
        /// 1.8× speed-up), alone or with --target-flops. The latency model is measured on this
        /// machine first (three bundles timed on the calibration texts, a few seconds): what an
        /// attention multiply-add and a layer's fixed work cost against an int8 linear one.
        #[arg(long, conflicts_with_all = ["prune_ffn", "prune_heads", "drop_layers"])]
        target_latency: Option<f32>,
        /// What --target-flops / --target-latency score each candidate cut by: `cosine` (how far
        /// the pooled embedding moves) or `task` (how far the logits of a head fitted to the
        /// labeled calibration texts move; needs labels).
        #[arg(long, value_enum, default_value_t = prune::PruneScore::Cosine)]
        prune_score: prune::PruneScore,
        /// How each layer's FFN neurons and heads are chosen for its cut: `norms` (largest
        /// activation × weight norm) or `repair` (greedy removal of what the least-squares
        /// repair can best do without; with --no-repair, the norms).
        #[arg(long, value_enum, default_value_t = prune::PruneSelect::Norms)]
        prune_select: prune::PruneSelect,
        /// Texts to measure pruning importance and to calibrate the int8 rounding on (JSONL/CSV;
        /// default: the --train file; the rounding also uses a built-in varied sample).
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Prune without refitting what remains (by default each pruned projection is refitted
        /// by least squares on the calibration activations).
        #[arg(long)]
        no_repair: bool,
        /// After pruning, train each kept layer toward the unpruned model's output at the same
        /// depth, on the calibration texts (no labels); a layer that does not get closer on
        /// other texts of the file keeps its weights.
        #[arg(long)]
        distill: bool,
        /// Passes over the calibration texts per layer, with --distill.
        #[arg(long, default_value_t = crate::distill::DistillOptions::default().epochs, requires = "distill")]
        distill_epochs: usize,
        /// With --distill, then train all kept layers together for this many passes over every
        /// text of the file (but the held-out ones) so that the pooled embedding points where the
        /// unpruned model's does; the epoch best on held-out texts is kept. 0: skip.
        #[arg(long, default_value_t = 0, requires = "distill")]
        distill_end_to_end: usize,
        /// Train the encoder (every kept layer) on the --train labels for this many passes,
        /// after any pruning: cross-entropy of a head on the pooled embedding, plus
        /// --finetune-kd × (1 − cosine) to the unpruned model's. Every fifth text is held out
        /// and the epoch best there kept; the bundle's head is then fitted as always. 0: skip.
        #[arg(long, default_value_t = 0)]
        finetune_epochs: usize,
        /// With --finetune-epochs, the weight of staying close to the unpruned model's pooled
        /// embedding (0: the labels alone).
        #[arg(long, default_value_t = crate::finetune::FinetuneOptions::default().kd)]
        finetune_kd: f32,
        /// With --finetune-epochs, Adam's peak step size: warmed up over the first tenth of
        /// the steps, then decayed linearly to 0.
        #[arg(long, default_value_t = crate::finetune::FinetuneOptions::default().lr)]
        finetune_lr: f32,
        /// How many calibration texts to use.
        #[arg(long, default_value_t = 128)]
        calibration_texts: usize,
        /// Tokens each calibration text is cut to for pruning (importance, repair, the budget's
        /// scoring, distillation); at most the model's limit.
        #[arg(long, default_value_t = 128)]
        calibration_tokens: usize,
        /// Round each int8 weight to its nearest step, instead of choosing the rounding that
        /// keeps each layer's output closest on calibration text (GPTQ).
        #[arg(long)]
        round_to_nearest: bool,
        /// Keep the checkpoint's pooler for `embed --pooled` (TF Hub's pooled_output); kept
        /// anyway when next-sentence or multiple-choice heads need it.
        #[arg(long)]
        pooled_output: bool,
        /// Let the bundle give every layer's output (`bertlite embed --layers`, TF Hub's
        /// encoder_outputs). Without it the graph returns the last layer only.
        #[arg(long)]
        encoder_outputs: bool,
    },
    /// Evaluate bundles (and the fp32 checkpoint) on labeled data: accuracy, macro-F1, agreement
    /// and embedding cosine with the reference, size, FLOPs, batch-1 latency.
    Eval {
        /// Labeled examples (JSONL or CSV, as for --train).
        #[arg(long)]
        data: PathBuf,
        /// The fp32 checkpoint the bundles came from (--model-dir or --onnx); becomes the
        /// reference row.
        #[command(flatten)]
        source: SourceArgs,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG plot (accuracy vs latency, marker size = bundle size) here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// How many texts to time for latency (each run 5 times, the bundles taking turns).
        #[arg(long, default_value_t = 50)]
        latency_texts: usize,
        /// Threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// How the bundles compute: auto, f32, f16 or int8 (see `bertlite info`).
        #[arg(long, default_value = "auto")]
        precision: PrecisionChoice,
        /// Bundles to evaluate.
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
    },
    /// (internal) Load a bundle, embed one text, print peak RSS in KiB: `eval` measures each
    /// model's memory in a fresh process with it.
    #[command(hide = true)]
    Footprint { bundle: PathBuf, text: String, precision: PrecisionChoice },
    /// Redraw the SVG plot from an `eval --json` file.
    Plot {
        /// The JSON written by `eval --json`.
        json: PathBuf,
        /// Output SVG.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compile {
            source,
            output,
            train,
            max_len,
            no_quantize,
            multi_label,
            l2,
            threads,
            prune_ffn,
            prune_heads,
            drop_layers,
            target_flops,
            target_latency,
            prune_score,
            prune_select,
            calibration,
            calibration_texts,
            calibration_tokens,
            round_to_nearest,
            no_repair,
            distill,
            distill_epochs,
            distill_end_to_end,
            finetune_epochs,
            finetune_kd,
            finetune_lr,
            pooled_output,
            encoder_outputs,
        } => {
            let source = source.source()?.context("give --model-dir DIR or --onnx FILE")?;
            let output = output.unwrap_or_else(|| compile::default_output(&source));
            compile::compile(&compile::CompileOptions {
                source,
                output,
                train,
                max_len,
                quantize: !no_quantize,
                multi_label,
                l2,
                threads: threads.unwrap_or_else(compile::threads_default),
                prune: prune::PruneOptions {
                    ffn: prune_ffn,
                    heads: prune_heads,
                    drop_layers,
                    repair: !no_repair,
                    target_flops,
                    target_latency,
                    score: prune_score,
                    select: prune_select,
                    distill: distill.then(|| crate::distill::DistillOptions {
                        epochs: distill_epochs,
                        end_to_end: distill_end_to_end,
                        ..Default::default()
                    }),
                },
                calibration,
                calibration_texts,
                calibration_tokens,
                calibrated_rounding: !round_to_nearest,
                pooled_output,
                encoder_outputs,
                finetune: crate::finetune::FinetuneOptions {
                    epochs: finetune_epochs,
                    kd: finetune_kd,
                    lr: finetune_lr,
                    ..Default::default()
                },
            })
        }
        Command::Footprint { bundle, text, precision } => {
            eval::footprint_child(&bundle, &text, precision)
        }
        Command::Plot { json, output } => {
            let text = std::fs::read_to_string(&json)?;
            let report: eval::Report = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not an eval report: {e}", json.display()))?;
            bertlite::internal::write_atomic(&output, eval::plot_svg(&report).as_bytes())?;
            Ok(())
        }
        Command::Eval { data, source, json, svg, latency_texts, threads, precision, bundles } => {
            eval::eval(&eval::EvalOptions {
                data,
                reference: source.source()?,
                bundles,
                json_out: json,
                svg_out: svg,
                latency_texts,
                threads: threads.unwrap_or_else(compile::threads_default),
                precision,
            })?;
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
