//! `bertlite-tool eval`: accuracy, fidelity, size and speed of bundles on labeled data, next to
//! the fp32 model they came from.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use bertlite::Bundle;
use bertlite::cosine;
use bertlite::{EncoderOptions, Model, PrecisionChoice};
use serde::{Deserialize, Serialize};

use crate::bundle::build_bundle;
use crate::data::read_examples;
use crate::embed::embed_all;
use crate::graph::Precision;
use crate::model::Checkpoint;
use crate::source::Source;

pub struct EvalOptions {
    pub data: PathBuf,
    /// The fp32 checkpoint the bundles came from (the reference row).
    pub reference: Option<Source>,
    pub bundles: Vec<PathBuf>,
    pub json_out: Option<PathBuf>,
    pub svg_out: Option<PathBuf>,
    pub latency_texts: usize,
    pub threads: usize,
    /// How the bundles compute (the fp32 reference always computes in f32).
    pub precision: PrecisionChoice,
}

#[derive(Serialize, Deserialize)]
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
    /// Peak resident memory of a fresh process that loads the bundle and embeds one text.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

#[derive(Serialize, Deserialize)]
pub struct Report {
    pub data: String,
    pub examples: usize,
    pub mean_tokens: f64,
    pub reference: String,
    pub threads: usize,
    pub rows: Vec<Row>,
}

pub fn eval(opts: &EvalOptions) -> Result<Report> {
    ensure!(!opts.bundles.is_empty(), "give at least one bundle to evaluate");
    let examples = read_examples(&opts.data)?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let enc_opts = EncoderOptions { threads: opts.threads, precision: opts.precision };
    let ref_opts = EncoderOptions {
        threads: opts.threads,
        precision: PrecisionChoice::Fixed(bertlite::Precision::F32),
    };

    // Models: the fp32 reference (built in memory from the checkpoint, with the first bundle's
    // head) if a checkpoint is given, then each bundle.
    let mut models: Vec<(String, Model, u64, PathBuf)> = Vec::new();
    let scratch = std::env::temp_dir().join(format!("bertlite-eval-{}", std::process::id()));
    if let Some(source) = &opts.reference {
        let first = Bundle::read(&opts.bundles[0])?;
        let ckpt = Checkpoint::open(source, Some(first.metadata.tokenizer.max_len))?;
        let mut b = build_bundle(&ckpt, Precision::F32)?;
        b.metadata.head = first.metadata.head.clone();
        b.head = first.head.clone();
        // Written out once so its memory footprint is measured like the bundles'.
        std::fs::create_dir_all(&scratch)?;
        let path = scratch.join("fp32.blt");
        b.write(&path)?;
        let model = Model::from_bundle(b, ref_opts)?;
        // An ONNX file's weights may be int8 already: the row computes them in f32.
        let name = match source {
            Source::Dir(_) => "fp32 (checkpoint)",
            Source::Onnx(..) => "f32 (ONNX file)",
        };
        models.push((name.into(), model, ckpt.file_bytes, path));
    }
    for path in &opts.bundles {
        let model = Model::load_with(path, enc_opts)
            .with_context(|| format!("cannot load {}", path.display()))?;
        let size = std::fs::metadata(path)?.len();
        models.push((
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            model,
            size,
            path.clone(),
        ));
    }

    let mut reference: Option<(Vec<Vec<f32>>, Vec<usize>)> = None;
    let mut rows = Vec::new();
    let mut mean_tokens = 0.0;
    for (name, model, size, path) in &models {
        let head = model.head().with_context(|| format!("{name} has no classification head"))?;
        let labels = &head.info.labels;
        let truth: Vec<Option<usize>> = examples
            .iter()
            .map(|e| e.labels.first().and_then(|f| labels.iter().position(|l| l == f)))
            .collect();
        let embeddings = embed_all(model, &texts, name)?;
        let preds: Vec<usize> = embeddings
            .iter()
            .map(|e| {
                let p = head.probabilities(e);
                (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0)
            })
            .collect();
        let lengths: Vec<usize> =
            texts.iter().map(|t| model.encode(t).map_or(0, |e| e.len())).collect();
        mean_tokens = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        let flops = lengths.iter().map(|&n| model.metadata().encoder.flops(n) as f64).sum::<f64>()
            / lengths.len() as f64;
        let (accuracy, macro_f1) = accuracy_f1(&preds, &truth, labels.len());
        let (agreement, cos_mean, cos_min) = match &reference {
            Some((ref_emb, ref_pred)) => {
                let agree = preds.iter().zip(ref_pred).filter(|(a, b)| a == b).count() as f64
                    / preds.len() as f64;
                let cos: Vec<f64> =
                    embeddings.iter().zip(ref_emb).map(|(a, b)| f64::from(cosine(a, b))).collect();
                (
                    agree,
                    cos.iter().sum::<f64>() / cos.len() as f64,
                    cos.iter().copied().fold(1.0, f64::min),
                )
            }
            None => (1.0, 1.0, 1.0),
        };
        let peak_rss_mib = footprint(path, texts[0], opts.precision);
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
            latency_p50_ms: 0.0,
            latency_p95_ms: 0.0,
            peak_rss_mib,
        });
        if reference.is_none() {
            reference = Some((embeddings, preds));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let timed: Vec<&Model> = models.iter().map(|(_, model, _, _)| model).collect();
    let percentiles = latencies(&timed, &texts[..opts.latency_texts.min(texts.len())])?;
    for (row, (p50, p95)) in rows.iter_mut().zip(percentiles) {
        row.latency_p50_ms = p50;
        row.latency_p95_ms = p95;
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
        bertlite::internal::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &opts.svg_out {
        bertlite::internal::write_atomic(path, plot_svg(&report).as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(report)
}

/// Peak RSS (MiB) of a fresh `bertlite-tool footprint` process on `bundle`; `None` where it
/// cannot be measured (no /proc).
fn footprint(bundle: &std::path::Path, text: &str, precision: PrecisionChoice) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let precision = match precision {
        PrecisionChoice::Auto => "auto".to_owned(),
        PrecisionChoice::Fixed(p) => p.name().to_owned(),
    };
    let out = std::process::Command::new(exe)
        .arg("footprint")
        .arg(bundle)
        .arg(text)
        .arg(precision)
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse::<f64>().ok().map(|kib| kib / 1024.0)
}

/// The hidden `footprint` subcommand: load, embed one text on one thread, print VmHWM in KiB.
pub fn footprint_child(
    bundle: &std::path::Path,
    text: &str,
    precision: PrecisionChoice,
) -> Result<()> {
    let model = Model::load_with(bundle, EncoderOptions { threads: 1, precision })?;
    model.embed(text)?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    println!("{hwm}");
    Ok(())
}

/// Accuracy and macro-F1 (labels absent from the head count as always wrong).
fn accuracy_f1(preds: &[usize], truth: &[Option<usize>], k: usize) -> (f64, f64) {
    let correct = preds.iter().zip(truth).filter(|(p, t)| Some(**p) == **t).count();
    let mut f1_sum = 0.0;
    for c in 0..k {
        let tp = preds.iter().zip(truth).filter(|(p, t)| **p == c && **t == Some(c)).count() as f64;
        let fp = preds.iter().zip(truth).filter(|(p, t)| **p == c && **t != Some(c)).count() as f64;
        let fnn =
            preds.iter().zip(truth).filter(|(p, t)| **p != c && **t == Some(c)).count() as f64;
        if tp + fp + fnn > 0.0 {
            f1_sum += 2.0 * tp / (2.0 * tp + fp + fnn);
        }
    }
    (correct as f64 / preds.len() as f64, f1_sum / k as f64)
}

/// Timed runs per text and model in [`latencies`].
const LATENCY_ROUNDS: usize = 5;

/// Each model's batch-1 latency percentiles (p50, p95) over the given texts, a text's latency
/// being the median of its [`LATENCY_ROUNDS`] runs. The models take turns text by text, each
/// running a text a few times in a row as a model serving alone would, so a slow spell of a
/// shared machine (this host's speed drifts by ±20% over minutes) falls on all of them rather
/// than on whichever was being timed: one run per text, one model after the other, put the
/// same two bundles' ratio anywhere from 1.5× to 1.9×.
fn latencies(models: &[&Model], texts: &[&str]) -> Result<Vec<(f64, f64)>> {
    let mut encodings = Vec::new();
    for model in models {
        let e = texts.iter().map(|t| model.encode(t)).collect::<bertlite::Result<Vec<_>>>()?;
        if let Some(first) = e.first() {
            model.embed_encodings(&[first])?;
        }
        encodings.push(e);
    }
    // times[model][text][round]
    let mut times = vec![vec![Vec::with_capacity(LATENCY_ROUNDS); texts.len()]; models.len()];
    for text in 0..texts.len() {
        for ((model, encodings), times) in models.iter().zip(&encodings).zip(&mut times) {
            // One untimed run first: the model's weights back in cache, as when it serves alone.
            model.embed_encodings(&[&encodings[text]])?;
            for _ in 0..LATENCY_ROUNDS {
                let t = Instant::now();
                model.embed_encodings(&[&encodings[text]])?;
                times[text].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok(times
        .into_iter()
        .map(|per_text| {
            let mut medians: Vec<f64> = per_text
                .into_iter()
                .map(|mut runs| {
                    runs.sort_by(f64::total_cmp);
                    runs.get(runs.len() / 2).copied().unwrap_or(0.0)
                })
                .collect();
            medians.sort_by(f64::total_cmp);
            let pct = |p: usize| {
                medians
                    .get((medians.len() * p / 100).min(medians.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0.0)
            };
            (pct(50), pct(95))
        })
        .collect())
}

fn print_table(r: &Report) {
    println!(
        "{} examples from {} (mean {:.0} tokens), {} thread(s); reference: {}",
        r.examples, r.data, r.mean_tokens, r.threads, r.reference
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8}",
        "model",
        "acc",
        "macroF1",
        "agree",
        "cos mean",
        "cos min",
        "MB",
        "GFLOP",
        "p50 ms",
        "p95 ms",
        "RSS MiB"
    );
    for row in &r.rows {
        println!(
            "{:<28} {:>8.4} {:>8.4} {:>8.4} {:>9.5} {:>9.5} {:>9.2} {:>8.2} {:>9.2} {:>9.2} {:>8}",
            row.name,
            row.accuracy,
            row.macro_f1,
            row.agreement_with_reference,
            row.cosine_mean,
            row.cosine_min,
            row.size_bytes as f64 / 1e6,
            row.gflops_per_text,
            row.latency_p50_ms,
            row.latency_p95_ms,
            row.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
        );
    }
}

/// Accuracy vs batch-1 latency, one point per model, marker area ∝ size. Plain SVG (no plotting
/// dependency for a dozen shapes).
pub fn plot_svg(r: &Report) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 480.0, 80.0, 40.0, 50.0, 60.0);
    let xs: Vec<f64> = r.rows.iter().map(|row| row.latency_p50_ms).collect();
    let ys: Vec<f64> = r.rows.iter().map(|row| row.accuracy * 100.0).collect();
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).max(1e-9);
        (lo - span * 0.15, hi + span * 0.15)
    };
    // Latency axis from 0, so distances read as ratios.
    let x0 = 0.0;
    let x1 = xs.iter().copied().fold(0.0, f64::max) * 1.1;
    let (y0, y1) = pad(
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(0.0, f64::max),
    );
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom);
    let max_size = r.rows.iter().map(|row| row.size_bytes).max().unwrap_or(1) as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Accuracy vs batch-1 latency ({} examples, {} thread(s)); marker area ∝ bundle size</text>\n",
        w / 2.0,
        r.examples,
        r.threads
    );
    // Axes with ticks.
    s += &format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bottom,
        w - right,
        h - bottom
    );
    s += &format!(
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bottom
    );
    for i in 0..=5 {
        let x = x0 + (x1 - x0) * f64::from(i) / 5.0;
        let y = y0 + (y1 - y0) * f64::from(i) / 5.0;
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x:.0}</text>\n",
            px(x),
            h - bottom + 18.0
        );
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.1}</text>\n",
            left - 6.0,
            py(y) + 4.0
        );
        s += &format!(
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\n",
            py(y),
            w - right
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">latency p50, ms (mean {:.0} tokens)</text>\n",
        (left + w - right) / 2.0,
        h - 16.0,
        r.mean_tokens
    );
    s += &format!(
        "<text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">accuracy, %</text>\n",
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0
    );
    for (i, row) in r.rows.iter().enumerate() {
        let radius = 4.0 + 14.0 * (row.size_bytes as f64 / max_size).sqrt();
        let color = if i == 0 { "#888" } else { "#1f77b4" };
        let (cx, cy) = (px(xs[i]), py(ys[i]));
        s += &format!(
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{radius:.1}\" fill=\"{color}\" fill-opacity=\"0.5\" stroke=\"{color}\"/>\n"
        );
        let label = format!(
            "{} ({:.1} MB, {:.2} GFLOP)",
            row.name,
            row.size_bytes as f64 / 1e6,
            row.gflops_per_text
        );
        let label = label.replace('&', "&amp;").replace('<', "&lt;");
        // Labels go on the side with room.
        let (lx, anchor) =
            if cx > w * 0.55 { (cx - radius - 3.0, "end") } else { (cx + radius + 3.0, "start") };
        s += &format!(
            "<text x=\"{lx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"{anchor}\">{label}</text>\n",
            cy - 3.0 + if i % 2 == 0 { 0.0 } else { 12.0 }
        );
    }
    s + "</svg>\n"
}
