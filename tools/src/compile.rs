//! `bertlite-tool compile`: checkpoint → (prune) → quantize → graph → head → one bundle file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use bertlite::EncoderOptions;
use bertlite::Encoding;
use bertlite::internal::Head;
use bertlite::{Bundle, EncoderInfo, HeadInfo, HeadKind, Metadata, PoolingMode};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::{Checkpoint, Linear, Source};
use crate::data::{Example, label_targets, read_examples};
use crate::graph::{self, Precision};
use crate::prune::{PruneOptions, measure, prune};
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
    /// Texts for pruning importance (default: the training texts).
    pub calibration: Option<PathBuf>,
    pub calibration_texts: usize,
}

pub fn threads_default() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn compile(opts: &CompileOptions) -> Result<()> {
    let start = Instant::now();
    let mut ckpt = Checkpoint::open(&opts.source, opts.max_len)?;
    // An ONNX file was read by name and pattern: prove the reading against the file itself.
    let onnx_check = match &opts.source {
        Source::Onnx(path, _) => Some(crate::onnx_check::check(path, &ckpt)?),
        Source::Dir(_) => None,
    };
    let params_before = ckpt.bert.parameters();
    let flops_before = ckpt.bert.macs();
    let mut pruning = None;
    if opts.prune.is_active() {
        let source = opts.calibration.as_ref().or(opts.train.as_ref()).context(
            "pruning measures importance on text: give --calibration FILE or --train FILE",
        )?;
        let examples = read_examples(source)?;
        // Every k-th example, so all labels are represented.
        let step = (examples.len() / opts.calibration_texts.max(1)).max(1);
        let texts: Vec<&str> = examples
            .iter()
            .step_by(step)
            .take(opts.calibration_texts)
            .map(|e| e.text.as_str())
            .collect();
        let importance = measure(&ckpt.bert, &ckpt.tokenizer, &ckpt.vocab, &texts, 128)?;
        pruning = Some(prune(&mut ckpt.bert, &importance, &opts.prune)?);
    }
    let precision = if opts.quantize { Precision::Int8 } else { Precision::F32 };
    let mut bundle = build_bundle(&ckpt, precision)?;
    bundle.metadata.pruning = pruning;

    if let Some(train_path) = &opts.train {
        let examples = read_examples(train_path)?;
        let (head, origin) = train_head(&bundle, &examples, opts, &ckpt)
            .with_context(|| format!("cannot train a head on {}", train_path.display()))?;
        bundle.metadata.head = Some(HeadInfo {
            origin: format!(
                "trained on {} ({} examples, {origin})",
                train_path.display(),
                examples.len()
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
    println!("  time          {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The bundle without a trained head (the checkpoint's own head, if it has one).
pub fn build_bundle(ckpt: &Checkpoint, precision: Precision) -> Result<Bundle> {
    let bert = &ckpt.bert;
    let graph = graph::build(bert, precision)?;
    let nnef = graph::to_nnef(&graph, bert, precision)?;
    let (macs_per_token, macs_per_token_sq) = bert.macs();
    let encoder = EncoderInfo {
        hidden: bert.hidden,
        head_dim: bert.head_dim,
        heads: bert.layers.iter().map(|l| l.heads).collect(),
        intermediate: bert.layers.iter().map(|l| l.ffn_in.weight.rows).collect(),
        vocab_size: bert.word.rows,
        max_position: bert.position.rows,
        parameters: bert.parameters(),
        macs_per_token,
        macs_per_token_sq,
    };
    let (head_info, head_weights) = match (&ckpt.head, &bert.pooler) {
        (Some(h), pooler) => {
            let use_pooler = ckpt.pooling.mode == PoolingMode::Cls && pooler.is_some();
            let w = head_section(
                pooler.as_ref().filter(|_| use_pooler),
                &h.classifier.weight.data,
                &h.classifier.bias,
            );
            let info = HeadInfo {
                kind: h.kind,
                labels: h.labels.clone(),
                input_dim: h.classifier.weight.cols,
                pooler: use_pooler,
                origin: "checkpoint".into(),
            };
            (Some(info), w)
        }
        (None, _) => (None, Vec::new()),
    };
    let metadata = Metadata {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        source: ckpt.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        source_sha256: ckpt.sha256.clone(),
        architecture: ckpt.architecture.clone(),
        quantization: match precision {
            Precision::Int8 => "int8-weights-per-channel-symmetric".into(),
            Precision::F32 => "none".into(),
        },
        pruning: None,
        encoder,
        tokenizer: ckpt.tokenizer.clone(),
        pooling: ckpt.pooling.clone(),
        head: head_info,
        extra: BTreeMap::new(),
    };
    Ok(Bundle { metadata, vocab: ckpt.vocab.clone(), graph: nnef, head: head_weights })
}

/// Progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// Pooled embeddings of many texts with a loaded model, batched by similar length.
pub fn embed_all(model: &bertlite::Model, texts: &[&str], what: &str) -> Result<Vec<Vec<f32>>> {
    let encodings: Vec<Encoding> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            model.encode(t).with_context(|| format!("example {} cannot be embedded", i + 1))
        })
        .collect::<Result<_>>()?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| encodings[i].len());
    let mut out = vec![Vec::new(); texts.len()];
    let pb = progress(texts.len(), what);
    for chunk in order.chunks(8) {
        let batch: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
        for (&i, e) in chunk.iter().zip(model.embed_encodings(&batch)?) {
            out[i] = e;
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
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

/// The `HEAD` section layout (docs/bundle-format.md): optional pooler, then the classifier.
fn head_section(pooler: Option<&Linear>, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let mut w = Vec::new();
    if let Some(p) = pooler {
        w.extend_from_slice(&p.weight.data);
        w.extend_from_slice(&p.bias);
    }
    w.extend_from_slice(weight);
    w.extend_from_slice(bias);
    w
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
