//! After reading an ONNX export, run the file itself (tract-onnx) beside the f32 graph we built
//! from it, on sample texts: reading weights by name and pattern is heuristic, so `compile
//! --onnx` proves it reproduced the model instead of trusting it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use bertlite::PoolingMode;
use bertlite::cosine;
use bertlite::{EncoderOptions, Model, Precision, PrecisionChoice};
use tract_onnx::prelude::*;

use crate::bundle::build_bundle;
use crate::graph;
use crate::model::Checkpoint;

/// Same weights, f32 on both sides: only summation order differs (measured 0.9999996 or more on
/// the fetched exports); a misread weight, head count or epsilon moves the cosine far below this.
pub const MIN_COSINE: f32 = 0.9999;
/// A graph that quantizes its activations at run time (ONNX Runtime's `quantize_dynamic`:
/// DynamicQuantizeLinear + MatMulInteger) differs from the f32 compute of its own weights by
/// that rounding: 0.9958 measured on these texts for all-MiniLM-L6-v2, 0.98258 the worst of 56
/// sentences (results/bench-int8.md). A misread graph still lands far below.
pub const MIN_COSINE_DYNAMIC_INT8: f32 = 0.98;

pub const TEXTS: [&str; 2] = [
    "Shares in the carmaker fell after a profit warning.",
    "The striker scored twice in the cup final on Saturday, and the crowd sang until midnight.",
];

/// What the check compared, for the compile summary.
pub struct Check {
    pub output: String,
    pub min_cosine: f32,
    /// The graph quantizes activations at run time, so the bound was the int8 one.
    pub dynamic_int8: bool,
}

/// `Ok(Err(why))` when tract cannot run the graph itself (then nothing was checked, and the
/// caller says so); an error when it runs and disagrees.
pub fn check(path: &Path, ckpt: &Checkpoint) -> Result<std::result::Result<Check, String>> {
    let bundle = build_bundle(ckpt, graph::Precision::F32)?;
    let options = EncoderOptions { threads: 1, precision: PrecisionChoice::Fixed(Precision::F32) };
    let ours = Model::from_bundle(bundle, options)?;
    let proto = tract_onnx::onnx().proto_model_for_path(path)?;
    let dynamic = proto.graph.iter().flat_map(|g| &g.node).any(|n| {
        matches!(n.op_type.as_str(), "DynamicQuantizeLinear" | "MatMulInteger" | "QLinearMatMul")
    });
    let floor = if dynamic { MIN_COSINE_DYNAMIC_INT8 } else { MIN_COSINE };
    // Declared intermediate and output shapes carry symbols (`batch`, `sequence`) that would
    // clash with the concrete input shapes set per text.
    let loaded = tract_guarded(|| {
        tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true)
            .model_for_path(path)
    });
    let onnx = match loaded {
        Ok(m) => m,
        Err(why) => return Ok(Err(why)),
    };
    let mut worst: Option<Check> = None;
    for text in TEXTS {
        let enc = ours.encode(text)?;
        let outputs = match run_onnx(&onnx, &enc.ids, &enc.type_ids) {
            Ok(o) => o,
            Err(why) => return Ok(Err(why)),
        };
        let pooled = ours.embed_encodings(&[&enc])?.remove(0);
        let (name, cos) = compare(&outputs, &pooled, &ours, ckpt)
            .with_context(|| format!("no output of {} to compare with", path.display()))?;
        if cos < floor {
            bail!(
                "the compiled model does not reproduce {} (output {name}: cosine {cos:.6} on \
                 {text:?}); the graph is not read correctly — check --heads, or report the \
                 export",
                path.display()
            );
        }
        if worst.as_ref().is_none_or(|w| cos < w.min_cosine) {
            worst = Some(Check { output: name, min_cosine: cos, dynamic_int8: dynamic });
        }
    }
    worst.map(Ok).context("no sample text was checked")
}

/// Runs tract on the caller's behalf: an error or a panic (tract panics on some graphs it does
/// not support) means "cannot check", not a crash.
fn tract_guarded<T>(f: impl FnOnce() -> TractResult<T>) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("tract panicked on it".into()),
    }
}

/// The ONNX graph's outputs on one text, or why tract cannot run it.
fn run_onnx(
    onnx: &InferenceModel,
    ids: &[u32],
    type_ids: &[u32],
) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let n = ids.len();
    tract_guarded(|| {
        let mut model = onnx.clone();
        let mut feed = TVec::new();
        for ix in 0..model.inputs.len() {
            let name = model.node(model.inputs[ix].node).name.clone();
            let values: Vec<i64> = match name.as_str() {
                "input_ids" => ids.iter().map(|&i| i64::from(i)).collect(),
                "attention_mask" => vec![1; n],
                "token_type_ids" => type_ids.iter().map(|&i| i64::from(i)).collect(),
                other => bail!("unknown input {other}"),
            };
            let dt = model.input_fact(ix)?.datum_type().unwrap_or(i64::datum_type());
            let t = tract_ndarray::Array2::from_shape_vec((1, n), values)?.into_tensor();
            let t = t.cast_to_dt(dt)?.into_owned();
            model.set_input_fact(ix, InferenceFact::dt_shape(dt, [1, n]))?;
            feed.push(t.into_tvalue());
        }
        let names: Vec<String> = model
            .outputs
            .iter()
            .map(|o| model.outlet_label(*o).unwrap_or(&model.node(o.node).name).to_owned())
            .collect();
        let plan = model.into_optimized()?.into_runnable()?;
        let out = plan.run(feed)?;
        Ok(names.into_iter().zip(out.into_iter().map(|v| v.into_tensor())).collect())
    })
}

/// Cosine of our answer to the best-matching ONNX output: token states `[1, n, hidden]` pooled
/// as our bundle pools, a sentence vector `[1, hidden]`, or a classifier's logits `[1, labels]`
/// against our head's.
fn compare(
    outputs: &[(String, Tensor)],
    pooled: &[f32],
    ours: &Model,
    ckpt: &Checkpoint,
) -> Option<(String, f32)> {
    let mut best: Option<(String, f32)> = None;
    for (name, t) in outputs {
        let Some(cos) = output_cosine(t, pooled, ours, ckpt) else { continue };
        if best.as_ref().is_none_or(|b| cos > b.1) {
            best = Some((name.clone(), cos));
        }
    }
    best
}

fn output_cosine(t: &Tensor, pooled: &[f32], ours: &Model, ckpt: &Checkpoint) -> Option<f32> {
    if !t.datum_type().is_float() {
        return None;
    }
    let t = t.cast_to::<f32>().ok()?;
    let a = t.to_plain_array_view::<f32>().ok()?;
    let data = a.as_slice()?;
    let hidden = ckpt.bert.hidden;
    match a.shape() {
        [1, n, h] if *h == hidden && *n > 0 => {
            let rows: Vec<&[f32]> = data.chunks_exact(hidden).collect();
            Some(cosine(&pool(&rows, ckpt.pooling.mode), pooled))
        }
        [1, h] if *h == hidden => Some(cosine(data, pooled)),
        [1, k] => {
            let head = ours.head().filter(|h| h.info.labels.len() == *k)?;
            Some(cosine(data, &head.logits(pooled)))
        }
        _ => None,
    }
}

fn pool(rows: &[&[f32]], mode: PoolingMode) -> Vec<f32> {
    let h = rows.first().map_or(0, |r| r.len());
    match mode {
        PoolingMode::Cls => rows.first().map(|r| r.to_vec()).unwrap_or_default(),
        PoolingMode::Mean => {
            (0..h).map(|c| rows.iter().map(|r| r[c]).sum::<f32>() / rows.len() as f32).collect()
        }
        PoolingMode::Max => {
            (0..h).map(|c| rows.iter().map(|r| r[c]).fold(f32::MIN, f32::max)).collect()
        }
    }
}
