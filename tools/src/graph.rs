//! Building the encoder as a tract graph, written as NNEF (with tract extensions).
//!
//! Built directly with tract-core rather than through ONNX import: we choose every op, so the
//! graph is what tract optimizes well and what NNEF can serialize.
//!
//! Int8 storage: Linear weights are stored int8 per output channel and dequantized by
//! `cast → mul(scale)` inside the graph; tract const-folds that at load into f32 weights, so the
//! file stays int8 while the matmuls run tract's f32 kernels. tract's NNEF writer const-folds
//! every constant subgraph before writing (`prop_consts`), which would store those weights as
//! f32 again, so [`to_nnef`] writes the f32 graph and then rewrites each weight's `variable`
//! into the int8 form, in the text and the tar. The embedding tables are gathered as int8 and
//! dequantized per gathered row (not constant, so never folded): they stay int8 in memory too.
//!
//! For int8 storage, the inputs of the query/key/value and FFN-in projections are smoothed
//! (per-channel factors moved from the activations into the weights, [`Smoothing`]) so the
//! runtime's int8 compute quantizes them with less error.
//!
//! The graph is written before declutter: declutter rewrites erf-GELU into `GeluExact`, which has
//! no NNEF serializer.

use std::borrow::Cow;

use anyhow::{Context, Result, ensure};
use tract_core::internal::*;
use tract_core::ops::array::{Gather, Slice};
use tract_core::ops::cast::cast;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math;
use tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};

use crate::model::{Bert, LayerNorm, Linear, Matrix};
use crate::quantize::quantize_rows;

/// How weights are stored in the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Symmetric int8 per output channel (per row of the embedding tables).
    Int8,
}

pub const INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];
pub const OUTPUT: &str = "hidden";

struct Builder {
    model: TypedModel,
    precision: Precision,
}

impl Builder {
    fn konst(&mut self, name: &str, t: Tensor) -> Result<OutletId> {
        self.model.add_const(name, t)
    }

    fn wire(
        &mut self,
        name: &str,
        op: impl Into<Box<dyn TypedOp>>,
        inputs: &[OutletId],
    ) -> Result<OutletId> {
        let name = self.model.unique_name(name).into_owned();
        Ok(self.model.wire_node(name, op, inputs)?[0])
    }

    /// A binary op with numpy broadcasting (ranks aligned on the right).
    fn bin(
        &mut self,
        name: &str,
        op: fn() -> tract_core::ops::binary::TypedBinOp,
        a: OutletId,
        b: OutletId,
    ) -> Result<OutletId> {
        let name = self.model.unique_name(name).into_owned();
        Ok(tract_core::ops::change_axes::wire_with_rank_broadcast(
            name,
            &mut self.model,
            op(),
            &[a, b],
        )?[0])
    }

    fn scalar(&mut self, name: &str, v: f32) -> Result<OutletId> {
        self.konst(name, tensor0(v))
    }

    /// `x[b,s,in] · Wᵀ + bias` with W `[out][in]`.
    fn linear(&mut self, name: &str, x: OutletId, l: &Linear) -> Result<OutletId> {
        // f32 here; `to_nnef` swaps in the int8 storage (see the module doc).
        let m = &l.weight;
        let w =
            self.konst(&format!("{name}.weight"), Tensor::from_shape(&[m.rows, m.cols], &m.data)?)?;
        let y = self.wire(name, EinSum::new("bsk,nk->bsn".parse()?, f32::datum_type()), &[x, w])?;
        let b = self.konst(&format!("{name}.bias"), tensor1(&l.bias))?;
        self.bin(&format!("{name}.add_bias"), math::add, y, b)
    }

    /// `x · (1/s)` per channel, the input side of [`Smoothing`].
    fn smooth(&mut self, name: &str, x: OutletId, s: &[f32]) -> Result<OutletId> {
        let inv: Vec<f32> = s.iter().map(|s| 1.0 / s).collect();
        let inv = self.konst(&format!("{name}.inv"), tensor1(&inv))?;
        self.bin(name, math::mul, x, inv)
    }

    /// LayerNorm over the last axis, from primitives (declutter fuses it at load).
    fn layer_norm(&mut self, name: &str, x: OutletId, n: &LayerNorm, eps: f32) -> Result<OutletId> {
        let h = n.gamma.len();
        let sum = self.wire(&format!("{name}.sum"), Reduce::new(tvec![2], Reducer::Sum), &[x])?;
        let inv_h = self.scalar(&format!("{name}.inv_h"), 1.0 / h as f32)?;
        let mean = self.bin(&format!("{name}.mean"), math::mul, sum, inv_h)?;
        let centered = self.bin(&format!("{name}.center"), math::sub, x, mean)?;
        let var = self.wire(
            &format!("{name}.var"),
            Reduce::new(tvec![2], Reducer::MeanOfSquares),
            &[centered],
        )?;
        let eps = self.scalar(&format!("{name}.eps"), eps)?;
        let var_eps = self.bin(&format!("{name}.var_eps"), math::add, var, eps)?;
        let rstd = self.wire(&format!("{name}.rsqrt"), math::rsqrt(), &[var_eps])?;
        let normed = self.bin(&format!("{name}.normed"), math::mul, centered, rstd)?;
        let gamma = self.konst(&format!("{name}.gamma"), tensor1(&n.gamma))?;
        let beta = self.konst(&format!("{name}.beta"), tensor1(&n.beta))?;
        let scaled = self.bin(&format!("{name}.scale"), math::mul, normed, gamma)?;
        self.bin(&format!("{name}.shift"), math::add, scaled, beta)
    }

    /// Exact (erf) GELU: x · ½(1 + erf(x/√2)), as BERT's "gelu".
    fn gelu(&mut self, name: &str, x: OutletId) -> Result<OutletId> {
        let inv_sqrt2 =
            self.scalar(&format!("{name}.inv_sqrt2"), std::f32::consts::FRAC_1_SQRT_2)?;
        // ((1 + erf(x/√2)) · x) · ½: the order tract's declutter recognizes as `GeluExact`
        // (one fused pass instead of five element-wise ops over the FFN activations).
        let scaled = self.bin(&format!("{name}.div"), math::mul, x, inv_sqrt2)?;
        let erf = self.wire(&format!("{name}.erf"), math::erf(), &[scaled])?;
        let one = self.scalar(&format!("{name}.one"), 1.0)?;
        let plus = self.bin(&format!("{name}.plus1"), math::add, erf, one)?;
        let times_x = self.bin(&format!("{name}.times_x"), math::mul, plus, x)?;
        let half = self.scalar(&format!("{name}.half"), 0.5)?;
        self.bin(name, math::mul, times_x, half)
    }

    /// Rows of an embedding table for `ids` → f32 `[b, s, h]`; int8 tables dequantize per row
    /// after the gather, so only the rows used are ever widened.
    fn embedding(&mut self, name: &str, table: &Matrix, ids: OutletId) -> Result<OutletId> {
        match self.precision {
            Precision::F32 => {
                let t =
                    self.konst(name, Tensor::from_shape(&[table.rows, table.cols], &table.data)?)?;
                self.wire(&format!("{name}.gather"), Gather::new(0), &[t, ids])
            }
            Precision::Int8 => {
                let q = quantize_rows(&table.data, table.rows, table.cols);
                let t = self.konst(
                    &format!("{name}.q"),
                    Tensor::from_shape(&[table.rows, table.cols], &q.values)?,
                )?;
                let s = self.konst(
                    &format!("{name}.scale"),
                    Tensor::from_shape(&[table.rows, 1], &q.scales)?,
                )?;
                let rows = self.wire(&format!("{name}.gather"), Gather::new(0), &[t, ids])?;
                let scales =
                    self.wire(&format!("{name}.gather_scale"), Gather::new(0), &[s, ids])?;
                let rows = self.wire(&format!("{name}.cast"), cast(f32::datum_type()), &[rows])?;
                self.bin(&format!("{name}.deq"), math::mul, rows, scales)
            }
        }
    }
}

/// The model with attention's 1/√dh scale moved into the query projection (weights and bias):
/// the same function, one element-wise pass over every `[heads, seq, seq]` score tensor fewer.
pub fn fold_query_scale(bert: &Bert) -> Bert {
    let mut bert = bert.clone();
    let s = 1.0 / (bert.head_dim as f32).sqrt();
    for layer in &mut bert.layers {
        layer.query.weight.data.iter_mut().for_each(|w| *w *= s);
        layer.query.bias.iter_mut().for_each(|b| *b *= s);
    }
    bert
}

/// Per-channel factors that move the spread of a linear layer's input into its weights:
/// the graph multiplies the input by `1/s`, the weight columns are multiplied by `s`, so the
/// product is unchanged in exact arithmetic (SmoothQuant, α = ½).
///
/// Why: the runtime's int8 compute quantizes each token's activations with one scale, and the
/// LayerNorm outputs feeding query/key/value and the FFN carry a few channels far larger than
/// the rest (large |γ| or |β|), which leaves the other channels a handful of int8 steps. The
/// LayerNorm output also feeds the residual, so `1/s` cannot be folded into γ/β; it is one
/// element-wise multiply per smoothed input. Data-free: a channel's activation scale is taken
/// as |γ| + |β| (the LayerNorm output before its affine part has unit variance). Measured on
/// the 56 golden sentences (cosine to fp64, mean / min): int8 compute 0.99568 / 0.97925 →
/// 0.99641 / 0.98475; the f32-compute path 0.99933 / 0.99585 → 0.99936 / 0.99684. Range
/// proxies 2|γ|+|β|, 3|γ|+|β|, |β| and α = ¾, 1 measured no better.
#[derive(Clone, Debug)]
pub struct Smoothing {
    pub qkv: Vec<f32>,
    pub ffn_in: Vec<f32>,
}

/// Ones (no smoothing) when the weights already sit on a per-row int8 grid (an int8 export):
/// scaling their columns would move them off it, and re-quantizing would add error to weights
/// that can be stored exactly.
fn smoothing_factors(norm: &LayerNorm, linears: &[&Linear]) -> Vec<f32> {
    if linears.iter().all(|l| on_int8_grid(&l.weight)) {
        return vec![1.0; norm.gamma.len()];
    }
    (0..norm.gamma.len())
        .map(|c| {
            let act = norm.gamma[c].abs() + norm.beta[c].abs();
            let weight = linears
                .iter()
                .flat_map(|l| l.weight.data.iter().skip(c).step_by(l.weight.cols))
                .fold(0f32, |m, w| m.max(w.abs()));
            if act > 0.0 && weight > 0.0 { (act / weight).sqrt() } else { 1.0 }
        })
        .collect()
}

/// Every row is `q · max|row| / 127` with integer `q` (to f32 rounding).
fn on_int8_grid(m: &Matrix) -> bool {
    m.data.chunks_exact(m.cols).all(|row| {
        let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        let step = max / 127.0;
        max == 0.0 || row.iter().all(|w| ((w / step) - (w / step).round()).abs() < 1e-3)
    })
}

fn scale_columns(l: &mut Linear, s: &[f32]) {
    for row in l.weight.data.chunks_exact_mut(l.weight.cols) {
        row.iter_mut().zip(s).for_each(|(w, s)| *w *= s);
    }
}

/// The model as the graph is built from it: attention scale folded into the query weights, and
/// for int8 storage, inputs smoothed (see [`Smoothing`]; `None` per layer for f32).
pub fn prepare(bert: &Bert, precision: Precision) -> (Bert, Vec<Option<Smoothing>>) {
    let mut bert = fold_query_scale(bert);
    if precision == Precision::F32 {
        let n = bert.layers.len();
        return (bert, vec![None; n]);
    }
    let mut smoothing = Vec::with_capacity(bert.layers.len());
    for i in 0..bert.layers.len() {
        let input_norm =
            if i == 0 { bert.embed_norm.clone() } else { bert.layers[i - 1].ffn_norm.clone() };
        let layer = &mut bert.layers[i];
        let qkv = smoothing_factors(&input_norm, &[&layer.query, &layer.key, &layer.value]);
        let ffn_in = smoothing_factors(&layer.attn_norm, &[&layer.ffn_in]);
        for l in [&mut layer.query, &mut layer.key, &mut layer.value] {
            scale_columns(l, &qkv);
        }
        scale_columns(&mut layer.ffn_in, &ffn_in);
        smoothing.push(Some(Smoothing { qkv, ffn_in }));
    }
    (bert, smoothing)
}

/// Builds the encoder graph (inputs i64 `[batch, seq]`, output f32 `[batch, seq, hidden]`).
/// What the graph returns besides the last hidden state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// Only the last hidden state.
    Hidden,
    /// Then every other layer's output, first to last-but-one (TF Hub's `encoder_outputs`
    /// without the last, which is the first output already).
    Layers,
    /// Then [`TAPS_PER_LAYER`] tensors per layer for pruning.
    Taps,
}

/// Per layer, the extra outputs calibration measures: the layer input, the attention context
/// before the heads merge `[b, s, heads, dh]`, the FFN activation after GELU `[b, s, ffn]`,
/// the attention block's LayerNorm output (the FFN's input).
pub const TAPS_PER_LAYER: usize = 4;

/// The encoder as a tract graph at `precision`: the last hidden state, then what `extra`
/// adds ([`Outputs`]; with `Taps`, [`TAPS_PER_LAYER`] per layer).
pub fn build_with_outputs(bert: &Bert, precision: Precision, extra: Outputs) -> Result<TypedModel> {
    let (bert, smoothing) = prepare(bert, precision);
    let bert = &bert;
    let mut tapped = Vec::new();
    let mut layer_outputs = Vec::new();
    let mut b = Builder { model: TypedModel::default(), precision };
    let batch = b.model.sym("batch");
    let seq = b.model.sym("seq");
    let fact = i64::fact([batch.to_dim(), seq.to_dim()]);
    let ids = b.model.add_source(INPUTS[0], fact.clone())?;
    let mask = b.model.add_source(INPUTS[1], fact.clone())?;
    let types = b.model.add_source(INPUTS[2], fact)?;

    // Embeddings: word + position[0..seq] + token type, then LayerNorm.
    let word = b.embedding("embeddings.word", &bert.word, ids)?;
    let position_ids = b.konst(
        "embeddings.position_ids",
        tensor1(&(0..bert.position.rows as i64).collect::<Vec<_>>()),
    )?;
    let position_ids =
        b.wire("embeddings.position_ids.slice", Slice::new(0, 0, seq.to_dim()), &[position_ids])?;
    let position = b.embedding("embeddings.position", &bert.position, position_ids)?;
    let types = {
        let t = b.konst(
            "embeddings.token_type",
            Tensor::from_shape(
                &[bert.token_type.rows, bert.token_type.cols],
                &bert.token_type.data,
            )?,
        )?;
        b.wire("embeddings.token_type.gather", Gather::new(0), &[t, types])?
    };
    let x = b.bin("embeddings.add_position", math::add, word, position)?;
    let x = b.bin("embeddings.add_type", math::add, x, types)?;
    let mut x = b.layer_norm("embeddings.norm", x, &bert.embed_norm, bert.eps)?;

    // Additive attention mask [b,1,1,s]: 0 where mask = 1, -10000 where padding (as BERT).
    let mask_f = b.wire("mask.cast", cast(f32::datum_type()), &[mask])?;
    let one = b.scalar("mask.one", 1.0)?;
    let inv = b.bin("mask.inv", math::sub, mask_f, one)?;
    let big = b.scalar("mask.big", 10000.0)?;
    let additive = b.bin("mask.additive", math::mul, inv, big)?;
    let additive = b.wire("mask.unsqueeze1", AxisOp::Add(1), &[additive])?;
    let additive = b.wire("mask.unsqueeze2", AxisOp::Add(1), &[additive])?;

    let dh = bert.head_dim;
    for (i, layer) in bert.layers.iter().enumerate() {
        let p = format!("layer{i}");
        let heads = layer.heads;
        let split = |b: &mut Builder, name: &str, t: OutletId| -> Result<OutletId> {
            // [b, s, heads*dh] → [b, s, heads, dh]
            b.wire(
                name,
                AxisOp::Reshape(
                    2,
                    tvec![(heads * dh).to_dim()],
                    tvec![heads.to_dim(), dh.to_dim()],
                ),
                &[t],
            )
        };
        let smooth = &smoothing[i];
        let x_in = match smooth {
            Some(s) => b.smooth(&format!("{p}.qkv_smooth"), x, &s.qkv)?,
            None => x,
        };
        let q = b.linear(&format!("{p}.query"), x_in, &layer.query)?;
        let k = b.linear(&format!("{p}.key"), x_in, &layer.key)?;
        let v = b.linear(&format!("{p}.value"), x_in, &layer.value)?;
        let q = split(&mut b, &format!("{p}.q_heads"), q)?;
        let k = split(&mut b, &format!("{p}.k_heads"), k)?;
        let v = split(&mut b, &format!("{p}.v_heads"), v)?;
        let scores = b.wire(
            &format!("{p}.scores"),
            EinSum::new("bshd,bthd->bhst".parse()?, f32::datum_type()),
            &[q, k],
        )?;
        // 1/√dh is folded into the query weights (`fold_query_scale`).
        let scores = b.bin(&format!("{p}.masked"), math::add, scores, additive)?;
        let probs = b.wire(
            &format!("{p}.softmax"),
            Softmax::new(tvec![3], None, SoftmaxKind::Softmax),
            &[scores],
        )?;
        let ctx = b.wire(
            &format!("{p}.context"),
            EinSum::new("bhst,bthd->bshd".parse()?, f32::datum_type()),
            &[probs, v],
        )?;
        tapped.extend([x, ctx]);
        let ctx = b.wire(
            &format!("{p}.merge_heads"),
            AxisOp::Reshape(2, tvec![heads.to_dim(), dh.to_dim()], tvec![(heads * dh).to_dim()]),
            &[ctx],
        )?;
        let attn = b.linear(&format!("{p}.attn_out"), ctx, &layer.attn_out)?;
        let res = b.bin(&format!("{p}.attn_residual"), math::add, attn, x)?;
        let h = b.layer_norm(&format!("{p}.attn_norm"), res, &layer.attn_norm, bert.eps)?;
        let h_in = match smooth {
            Some(s) => b.smooth(&format!("{p}.ffn_smooth"), h, &s.ffn_in)?,
            None => h,
        };
        let f = b.linear(&format!("{p}.ffn_in"), h_in, &layer.ffn_in)?;
        let f = b.gelu(&format!("{p}.gelu"), f)?;
        tapped.extend([f, h]);
        let f = b.linear(&format!("{p}.ffn_out"), f, &layer.ffn_out)?;
        let res = b.bin(&format!("{p}.ffn_residual"), math::add, f, h)?;
        x = b.layer_norm(&format!("{p}.ffn_norm"), res, &layer.ffn_norm, bert.eps)?;
        layer_outputs.push(x);
    }
    let mut outputs = vec![x];
    match extra {
        Outputs::Hidden => {}
        Outputs::Layers => {
            layer_outputs.pop();
            outputs.extend(layer_outputs);
        }
        Outputs::Taps => outputs.extend(tapped),
    }
    b.model.select_output_outlets(&outputs)?;
    b.model.set_outlet_label(x, OUTPUT.to_string())?;
    Ok(b.model)
}

/// A layer's Linears by the names the graph gives them.
fn linears(layer: &crate::model::Layer) -> [(&'static str, &Linear); 6] {
    [
        ("query", &layer.query),
        ("key", &layer.key),
        ("value", &layer.value),
        ("attn_out", &layer.attn_out),
        ("ffn_in", &layer.ffn_in),
        ("ffn_out", &layer.ffn_out),
    ]
}

/// Runs a plan of [`build_with_outputs`] on one text alone (batch 1, every token attended).
pub fn run_text(plan: &Arc<TypedRunnableModel>, e: &bertlite::Encoding) -> Result<TVec<TValue>> {
    let s = e.len();
    let input = |v: &[u32]| -> Result<TValue> {
        Ok(Tensor::from_shape(&[1, s], &v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>())?
            .into())
    };
    plan.run(tvec!(input(&e.ids)?, input(&vec![1; s])?, input(&e.type_ids)?))
}

/// Output `i` of [`run_text`], as f32 values in row-major order.
pub fn values(outputs: &[TValue], i: usize) -> Result<Vec<f32>> {
    Ok(outputs[i].to_plain_array_view::<f32>()?.iter().copied().collect())
}

/// Serializes a graph as an NNEF tar (tract extensions on); with `Precision::Int8`, stores every
/// Linear weight as int8 + per-row scales.
/// With `hessians` (calibration statistics of the unsmoothed model), the weights are rounded by
/// [`crate::gptq`] on the scales plain rounding would choose.
pub fn to_nnef(
    model: &TypedModel,
    bert: &Bert,
    precision: Precision,
    hessians: Option<&[crate::gptq::LayerHessians]>,
) -> Result<Vec<u8>> {
    let (bert, smoothing) = prepare(bert, precision);
    let bert = &bert;
    let tar = tract_nnef::nnef()
        .write_to_tar(model, Vec::new())
        .context("cannot serialize the encoder graph to NNEF")?;
    if precision == Precision::F32 {
        return Ok(tar);
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        files.push((path, data));
    }
    let graph_ix =
        files.iter().position(|(p, _)| p == "graph.nnef").context("NNEF tar has no graph.nnef")?;
    if let Some(h) = hessians {
        ensure!(h.len() == bert.layers.len(), "calibration statistics for another model");
    }
    // Per layer, `H` of each Linear input as the graph feeds it (smoothed where it is): query,
    // key and value share one.
    fn smooth<'a>(h: &'a [f64], s: Option<&Vec<f32>>) -> Cow<'a, [f64]> {
        match s {
            Some(s) => Cow::Owned(crate::gptq::smoothed(h, s)),
            None => Cow::Borrowed(h),
        }
    }
    let inputs: Vec<[Cow<[f64]>; 4]> = hessians
        .unwrap_or_default()
        .iter()
        .zip(&smoothing)
        .map(|(h, s)| {
            let s = s.as_ref();
            [
                smooth(&h.qkv, s.map(|s| &s.qkv)),
                smooth(&h.attn_out, None),
                smooth(&h.ffn_in, s.map(|s| &s.ffn_in)),
                smooth(&h.ffn_out, None),
            ]
        })
        .collect();
    // Every weight's int8 rows, first: the calibrated rounding of all of them runs in parallel.
    // Weights already on an int8 grid (an int8 export) keep it: nearest rounding is exact.
    let mut quantized = Vec::new();
    let (mut jobs, mut slots) = (Vec::new(), Vec::new());
    for (i, layer) in bert.layers.iter().enumerate() {
        for (name, lin) in linears(layer) {
            let m = &lin.weight;
            let nearest = quantize_rows(&m.data, m.rows, m.cols);
            if let Some(h) = inputs.get(i).filter(|_| !on_int8_grid(m)) {
                let input = match name {
                    "attn_out" => 1,
                    "ffn_in" => 2,
                    "ffn_out" => 3,
                    _ => 0,
                };
                jobs.push((m, &h[input][..], nearest.scales.clone()));
                slots.push(quantized.len());
            }
            quantized.push(nearest);
        }
    }
    for (slot, q) in slots.into_iter().zip(crate::gptq::quantize_all(&jobs)) {
        quantized[slot] = q;
    }
    let mut quantized = quantized.into_iter();
    let mut text = String::from_utf8(std::mem::take(&mut files[graph_ix].1))?;
    for (i, layer) in bert.layers.iter().enumerate() {
        for (name, lin) in linears(layer) {
            let label = format!("layer{i}.{name}.weight");
            let m = &lin.weight;
            let decl = format!(
                " = variable<scalar>(label = \"{label}\", shape = [{}, {}]);",
                m.rows, m.cols
            );
            let mut hits = text.lines().filter(|l| l.ends_with(&decl));
            let line = hits
                .next()
                .with_context(|| format!("weight {label} not found in the NNEF graph"))?
                .to_owned();
            ensure!(hits.next().is_none(), "weight {label} declared twice in the NNEF graph");
            let ident = line.trim().split(' ').next().unwrap_or_default().to_owned();
            let q = quantized.next().context("one set of int8 rows per weight")?;
            let replacement = format!(
                "  {ident}_q = variable<scalar>(label = \"{label}.q\", shape = [{r}, {c}]);\n  \
                 {ident}_scale = variable<scalar>(label = \"{label}.scale\", shape = [{r}, 1]);\n  \
                 {ident}_f32 = tract_core_cast({ident}_q, to = \"f32\");\n  \
                 {ident} = mul({ident}_f32, {ident}_scale);",
                r = m.rows,
                c = m.cols
            );
            text = text.replacen(&line, &replacement, 1);
            let dat = format!("{label}.dat");
            files.retain(|(p, _)| *p != dat);
            files.push((
                format!("{label}.q.dat"),
                dat_bytes(&Tensor::from_shape(&[m.rows, m.cols], &q.values)?)?,
            ));
            files.push((
                format!("{label}.scale.dat"),
                dat_bytes(&Tensor::from_shape(&[m.rows, 1], &q.scales)?)?,
            ));
        }
    }
    files[graph_ix].1 = text.into_bytes();
    let mut out = tar::Builder::new(Vec::new());
    for (path, data) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_path(path)?;
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(315532800);
        header.set_cksum();
        out.append(&header, &data[..])?;
    }
    Ok(out.into_inner()?)
}

fn dat_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    tract_nnef::tensors::write_tensor(&mut v, t)?;
    Ok(v)
}
