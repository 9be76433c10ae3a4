//! `bertlite-tool compile`: checkpoint → (prune) → quantize → graph → head → one bundle file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use bertlite::EncoderOptions;
use bertlite::internal::Head;
use bertlite::{Bundle, HeadInfo, HeadKind, PoolingMode, Task, TaskInfo};

use crate::budget::Score;
use crate::bundle::{build_bundle_with, head_section};
use crate::data::{Example, label_targets, read_examples};
use crate::embed::embed_all;
use crate::graph::Precision;
use crate::model::Checkpoint;
use crate::prune::{
    PruneOptions, PruneScore, PruneSelect, apply, encode_calibration, measure, prune,
    rank_by_repair,
};
use crate::source::Source;
use crate::train::{TrainOptions, choose_l2, train};

pub struct CompileOptions {
    pub source: Source,
    pub output: PathBuf,
    pub train: Option<PathBuf>,
    pub max_len: Option<usize>,
    pub quantize: bool,
    pub multi_label: bool,
    pub l2: Option<f32>,
    pub threads: usize,
    pub prune: PruneOptions,
    /// Texts for pruning importance and calibrated rounding (default: the training texts).
    pub calibration: Option<PathBuf>,
    pub calibration_texts: usize,
    /// Tokens each text is cut to for pruning.
    pub calibration_tokens: usize,
    /// Round int8 weights by their effect on calibration activations ([`crate::gptq`]), not
    /// each to its nearest step.
    pub calibrated_rounding: bool,
    /// Keep the checkpoint's pooler as a task head even if no other head needs it.
    pub pooled_output: bool,
    /// The graph also returns every layer's output (`bertlite embed --layers`).
    pub encoder_outputs: bool,
    /// Train the encoder on the `--train` labels after pruning (epochs 0: no).
    pub finetune: crate::finetune::FinetuneOptions,
}

pub fn threads_default() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn compile(opts: &CompileOptions) -> Result<()> {
    let start = Instant::now();
    ensure!(
        opts.prune.distill.is_none() || opts.prune.is_active(),
        "--distill trains a pruned encoder toward the unpruned one: give --prune-ffn, --prune-heads, --drop-layers, --target-flops or --target-latency"
    );
    ensure!(
        opts.prune.score == PruneScore::Cosine
            || opts.prune.target_flops.is_some()
            || opts.prune.target_latency.is_some(),
        "--prune-score scores the cuts of --target-flops / --target-latency: give one of them"
    );
    ensure!(
        opts.calibration_tokens >= 8,
        "--calibration-tokens {}: pruning needs at least 8 tokens of each calibration text",
        opts.calibration_tokens
    );
    ensure!(
        opts.finetune.epochs == 0 || opts.train.is_some(),
        "--finetune-epochs trains the encoder on labeled text: give --train FILE"
    );
    // Checked here, not where fine-tuning runs: pruning before it can take minutes.
    ensure!(
        opts.finetune.lr.is_finite() && opts.finetune.lr > 0.0,
        "--finetune-lr must be a positive number, got {}",
        opts.finetune.lr
    );
    ensure!(
        opts.finetune.kd.is_finite() && opts.finetune.kd >= 0.0,
        "--finetune-kd must be 0 or more, got {}",
        opts.finetune.kd
    );
    let mut ckpt = Checkpoint::open(&opts.source, opts.max_len)?;
    // An ONNX file was read by name and pattern: prove the reading against the file itself.
    let onnx_check = match &opts.source {
        Source::Onnx(path, _) => Some(crate::onnx_check::check(path, &ckpt)?),
        Source::Dir(_) => None,
    };
    if opts.pooled_output && !ckpt.tasks.iter().any(|(t, _)| t.task == Task::Pooler) {
        let p =
            ckpt.bert.pooler.as_ref().context("--pooled-output: the checkpoint has no pooler")?;
        let info = TaskInfo {
            task: Task::Pooler,
            labels: vec![],
            layer_norm_eps: ckpt.bert.eps,
            origin: format!("checkpoint {}", ckpt.architecture),
        };
        ckpt.tasks.insert(0, (info, [p.weight.data.clone(), p.bias.clone()].concat()));
    }
    let params_before = ckpt.bert.parameters();
    let flops_before = ckpt.bert.macs();
    // The user's calibration texts (--calibration, else --train), read once: pruning and the
    // int8 rounding both take every k-th of them, so all labels are represented.
    let calibration_path = opts.calibration.as_ref().or(opts.train.as_ref());
    let examples = match calibration_path {
        Some(path) => read_examples(path)?,
        None => Vec::new(),
    };
    let step = (examples.len() / opts.calibration_texts.max(1)).max(1);
    let texts: Vec<&str> = examples
        .iter()
        .step_by(step)
        .take(opts.calibration_texts)
        .map(|e| e.text.as_str())
        .collect();
    // Read once: the calibration examples unless --calibration named another file.
    let train_examples = match (&opts.train, &opts.calibration) {
        (Some(path), Some(_)) => read_examples(path)?,
        (Some(_), None) => examples.clone(),
        (None, _) => Vec::new(),
    };
    // What distillation and fine-tuning pull toward.
    let unpruned =
        (opts.prune.distill.is_some() || opts.finetune.epochs > 0).then(|| ckpt.bert.clone());
    let mut pruning = None;
    if opts.prune.is_active() {
        calibration_path.context(
            "pruning measures importance on text: give --calibration FILE or --train FILE",
        )?;
        let calibration =
            encode_calibration(&ckpt.tokenizer, &ckpt.vocab, &texts, opts.calibration_tokens)?;
        let mut importance = measure(&ckpt.bert, &calibration)?;
        if opts.prune.select == PruneSelect::Repair && opts.prune.repair {
            rank_by_repair(&ckpt.bert, &mut importance)?;
        }
        let target = crate::budget::Target {
            flops: opts.prune.target_flops,
            latency: opts.prune.target_latency,
        };
        // Texts apart from the calibration ones, for what must not be judged on the texts it
        // was fitted to (in-sample, a refit on few texts looks better than it is): the
        // budget's scoring of cuts and distillation's check of each layer. The calibration
        // texts only when the file has no others.
        let used = texts.len() * step;
        let rest: Vec<&str> = examples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % step != 0 || *i >= used)
            .map(|(_, e)| e.text.as_str())
            .collect();
        let every = (rest.len() / crate::budget::SENSITIVITY_TEXTS).max(1);
        let held_out: Vec<&str> =
            rest.iter().copied().step_by(every).take(crate::budget::SENSITIVITY_TEXTS).collect();
        let scoring = match held_out.is_empty() {
            true => None,
            false => Some(encode_calibration(
                &ckpt.tokenizer,
                &ckpt.vocab,
                &held_out,
                opts.calibration_tokens,
            )?),
        };
        let mut description = match target.flops.is_some() || target.latency.is_some() {
            true => {
                // FLOPs are counted at the texts' lengths as they will run (up to the model's
                // limit), not as cut for scoring.
                let counted = if held_out.is_empty() { &texts } else { &held_out };
                let lengths = crate::budget::Lengths::of(&encode_calibration(
                    &ckpt.tokenizer,
                    &ckpt.vocab,
                    counted,
                    ckpt.tokenizer.max_len,
                )?);
                // The latency model only decides with a latency target; without one it only
                // estimates the share reached, and the fitted costs do for that.
                let costs = match target.latency {
                    Some(_) => crate::latency::measure(&mut ckpt, &importance, counted)?,
                    None => crate::budget::Costs::fitted(),
                };
                let score = match opts.prune.score {
                    PruneScore::Cosine => Score::Cosine,
                    PruneScore::Task => task_score(&ckpt, &examples, opts.multi_label)?,
                };
                let (plan, description) = crate::budget::plan(
                    &ckpt.bert,
                    &importance,
                    crate::budget::Scoring {
                        texts: scoring.as_deref().unwrap_or(&calibration),
                        held_out: scoring.is_some(),
                        score: &score,
                    },
                    lengths,
                    target,
                    &costs,
                    opts.prune.repair,
                )?;
                apply(&mut ckpt.bert, &importance, &plan, opts.prune.repair)?;
                description
            }
            false => prune(&mut ckpt.bert, &importance, &opts.prune)?,
        };
        if let (Some(distill), Some(teacher)) = (&opts.prune.distill, &unpruned) {
            let check = scoring.as_deref().unwrap_or(&calibration);
            let report =
                crate::distill::distill(&mut ckpt.bert, teacher, &calibration, check, distill)?;
            description = format!("{description}; {}", report.describe(calibration.len(), distill));
            if distill.end_to_end > 0 {
                // Every text of the file but the held-out ones: the target is one vector per
                // text, so the whole file is affordable.
                let held: std::collections::HashSet<&str> = held_out.iter().copied().collect();
                let all: Vec<&str> = examples
                    .iter()
                    .map(|e| e.text.as_str())
                    .filter(|t| !held.contains(t))
                    .collect();
                let all = encode_calibration(
                    &ckpt.tokenizer,
                    &ckpt.vocab,
                    &all,
                    opts.calibration_tokens,
                )?;
                let report =
                    crate::distill::distill_pooled(&mut ckpt.bert, teacher, &all, check, distill)?;
                description = format!("{description}; {}", report.describe(distill.end_to_end));
            }
        }
        pruning = Some(format!(
            "{description}; calibration texts cut at {} tokens",
            opts.calibration_tokens.min(ckpt.tokenizer.max_len)
        ));
    }
    let finetuned = match (&unpruned, opts.finetune.epochs) {
        (Some(teacher), 1..) => {
            let (_, targets) = label_targets(&train_examples, opts.multi_label)?;
            let texts: Vec<&str> = train_examples.iter().map(|e| e.text.as_str()).collect();
            // At the texts' full length: the embeddings the head will see.
            let encoded =
                encode_calibration(&ckpt.tokenizer, &ckpt.vocab, &texts, ckpt.tokenizer.max_len)?;
            let report = crate::finetune::finetune(
                &mut ckpt.bert,
                teacher,
                &ckpt.pooling,
                (&encoded, &targets),
                opts.multi_label,
                &opts.finetune,
            )?;
            Some(report.describe(&opts.finetune))
        }
        _ => None,
    };
    let precision = if opts.quantize { Precision::Int8 } else { Precision::F32 };
    let hessians = match precision {
        Precision::Int8 if opts.calibrated_rounding => {
            // The built-in varied sample always, so the rounding serves any text; the user's
            // own texts (if given) on top, so it serves theirs best.
            let texts: Vec<&str> = crate::calibrate::BUILTIN_CALIBRATION
                .lines()
                .filter(|l| !l.trim().is_empty())
                .chain(texts.iter().copied())
                .collect();
            let calibration = encode_calibration(&ckpt.tokenizer, &ckpt.vocab, &texts, 128)?;
            Some((crate::calibrate::collect(&ckpt.bert, &calibration)?, texts.len()))
        }
        _ => None,
    };
    let mut bundle = build_bundle_with(
        &ckpt,
        precision,
        opts.encoder_outputs,
        hessians.as_ref().map(|h| &h.0[..]),
    )?;
    if let Some((_, texts)) = &hessians {
        bundle.metadata.quantization = format!(
            "{}, calibrated rounding (GPTQ) on {texts} texts",
            bundle.metadata.quantization
        );
    }
    bundle.metadata.pruning = pruning;

    if let Some(train_path) = &opts.train {
        let (head, mut origin) = train_head(&bundle, &train_examples, opts, &ckpt)
            .with_context(|| format!("cannot train a head on {}", train_path.display()))?;
        if let Some(f) = finetuned {
            origin = format!("{origin}; {f}");
        }
        bundle.metadata.head = Some(HeadInfo {
            origin: format!(
                "trained on {} ({} examples, {origin})",
                train_path.display(),
                train_examples.len()
            ),
            ..head.info.clone()
        });
        bundle.head = head.to_weights();
    }

    bundle
        .write(&opts.output)
        .with_context(|| format!("cannot write {}", opts.output.display()))?;
    let size = std::fs::metadata(&opts.output)?.len();
    let m = &bundle.metadata;
    println!("wrote {}", opts.output.display());
    println!("  source        {} ({})", ckpt.path.display(), ckpt.architecture);
    match onnx_check {
        Some(Ok(c)) => println!(
            "  checked       the f32 graph against the ONNX file run by tract: cosine {:.7} \
             (output {}, worst of {} texts{})",
            c.min_cosine,
            c.output,
            crate::onnx_check::TEXTS.len(),
            if c.dynamic_int8 { "; the file quantizes activations at run time" } else { "" }
        ),
        Some(Err(why)) => println!(
            "  checked       not against the ONNX file: tract cannot run that graph ({why}); \
             compare with ONNX Runtime yourself (e.g. tools/reference/make_onnx_golden.py)"
        ),
        None => {}
    }
    let (lin, quad) = flops_before;
    let flops_full = 2 * (lin * 128 + quad * 128 * 128);
    println!(
        "  parameters    {:.2} M (encoder + embeddings; {:.2} M before pruning)",
        m.encoder.parameters as f64 / 1e6,
        params_before as f64 / 1e6
    );
    println!(
        "  encoder       {:.2} GFLOP per 128-token text ({:.0}% of the unpruned {:.2})",
        m.encoder.flops(128) as f64 / 1e9,
        100.0 * m.encoder.flops(128) as f64 / flops_full as f64,
        flops_full as f64 / 1e9
    );
    if let Some(p) = &m.pruning {
        println!("  pruning       {p}");
    }
    println!("  quantization  {}", m.quantization);
    println!(
        "  size          {:.2} MB bundle vs {:.2} MB source ({:.1}%)",
        size as f64 / 1e6,
        ckpt.file_bytes as f64 / 1e6,
        100.0 * size as f64 / ckpt.file_bytes as f64
    );
    println!(
        "  max length    {} tokens, pooling {:?}{}",
        m.tokenizer.max_len,
        m.pooling.mode,
        if m.pooling.normalize { " + L2 norm" } else { "" }
    );
    match &m.head {
        Some(h) => println!(
            "  head          {} labels: {} ({})",
            h.labels.len(),
            h.labels.join(", "),
            h.origin
        ),
        None => println!("  head          none (embeddings only; add one with --train FILE)"),
    }
    if !m.tasks.is_empty() {
        let names: Vec<&str> = m.tasks.iter().map(|t| t.task.name()).collect();
        println!("  task heads    {}", names.join(", "));
    }
    println!("  time          {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn train_head(
    bundle: &Bundle,
    examples: &[Example],
    opts: &CompileOptions,
    ckpt: &Checkpoint,
) -> Result<(Head, String)> {
    let (labels, targets) = label_targets(examples, opts.multi_label)?;
    ensure!(
        labels.len() >= 2,
        "training data needs at least two distinct labels, found {labels:?}"
    );
    // Embed with the bundle being written, so the head fits the (quantized) encoder it will run on.
    let bytes = bundle.to_bytes()?;
    let model = bertlite::Model::from_bundle(
        Bundle::from_bytes(&bytes)?,
        EncoderOptions { threads: opts.threads, ..Default::default() },
    )?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let mut xs = embed_all(&model, &texts, "embedding")?;
    // Keep the checkpoint's pooler (BertForSequenceClassification): the head sees its output.
    let pooler =
        if ckpt.pooling.mode == PoolingMode::Cls { ckpt.bert.pooler.clone() } else { None };
    if let Some(p) = &pooler {
        let dense = bertlite::internal::Dense {
            weight: p.weight.data.clone(),
            bias: p.bias.clone(),
            inputs: p.weight.cols,
        };
        for x in &mut xs {
            *x = dense.forward(x).into_iter().map(f32::tanh).collect();
        }
    }
    let d = xs.first().map_or(0, Vec::len);
    let base = TrainOptions { multi_label: opts.multi_label, ..Default::default() };
    let (l2, origin) = match opts.l2 {
        Some(l2) => (l2, format!("l2 {l2}")),
        None => {
            let (l2, acc) = choose_l2(&xs, &targets, &base);
            (l2, format!("l2 {l2} chosen on a held-out fifth, accuracy {acc:.4} there"))
        }
    };
    let (weight, bias) = train(&xs, &targets, &TrainOptions { l2, ..base });
    let w = head_section(pooler.as_ref(), &weight, &bias);
    let info = HeadInfo {
        kind: if opts.multi_label { HeadKind::MultiLabel } else { HeadKind::SingleLabel },
        labels,
        input_dim: d,
        pooler: pooler.is_some(),
        origin: String::new(),
    };
    Ok((Head::from_parts(info, ckpt.bert.hidden, &w)?, origin))
}

/// Texts the head of `--prune-score task` is fitted on: at most this many of the labeled file,
/// evenly spread over it.
const TASK_SCORE_TEXTS: usize = 512;

/// The budget's task score ([`Score::task`]): a head fitted to the unpruned model's embeddings
/// of labeled calibration texts, cut to 128 tokens like the texts the cuts are scored on.
fn task_score(ckpt: &Checkpoint, examples: &[Example], multi_label: bool) -> Result<Score> {
    ensure!(
        examples.iter().all(|e| !e.labels.is_empty()),
        "--prune-score task needs labeled texts (--train, or a labeled --calibration file)"
    );
    let step = (examples.len() / TASK_SCORE_TEXTS).max(1);
    let chosen: Vec<Example> =
        examples.iter().step_by(step).take(TASK_SCORE_TEXTS).cloned().collect();
    let (labels, targets) = label_targets(&chosen, multi_label)?;
    ensure!(
        labels.len() >= 2,
        "--prune-score task needs at least two distinct labels, found {labels:?}"
    );
    let texts: Vec<&str> = chosen.iter().map(|e| e.text.as_str()).collect();
    let encoded = encode_calibration(&ckpt.tokenizer, &ckpt.vocab, &texts, 128)?;
    Score::task(&ckpt.bert, &encoded, &targets, multi_label)
}

/// `<folder>.blt` for a checkpoint folder, `<file stem>.blt` for an ONNX file.
pub fn default_output(source: &Source) -> PathBuf {
    let name = match source {
        Source::Dir(p) => p.file_name(),
        Source::Onnx(p, _) => p.file_stem(),
    };
    let name = name.map(|n| n.to_string_lossy().into_owned()).unwrap_or("model".into());
    PathBuf::from(format!("{name}.blt"))
}
