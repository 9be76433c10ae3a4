//! Int8 compute for the linear layers: `x · Wᵀ` as int8 × int8 → i32 on tract's integer
//! kernels, with the two conversions around it done in one pass each by our own ops:
//!
//! ```text
//! x f32 [.., k] ─ QuantizeRows ─┬─ xq i8 [.., k] ─ EinSum(i8, W i8 [n, k]) ─ acc i32 [.., n]
//!                               └─ sx f32, zx i32 [.., 1] ───────────────────┐
//!       (acc − zx · Σₖw[n]) · sx · sw[n] ─ DequantizeRows ─ y f32 [.., n] ───┘
//! ```
//!
//! Activations are quantized per token (row), asymmetric, from the row's own min and max: no
//! calibration. Values run 0..=127 with a per-row zero point, the range our x86 kernel
//! multiplies exactly with `vpmaddubsw` ([`crate::gemm_i8`]); every target uses the same
//! quantization so boards and hosts agree. The zero point costs one multiply-subtract per
//! output, done in our dequantize step, not by tract (its zero-point compensation is what made
//! its ONNX int8 path slower than f32, ../shared/notes/tract-0.23.md). Seven bits are enough:
//! against eight-bit symmetric rows, mean cosine to fp32 on 64 BBC articles went 0.99802 →
//! 0.99773 (results/performance.md). Weights are the bundle's own int8 values and per-channel
//! scales, untouched.
//!
//! The rewrite runs on the loaded graph, before tract optimizes it: it finds each matmul whose
//! weight is `cast(i8 const) · scale const` (how `bertlite-tool` stores int8 linears) and
//! replaces it. The bundle format does not change.

use std::collections::HashMap;

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::binary::TypedBinOp;
use tract_nnef::tract_core::ops::cast::Cast;
use tract_nnef::tract_core::ops::einsum::EinSum;
use tract_nnef::tract_core::ops::konst::Const;
use tract_nnef::tract_core::ops::math::{Add, Mul};

/// f32 → (i8 in 0..=127, per-row scale, per-row zero point) over the last axis:
/// `x ≈ (xq − zero) · scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizeRows;

/// An integer type quantized values are stored as: i8 for tract's matmul, u8 for
/// [`crate::gemm_i8`]'s.
pub trait QuantizedInt: Copy {
    const ZERO: Self;
    /// `v` in 0..=127; plain `as` (truncating int → int casts vectorize, float → int
    /// saturating ones do not).
    fn from_i32(v: i32) -> Self;
}

impl QuantizedInt for i8 {
    const ZERO: i8 = 0;
    #[inline(always)]
    fn from_i32(v: i32) -> i8 {
        v as i8
    }
}

impl QuantizedInt for u8 {
    const ZERO: u8 = 0;
    #[inline(always)]
    fn from_i32(v: i32) -> u8 {
        v as u8
    }
}

/// `v` rounded to nearest-even as an integer, for |v| < 2²²: adding 1.5·2²³ pushes the
/// fraction out of the mantissa and leaves the integer in the low bits. Unlike `f32::round`
/// plus `as i32`, it vectorizes on every target (no SSE4.1, no saturating conversion).
#[inline(always)]
fn round_even(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    ((v + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// A quantized row's scale and zero point: `x ≈ (q − zero) · scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RowQuant {
    scale: f32,
    zero: i32,
}

/// Quantizes one row into `out` (0..=ACTIVATION_MAX, as i8 or u8); returns its scale and
/// zero point (scale 0 for an all-zero row, NaN for a row with a non-finite value).
fn quantize_row<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    // The default x86_64 target is SSE2 only; with AVX2 the same loops run 8 wide.
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma {
        // SAFETY: AVX2 is present.
        return unsafe { quantize_row_avx2(x, out) };
    }
    quantize_row_body(x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    quantize_row_body(x, out)
}

/// `(min(x ∪ {0}), max(x ∪ {0}), whether every value is finite)`. Both bounds start at 0:
/// zero is always in range, and maps to the zero point exactly.
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32, bool) {
    #[cfg(target_arch = "aarch64")]
    {
        // NEON `fmin`/`fmax` propagate NaN (and ±inf reach the bounds), so non-finite rows
        // show in the bounds themselves. The portable form below compiles to scalar
        // `fcmp`/`fcsel` here (8 instructions per value, 8% of an int8 inference on a
        // Cortex-A76); this is 3 per four values.
        use std::arch::aarch64::*;
        let mut chunks = x.chunks_exact(8);
        // SAFETY: NEON is the aarch64 baseline; each chunk holds 8 values.
        let (lo, hi) = unsafe {
            let (mut lo, mut hi) = ([vdupq_n_f32(0.0); 2], [vdupq_n_f32(0.0); 2]);
            for c in &mut chunks {
                let v = [vld1q_f32(c.as_ptr()), vld1q_f32(c.as_ptr().add(4))];
                for i in 0..2 {
                    lo[i] = vminq_f32(lo[i], v[i]);
                    hi[i] = vmaxq_f32(hi[i], v[i]);
                }
            }
            (vminvq_f32(vminq_f32(lo[0], lo[1])), vmaxvq_f32(vmaxq_f32(hi[0], hi[1])))
        };
        let nan = |a: f32, b: f32| a.is_nan() || b.is_nan();
        let lo =
            chunks.remainder().iter().fold(lo, |m, &v| if nan(m, v) { f32::NAN } else { m.min(v) });
        let hi =
            chunks.remainder().iter().fold(hi, |m, &v| if nan(m, v) { f32::NAN } else { m.max(v) });
        (lo, hi, lo.is_finite() && hi.is_finite())
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        // Eight independent minima and maxima so the loop vectorizes (a single fold is a
        // serial chain). `v · 0` is 0 unless v is NaN or infinite: the comparisons skip NaN,
        // this does not.
        let (mut lo, mut hi, mut poison) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for (((lo, hi), p), &v) in lo.iter_mut().zip(&mut hi).zip(&mut poison).zip(c) {
                *lo = if v < *lo { v } else { *lo };
                *hi = if v > *hi { v } else { *hi };
                *p += v * 0.0;
            }
        }
        let rest = chunks.remainder();
        let min = lo.iter().chain(rest).fold(0f32, |m, &v| m.min(v));
        let max = hi.iter().chain(rest).fold(0f32, |m, &v| m.max(v));
        let finite = poison.iter().chain(rest).fold(0f32, |p, &v| p + v * 0.0) == 0.0;
        (min, max, finite)
    }
}

#[inline(always)]
fn quantize_row_body<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    let (min, max, finite) = min_max(x);
    let range = max - min;
    if !(range > 0.0 && range.is_finite() && finite) {
        out.fill(T::ZERO);
        let scale = if range == 0.0 && finite { 0.0 } else { f32::NAN };
        return RowQuant { scale, zero: 0 };
    }
    let top = f32::from(crate::gemm_i8::ACTIVATION_MAX);
    let inv = top / range;
    let zero = round_even(-min * inv);
    let top = i32::from(crate::gemm_i8::ACTIVATION_MAX);
    for (q, &v) in out.iter_mut().zip(x) {
        *q = T::from_i32((round_even(v * inv) + zero).clamp(0, top));
    }
    RowQuant { scale: range / f32::from(crate::gemm_i8::ACTIVATION_MAX), zero }
}

impl Op for QuantizeRows {
    fn name(&self) -> StaticName {
        "BertliteQuantizeRows".into()
    }
    op_as_typed_op!();
}

impl EvalOp for QuantizeRows {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let shape = x.shape().to_vec();
        let k = *shape.last().context("QuantizeRows needs a rank ≥ 1 input")?;
        let mut scale_shape = shape.clone();
        if let Some(last) = scale_shape.last_mut() {
            *last = 1;
        }
        let mut q = Tensor::zero::<i8>(&shape)?;
        let mut s = Tensor::zero::<f32>(&scale_shape)?;
        let mut z = Tensor::zero::<i32>(&scale_shape)?;
        if k > 0 {
            let x_ram = x.try_as_plain_ram()?;
            let mut q_ram = q.try_as_plain_ram_mut()?;
            let mut s_ram = s.try_as_plain_ram_mut()?;
            let mut z_ram = z.try_as_plain_ram_mut()?;
            let rows = x_ram.as_slice::<f32>()?.chunks_exact(k);
            let rows = rows.zip(q_ram.as_slice_mut::<i8>()?.chunks_exact_mut(k));
            let params = s_ram.as_slice_mut::<f32>()?.iter_mut().zip(z_ram.as_slice_mut::<i32>()?);
            for ((x, q), (s, z)) in rows.zip(params) {
                RowQuant { scale: *s, zero: *z } = quantize_row(x, q);
            }
        }
        Ok(tvec![q.into_tvalue(), s.into_tvalue(), z.into_tvalue()])
    }
}

impl TypedOp for QuantizeRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type(), "QuantizeRows wants f32");
        let shape = inputs[0].shape.to_tvec();
        let mut scale_shape = shape.clone();
        *scale_shape.last_mut().context("QuantizeRows needs a rank ≥ 1 input")? = 1.to_dim();
        Ok(tvec![i8::fact(shape), f32::fact(scale_shape.clone()), i32::fact(scale_shape)])
    }
    as_op!();
}

/// i32 accumulators `[.., n]`, less per-row zero point `[.., 1]` × weight sums `[n]`, × per-row
/// scale `[.., 1]` × per-channel scale `[n]` → f32.
#[derive(Clone, Debug, PartialEq)]
pub struct DequantizeRows {
    pub channel_scales: Arc<Vec<f32>>,
    /// Σₖ w[c][k] per channel.
    pub col_sums: Arc<Vec<i32>>,
}

impl Eq for DequantizeRows {}

impl Op for DequantizeRows {
    fn name(&self) -> StaticName {
        "BertliteDequantizeRows".into()
    }
    op_as_typed_op!();
}

impl EvalOp for DequantizeRows {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (acc, row_scales, row_zeros) = args_3!(inputs);
        let n = self.channel_scales.len();
        ensure!(
            acc.shape().last() == Some(&n),
            "DequantizeRows: {:?} vs {n} channels",
            acc.shape()
        );
        let mut y = Tensor::zero::<f32>(acc.shape())?;
        {
            let acc_ram = acc.try_as_plain_ram()?;
            let acc = acc_ram.as_slice::<i32>()?;
            let rs_ram = row_scales.try_as_plain_ram()?;
            let rs = rs_ram.as_slice::<f32>()?;
            let rz_ram = row_zeros.try_as_plain_ram()?;
            let zeros = rz_ram.as_slice::<i32>()?;
            let mut y_ram = y.try_as_plain_ram_mut()?;
            ensure!(
                rs.len() * n == acc.len() && zeros.len() == rs.len(),
                "DequantizeRows: one scale and zero point per row"
            );
            let rescale = crate::gemm_i8::Rescale {
                rows: rs,
                zeros,
                channels: &self.channel_scales,
                bias: None,
            };
            crate::gemm_i8::rescale(acc, &rescale, &self.col_sums, y_ram.as_slice_mut::<f32>()?);
        }
        Ok(tvec![y.into_tvalue()])
    }
}

impl TypedOp for DequantizeRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == i32::datum_type(), "DequantizeRows wants i32");
        Ok(tvec![f32::fact(inputs[0].shape.clone())])
    }
    as_op!();
}

/// One int8 linear's constants: packed weights `[n, k]`, per-channel scales, and the bias add
/// that followed the matmul (absorbed into the kernel's rescale).
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Linear {
    pub weights: Arc<crate::gemm_i8::PackedWeights>,
    pub channel_scales: Arc<Vec<f32>>,
    pub bias: Option<Arc<Vec<f32>>>,
}

/// Whole int8 linears in one op, on our own kernels ([`crate::gemm_i8`]: AVX2 on x86_64, SDOT
/// on aarch64 with dot-product, SMULL on aarch64 without): quantize each row of `x [.., k]` once, then for every linear
/// reading `x` (query, key and value share one), exact int8 products rescaled to f32 `[.., n]`
/// — one output per linear. Used instead of the three-op chain above wherever one of our
/// kernels runs (tract's int8 matmul is unusably slow on x86, and needs the extra passes).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearI8 {
    pub linears: Vec<Int8Linear>,
}

impl Eq for LinearI8 {}

impl Op for LinearI8 {
    fn name(&self) -> StaticName {
        "BertliteLinearI8".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self
            .linears
            .iter()
            .map(|l| {
                let (k, n) = (l.weights.k, l.weights.n);
                let fixes = l.weights.corrections();
                let kernel = l.weights.kernel.name();
                format!("Mult: k:{k} n:{n}, {fixes} weights corrected, with [{kernel}]")
            })
            .collect())
    }
    op_as_typed_op!();
}

impl EvalOp for LinearI8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let k = self.linears.first().map_or(0, |l| l.weights.k);
        ensure!(x.shape().last() == Some(&k), "LinearI8: input {:?}, k = {k}", x.shape());
        let m = x.len() / k.max(1);
        let shape = |n: usize| {
            let mut shape = x.shape().to_vec();
            if let Some(last) = shape.last_mut() {
                *last = n;
            }
            shape
        };
        if m == 0 || k == 0 {
            return self
                .linears
                .iter()
                .map(|l| Ok(Tensor::zero::<f32>(&shape(l.weights.n))?.into_tvalue()))
                .collect();
        }
        let x_ram = x.try_as_plain_ram()?;
        // Quantized straight into the kernel's row layout (k padded to whole quads, pad = 0).
        let kp = crate::gemm_i8::padded_k(k);
        let mut xq = vec![0u8; m * kp];
        let (mut row_scales, mut row_zeros) = (vec![0f32; m], vec![0i32; m]);
        let rows = x_ram.as_slice::<f32>()?.chunks_exact(k).zip(xq.chunks_exact_mut(kp));
        for ((x, q), (s, z)) in rows.zip(row_scales.iter_mut().zip(&mut row_zeros)) {
            RowQuant { scale: *s, zero: *z } = quantize_row(x, &mut q[..k]);
        }
        let mut outputs = TVec::new();
        for l in &self.linears {
            // SAFETY: `linear_rows` writes every element of `y` before anything reads it.
            let mut y = unsafe { Tensor::uninitialized::<f32>(&shape(l.weights.n))? };
            {
                let mut y_ram = y.try_as_plain_ram_mut()?;
                linear_rows(l, &xq, &row_scales, &row_zeros, y_ram.as_slice_mut()?);
            }
            outputs.push(y.into_tvalue());
        }
        Ok(outputs)
    }
}

/// `y = linear(xq)` for quantized rows, split by rows over tract's thread pool when the plan
/// runs with several threads (`--threads`), else on the calling thread.
fn linear_rows(l: &Int8Linear, xq: &[u8], row_scales: &[f32], row_zeros: &[i32], y: &mut [f32]) {
    use rayon::prelude::*;
    let (n, kp, m) = (l.weights.n, crate::gemm_i8::padded_k(l.weights.k), row_scales.len());
    let run = |rows: std::ops::Range<usize>, y: &mut [f32]| {
        let rescale = crate::gemm_i8::Rescale {
            rows: &row_scales[rows.clone()],
            zeros: &row_zeros[rows.clone()],
            channels: &l.channel_scales,
            bias: l.bias.as_deref().map(|b| b.as_slice()),
        };
        let x = &xq[rows.start * kp..rows.end * kp];
        crate::gemm_i8::linear(x, rows.len(), &l.weights, &rescale, y);
    };
    match crate::encoder::thread_pool() {
        // Whole micro-kernel tiles (4 rows) per thread; short inputs stay on one.
        Some(pool) if m >= 8 => {
            let chunk = m.div_ceil(pool.current_num_threads()).next_multiple_of(4);
            pool.install(|| {
                y.par_chunks_mut(chunk * n).enumerate().for_each(|(i, y)| {
                    let start = i * chunk;
                    run(start..start + y.len() / n, y)
                })
            });
        }
        _ => run(0..m, y),
    }
}

impl TypedOp for LinearI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type(), "LinearI8 wants f32");
        let k = self.linears.first().map_or(0, |l| l.weights.k);
        let last = inputs[0].shape.last().context("LinearI8 needs a rank ≥ 1 input")?;
        ensure!(*last == k.to_dim(), "LinearI8: input {:?}, k = {k}", inputs[0].shape);
        Ok(self
            .linears
            .iter()
            .map(|l| {
                let mut shape = inputs[0].shape.to_tvec();
                if let Some(last) = shape.last_mut() {
                    *last = l.weights.n.to_dim();
                }
                f32::fact(shape)
            })
            .collect())
    }
    as_op!();
}

/// Whether an einsum contracts the last axis of its input with the second axis of an `[n, k]`
/// weight and puts `n` last (`mk,nk->mn`, `bsk,nk->bsn`): the shape [`LinearI8`] computes.
fn is_linear(einsum: &EinSum) -> bool {
    let text = einsum.axes.to_string();
    let Some((inputs, output)) = text.split_once("->") else { return false };
    let Some((x, w)) = inputs.split_once(',') else { return false };
    let (x, w): (Vec<char>, Vec<char>) = (x.chars().collect(), w.chars().collect());
    w.len() == 2
        && x.last() == Some(&w[1])
        && output.chars().collect::<Vec<_>>() == [&x[..x.len() - 1], &w[..1]].concat()
}

/// The `[n]` bias added right after `node`'s output (through no-op casts), with the node that
/// adds it, if there is one and nothing else reads the matmul's output.
fn following_bias(model: &TypedModel, node: &TypedNode, n: usize) -> Option<(usize, Vec<f32>)> {
    let mut outlet = OutletId::new(node.id, 0);
    loop {
        let succ = &model.outlet_successors(outlet);
        if succ.len() != 1 {
            return None;
        }
        let next = model.node(succ[0].node);
        if next.op_as::<Cast>().is_some_and(|c| c.to == f32::datum_type()) {
            outlet = OutletId::new(next.id, 0);
            continue;
        }
        if !next.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Add>()) {
            return None;
        }
        let other = next.inputs[1 - succ[0].slot];
        let (bias, _) = konst(model, other)?;
        if bias.len() != n || bias.datum_type() != f32::datum_type() {
            return None;
        }
        let out_fact = model.outlet_fact(OutletId::new(next.id, 0)).ok()?;
        let in_fact = model.outlet_fact(outlet).ok()?;
        if out_fact.shape != in_fact.shape {
            return None;
        }
        let values = bias.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?.to_vec();
        return Some((next.id, values));
    }
}

/// The outlet `o` reshapes, through any chain of reshapes (itself if it is no reshape).
fn behind_reshapes(model: &TypedModel, mut o: OutletId) -> OutletId {
    loop {
        let node = model.node(o.node);
        match node.op_as::<AxisOp>() {
            Some(AxisOp::Reshape(..)) => o = node.inputs[0],
            _ => return o,
        }
    }
}

/// The constant behind `outlet` through any casts to f32 (the NNEF loader adds no-op ones);
/// with the number of casts crossed.
pub(crate) fn konst(model: &TypedModel, mut outlet: OutletId) -> Option<(Arc<Tensor>, usize)> {
    let mut casts = 0;
    loop {
        let node = model.node(outlet.node);
        if let Some(c) = node.op_as::<Const>() {
            return Some((c.val().clone(), casts));
        }
        node.op_as::<Cast>().filter(|c| c.to == f32::datum_type())?;
        outlet = node.inputs[0];
        casts += 1;
    }
}

/// `(int8 weights [n, k], per-channel scales [n])` if `outlet` is `cast(i8 const) · scale`.
fn int8_weight(model: &TypedModel, outlet: OutletId) -> Option<(Arc<Tensor>, Vec<f32>)> {
    let mul = model.node(outlet.node);
    if !mul.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Mul>()) {
        return None;
    }
    let (q, casts) = konst(model, mul.inputs[0])?;
    if q.datum_type() != i8::datum_type() || casts == 0 {
        return None;
    }
    let (scale, _) = konst(model, mul.inputs[1])?;
    let n = *q.shape().first()?;
    if q.rank() != 2 || scale.len() != n || scale.datum_type() != f32::datum_type() {
        return None;
    }
    let scales = scale.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?.to_vec();
    Some((q, scales))
}

/// Whether any matmul has int8 weights (false for an f32 bundle).
pub fn has_int8_linears(model: &TypedModel) -> bool {
    model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<EinSum>() && n.inputs.len() == 2)
        .any(|n| int8_weight(model, n.inputs[1]).is_some())
}

/// Linears reading one input: (the tensor behind its reshapes and its shape, the input, op
/// name, [(linear, the outlet it replaces)]).
type SharedInput = ((OutletId, ShapeFact), OutletId, String, Vec<(Int8Linear, OutletId)>);

/// Rewrites every int8-weight matmul `x · cast(Wq)·s` into the int8 form above; returns how many.
/// Matmuls sharing an input (query, key, value) share one quantization of it.
pub fn rewrite_linears(model: &mut TypedModel) -> TractResult<usize> {
    let mut patch = TypedModelPatch::new("bertlite int8 linears");
    let mut quantized: HashMap<OutletId, [OutletId; 3]> = HashMap::new();
    // AVX2 path: per input, the linears reading it and the outlet each replaces.
    let mut fused: Vec<SharedInput> = Vec::new();
    let mut count = 0;
    for node in model.nodes() {
        let Some(einsum) = node.op_as::<EinSum>() else { continue };
        if einsum.q_params.is_some() || node.inputs.len() != 2 {
            continue;
        }
        let Some((q, channel_scales)) = int8_weight(model, node.inputs[1]) else { continue };
        let x = node.inputs[0];
        count += 1;
        let kernel = crate::gemm_i8::Kernel::native();
        if kernel != crate::gemm_i8::Kernel::Portable && is_linear(einsum) {
            let (n, k) = (q.shape()[0], q.shape()[1]);
            let w = q.try_as_plain_ram()?.as_slice::<i8>()?.to_vec();
            let bias = following_bias(model, node, n);
            let linear = Int8Linear {
                weights: Arc::new(crate::gemm_i8::PackedWeights::pack(&w, n, k, kernel)),
                channel_scales: Arc::new(channel_scales),
                bias: bias.as_ref().map(|(_, b)| Arc::new(b.clone())),
            };
            let replaced = OutletId::new(bias.map_or(node.id, |(add, _)| add), 0);
            // Query, key and value each reshape the same tensor on their own: group them by
            // the tensor behind the reshapes (their inputs are then equal, element for element).
            let key = (behind_reshapes(model, x), model.outlet_fact(x)?.shape.clone());
            match fused.iter_mut().find(|(k, ..)| *k == key) {
                Some((.., group)) => group.push((linear, replaced)),
                None => {
                    let name = format!("{}.int8", node.name);
                    fused.push((key, x, name, vec![(linear, replaced)]))
                }
            }
            continue;
        }
        let [xq, xs, xz] = match quantized.get(&x) {
            Some(&outs) => outs,
            None => {
                let tapped = patch.tap_model(model, x)?;
                let outs =
                    patch.wire_node(format!("{}.quantize", node.name), QuantizeRows, &[tapped])?;
                let outs = [outs[0], outs[1], outs[2]];
                quantized.insert(x, outs);
                outs
            }
        };
        let (n, k) = (q.shape()[0], q.shape()[1]);
        let col_sums = crate::gemm_i8::col_sums(q.try_as_plain_ram()?.as_slice::<i8>()?, n, k);
        let w = patch.add_const(format!("{}.weight_i8", node.name), q)?;
        let acc = patch.wire_node(
            format!("{}.i8", node.name),
            EinSum::new(einsum.axes.clone(), i32::datum_type()),
            &[xq, w],
        )?[0];
        let y = patch.wire_node(
            format!("{}.dequantize", node.name),
            DequantizeRows {
                channel_scales: Arc::new(channel_scales),
                col_sums: Arc::new(col_sums),
            },
            &[acc, xs, xz],
        )?[0];
        patch.shunt_outside(model, OutletId::new(node.id, 0), y)?;
    }
    for (_, x, name, group) in fused {
        let tapped = patch.tap_model(model, x)?;
        let (linears, replaced): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let outs = patch.wire_node(name, LinearI8 { linears }, &[tapped])?;
        for (out, replaced) in outs.into_iter().zip(replaced) {
            patch.shunt_outside(model, replaced, out)?;
        }
    }
    patch.apply(model)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_quantize_to_their_own_range_with_an_exact_zero() {
        // min −0.5, max 0.77: 127 steps of 0.01, zero point 50.
        let x = [0.5f32, -0.5, 0.25, 0.0, 0.01, 0.77, -0.25, 0.1, 0.2, 0.004, 0.006];
        let mut q = [0u8; 11];
        let RowQuant { scale, zero } = quantize_row(&x, &mut q);
        assert!((scale - 0.01).abs() < 1e-7, "{scale}");
        assert_eq!(zero, 50);
        assert_eq!(q, [100, 0, 75, 50, 51, 127, 25, 60, 70, 50, 51]);
        // Positive-only rows use the full range from zero; a row over 8 long takes the
        // vectorized path.
        let x: Vec<f32> = (0..20).map(|i| i as f32 * 0.1).collect();
        let mut q = [0u8; 20];
        let RowQuant { scale, zero } = quantize_row(&x, &mut q);
        assert_eq!((zero, q[0], q[19]), (0, 0, 127));
        for (&v, &q) in x.iter().zip(&q) {
            assert!((v - (i32::from(q) - zero) as f32 * scale).abs() <= scale / 2.0 + 1e-6);
        }
    }

    #[test]
    fn zero_and_non_finite_rows_are_not_divided_by_zero() {
        let mut q = [5i8; 3];
        assert_eq!(quantize_row(&[0.0; 3], &mut q), RowQuant { scale: 0.0, zero: 0 });
        assert_eq!(q, [0; 3]);
        assert!(quantize_row(&[1.0, f32::INFINITY, 0.0], &mut q).scale.is_nan());
        let mut q = [5i8; 9];
        assert!(
            quantize_row(&[1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, f32::NAN], &mut q)
                .scale
                .is_nan()
        );
        assert!(
            quantize_row(&[f32::NAN, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &mut q)
                .scale
                .is_nan()
        );
    }

    /// The rewritten graph computes what the dequantized f32 graph computes, within int8
    /// activation rounding (≤ half a step per element, summed over k); two linears reading the
    /// same input (as query, key and value do) share one op and one quantization.
    #[test]
    fn rewrite_matches_the_f32_linear() -> TractResult<()> {
        let (n, k, t) = (5usize, 16usize, 3usize);
        let wq: Vec<i8> = (0..n * k).map(|i| ((i * 37 % 255) as i32 - 127) as i8).collect();
        let ws: Vec<f32> = (0..n).map(|i| 0.01 * (i + 1) as f32).collect();
        let xs: Vec<f32> = (0..t * k).map(|i| ((i * 13 % 17) as f32 - 8.0) / 3.0).collect();
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, t, k]))?;
        let q = model.add_const("w.q", Tensor::from_shape(&[n, k], &wq)?)?;
        let s = model.add_const("w.scale", Tensor::from_shape(&[n, 1], &ws)?)?;
        let qf = model.wire_node("w.cast", Cast { to: f32::datum_type() }, &[q])?[0];
        let w = model.wire_node("w", TypedBinOp(Box::new(Mul), None), &[qf, s])?[0];
        let einsum = || -> TractResult<EinSum> {
            Ok(EinSum::new("bsk,nk->bsn".parse()?, f32::datum_type()))
        };
        let y = model.wire_node("mm", einsum()?, &[x, w])?[0];
        let bias: Vec<f32> = (0..n).map(|i| i as f32 - 2.0).collect();
        let b = model.add_const("b", Tensor::from_shape(&[1, 1, n], &bias)?)?;
        let y = model.wire_node("add_bias", TypedBinOp(Box::new(Add), None), &[y, b])?[0];
        let y2 = model.wire_node("mm2", einsum()?, &[x, w])?[0];
        model.select_output_outlets(&[y, y2])?;
        let input = Tensor::from_shape(&[1, t, k], &xs)?;
        let expected = model.clone().into_runnable()?.run(tvec![input.clone().into_tvalue()])?;
        assert_eq!(rewrite_linears(&mut model)?, 2);
        let model = model.into_optimized()?;
        if crate::gemm_i8::available() {
            let ops = model.nodes().iter().filter(|n| n.op_is::<LinearI8>()).count();
            assert_eq!(ops, 1, "one LinearI8 for both linears");
        }
        let got = model.into_runnable()?.run(tvec![input.into_tvalue()])?;
        for (e, g) in expected.iter().zip(&got) {
            let (e, g) = (e.to_plain_array_view::<f32>()?, g.to_plain_array_view::<f32>()?);
            for ((&e, &g), row) in e.iter().zip(g.iter()).zip((0..t * n).map(|i| i / n)) {
                let x = &xs[row * k..][..k];
                let range =
                    x.iter().fold(0f32, |m, &v| m.max(v)) - x.iter().fold(0f32, |m, &v| m.min(v));
                // Each of k activations is off by ≤ one step (half a step of rounding, half of the
                // zero point's), times |w| ≤ 127 · the largest channel scale.
                let bound = k as f32 * (range / 127.0) * 127.0 * ws[n - 1] + 1e-5;
                assert!((e - g).abs() <= bound, "{e} vs {g} (bound {bound})");
            }
        }
        Ok(())
    }
}
