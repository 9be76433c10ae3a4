//! bertlite-tool: compile BERT checkpoints into bertlite bundles on the host.

mod checkpoint;
mod compile;
mod data;
mod eval;
mod graph;
mod prune;
mod quantize;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use bertlite::PrecisionChoice;
use clap::{Parser, Subcommand};

/// Compile, quantize and evaluate BERT classifiers for bertlite.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a Hugging Face BERT checkpoint directory into one bundle file.
    Compile {
        /// Checkpoint directory (config.json, model.safetensors, tokenizer.json or vocab.txt).
        #[arg(long)]
        model_dir: PathBuf,
        /// Output bundle (default: <model dir name>.blt).
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
        /// Texts to measure pruning importance on (JSONL/CSV; default: the --train file).
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// How many calibration texts to use.
        #[arg(long, default_value_t = 128)]
        calibration_texts: usize,
    },
    /// Evaluate bundles (and the fp32 checkpoint) on labeled data: accuracy, macro-F1, agreement
    /// and embedding cosine with the reference, size, FLOPs, batch-1 latency.
    Eval {
        /// Labeled examples (JSONL or CSV, as for --train).
        #[arg(long)]
        data: PathBuf,
        /// The fp32 checkpoint the bundles came from; becomes the reference row.
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG plot (accuracy vs latency, marker size = bundle size) here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// How many texts to time for latency.
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
            model_dir,
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
            calibration,
            calibration_texts,
        } => {
            let output = output.unwrap_or_else(|| compile::default_output(&model_dir));
            compile::compile(&compile::CompileOptions {
                model_dir,
                output,
                train,
                max_len,
                quantize: !no_quantize,
                multi_label,
                l2,
                threads: threads.unwrap_or_else(compile::threads_default),
                prune: prune::PruneOptions { ffn: prune_ffn, heads: prune_heads, drop_layers },
                calibration,
                calibration_texts,
            })
        }
        Command::Footprint { bundle, text, precision } => {
            eval::footprint_child(&bundle, &text, precision)
        }
        Command::Plot { json, output } => {
            let text = std::fs::read_to_string(&json)?;
            let report: eval::Report = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not an eval report: {e}", json.display()))?;
            bertlite::bundle::write_atomic(&output, eval::plot_svg(&report).as_bytes())?;
            Ok(())
        }
        Command::Eval {
            data,
            model_dir,
            json,
            svg,
            latency_texts,
            threads,
            precision,
            bundles,
        } => {
            eval::eval(&eval::EvalOptions {
                data,
                model_dir,
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
