//! `bertlite-tool eval`: accuracy, fidelity, size and speed of bundles on labeled data, next to
//! the fp32 model they came from.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use bertlite::bundle::Bundle;
use bertlite::pooling::cosine;
use bertlite::{EncoderOptions, Model};
use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::compile::{build_bundle, embed_all};
use crate::data::read_examples;
use crate::graph::Precision;

pub struct EvalOptions {
    pub data: PathBuf,
    pub model_dir: Option<PathBuf>,
    pub bundles: Vec<PathBuf>,
    pub json_out: Option<PathBuf>,
    pub latency_texts: usize,
    pub threads: usize,
}

#[derive(Serialize)]
pub struct Row {
    pub name: String,
    pub quantization: String,
    pub pruning: Option<String>,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub agreement_with_reference: f64,
    pub cosine_mean: f64,
    pub cosine_min: f64,
    pub size_bytes: u64,
    pub gflops_per_text: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub data: String,
    pub examples: usize,
    pub mean_tokens: f64,
    pub reference: String,
    pub threads: usize,
    pub rows: Vec<Row>,
}

pub fn eval(opts: &EvalOptions) -> Result<Report> {
    ensure!(
        !opts.bundles.is_empty(),
        "give at least one bundle to evaluate"
    );
    let examples = read_examples(&opts.data)?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let enc_opts = EncoderOptions {
        threads: opts.threads,
    };

    // Models: the fp32 reference (built in memory from the checkpoint, with the first bundle's
    // head) if a checkpoint is given, then each bundle.
    let mut models: Vec<(String, Model, u64)> = Vec::new();
    if let Some(dir) = &opts.model_dir {
        let first = Bundle::read(&opts.bundles[0])?;
        let ckpt = Checkpoint::load(dir, Some(first.metadata.tokenizer.max_len))?;
        let mut b = build_bundle(&ckpt, Precision::F32)?;
        b.metadata.head = first.metadata.head.clone();
        b.head = first.head.clone();
        let model = Model::from_bundle(b, enc_opts)?;
        models.push(("fp32 (checkpoint)".into(), model, ckpt.file_bytes));
    }
    for path in &opts.bundles {
        let model = Model::load_with(path, enc_opts)
            .with_context(|| format!("cannot load {}", path.display()))?;
        let size = std::fs::metadata(path)?.len();
        models.push((
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model,
            size,
        ));
    }

    let mut reference: Option<(Vec<Vec<f32>>, Vec<usize>)> = None;
    let mut rows = Vec::new();
    let mut mean_tokens = 0.0;
    for (name, model, size) in &models {
        let head = model
            .head()
            .with_context(|| format!("{name} has no classification head"))?;
        let labels = &head.info.labels;
        let truth: Vec<Option<usize>> = examples
            .iter()
            .map(|e| labels.iter().position(|l| *l == e.label))
            .collect();
        let embeddings = embed_all(model, &texts, name)?;
        let preds: Vec<usize> = embeddings
            .iter()
            .map(|e| {
                let p = head.probabilities(e);
                (0..p.len())
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                    .unwrap_or(0)
            })
            .collect();
        let lengths: Vec<usize> = texts
            .iter()
            .map(|t| model.encode(t).map_or(0, |e| e.len()))
            .collect();
        mean_tokens = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        let flops = lengths
            .iter()
            .map(|&n| model.metadata().encoder.flops(n) as f64)
            .sum::<f64>()
            / lengths.len() as f64;
        let (accuracy, macro_f1) = accuracy_f1(&preds, &truth, labels.len());
        let (agreement, cos_mean, cos_min) = match &reference {
            Some((ref_emb, ref_pred)) => {
                let agree = preds.iter().zip(ref_pred).filter(|(a, b)| a == b).count() as f64
                    / preds.len() as f64;
                let cos: Vec<f64> = embeddings
                    .iter()
                    .zip(ref_emb)
                    .map(|(a, b)| f64::from(cosine(a, b)))
                    .collect();
                (
                    agree,
                    cos.iter().sum::<f64>() / cos.len() as f64,
                    cos.iter().copied().fold(1.0, f64::min),
                )
            }
            None => (1.0, 1.0, 1.0),
        };
        let (p50, p95) = latency(model, &texts[..opts.latency_texts.min(texts.len())])?;
        rows.push(Row {
            name: name.clone(),
            quantization: model.metadata().quantization.clone(),
            pruning: model.metadata().pruning.clone(),
            accuracy,
            macro_f1,
            agreement_with_reference: agreement,
            cosine_mean: cos_mean,
            cosine_min: cos_min,
            size_bytes: *size,
            gflops_per_text: flops / 1e9,
            latency_p50_ms: p50,
            latency_p95_ms: p95,
        });
        if reference.is_none() {
            reference = Some((embeddings, preds));
        }
    }
    let report = Report {
        data: opts.data.display().to_string(),
        examples: examples.len(),
        mean_tokens,
        reference: models.first().map(|m| m.0.clone()).unwrap_or_default(),
        threads: opts.threads,
        rows,
    };
    print_table(&report);
    if let Some(path) = &opts.json_out {
        let text = serde_json::to_string_pretty(&report)?;
        bertlite::bundle::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(report)
}

/// Accuracy and macro-F1 (labels absent from the head count as always wrong).
fn accuracy_f1(preds: &[usize], truth: &[Option<usize>], k: usize) -> (f64, f64) {
    let correct = preds
        .iter()
        .zip(truth)
        .filter(|(p, t)| Some(**p) == **t)
        .count();
    let mut f1_sum = 0.0;
    for c in 0..k {
        let tp = preds
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == c && **t == Some(c))
            .count() as f64;
        let fp = preds
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == c && **t != Some(c))
            .count() as f64;
        let fnn = preds
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p != c && **t == Some(c))
            .count() as f64;
        if tp + fp + fnn > 0.0 {
            f1_sum += 2.0 * tp / (2.0 * tp + fp + fnn);
        }
    }
    (correct as f64 / preds.len() as f64, f1_sum / k as f64)
}

/// Batch-1 latency percentiles over the given texts (one warm-up run first).
fn latency(model: &Model, texts: &[&str]) -> Result<(f64, f64)> {
    let encodings = texts
        .iter()
        .map(|t| model.encode(t))
        .collect::<bertlite::Result<Vec<_>>>()?;
    if let Some(e) = encodings.first() {
        model.embed_encodings(&[e])?;
    }
    let mut times = Vec::new();
    for e in &encodings {
        let t = Instant::now();
        model.embed_encodings(&[e])?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: usize| {
        times
            .get((times.len() * p / 100).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok((pct(50), pct(95)))
}

fn print_table(r: &Report) {
    println!(
        "{} examples from {} (mean {:.0} tokens), {} thread(s); reference: {}",
        r.examples, r.data, r.mean_tokens, r.threads, r.reference
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9}",
        "model",
        "acc",
        "macroF1",
        "agree",
        "cos mean",
        "cos min",
        "MB",
        "GFLOP",
        "p50 ms",
        "p95 ms"
    );
    for row in &r.rows {
        println!(
            "{:<28} {:>8.4} {:>8.4} {:>8.4} {:>9.5} {:>9.5} {:>9.2} {:>8.2} {:>9.2} {:>9.2}",
            row.name,
            row.accuracy,
            row.macro_f1,
            row.agreement_with_reference,
            row.cosine_mean,
            row.cosine_min,
            row.size_bytes as f64 / 1e6,
            row.gflops_per_text,
            row.latency_p50_ms,
            row.latency_p95_ms
        );
    }
}
