//! One-pass kernels for the encoder's element-wise stretches, swapped into the loaded graph.
//!
//! tract 0.23 runs a LayerNorm as five ops (`Reduce<Sum>`, `OptSubByScalar`, `RmsNorm`,
//! `OptBinChain(Mul+Add)`, plus the residual `Add` before it) and the attention mask as a
//! broadcast `Add` before `Softmax`: each is a full pass over memory, several on generic
//! broadcasting code. Profiled at 128 tokens on x86 they took ~6.4 ms (LayerNorms) and ~5.3 ms
//! (mask + softmax) of a 44 ms int8 inference (results/performance.md). Here each stretch is one
//! op that reads its input once per row while the row sits in L1:
//!
//! ```text
//! a + b ─ LayerNorm(γ, β, ε) ─ y          scores + mask ─ Softmax(last axis) ─ p
//!   └──────── AddLayerNorm ──────┘          └────────── MaskedSoftmax ───────────┘
//! ```
//!
//! The patterns are matched structurally on the graph as loaded (the way `bertlite-tool` writes
//! LayerNorm and the mask), so bundles already shipped get the fast path too; anything that does
//! not match exactly is left to tract.

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_nnef::tract_core::ops::cast::Cast;
use tract_nnef::tract_core::ops::element_wise::ElementWiseOp;
use tract_nnef::tract_core::ops::math::{Add, Div, Mul, Rsqrt, Square, Sub};
use tract_nnef::tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};

/// Σ f(v) with eight partial sums, so the loop vectorizes (one running sum is a serial chain).
#[inline(always)]
fn sum_of(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        lanes.iter_mut().zip(c).for_each(|(l, &v)| *l += f(v));
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

simd_dispatch!(layer_norm_rows(
    a: &[f32],
    b: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32]
) -> () {
    let h = gamma.len();
    for (row, y) in y.chunks_exact_mut(h).enumerate() {
        let a = &a[row * h..][..h];
        // The residual sum is written to `y` first and normalized in place.
        match b {
            Some(b) => {
                let b = &b[row * h..][..h];
                y.iter_mut().zip(a).zip(b).for_each(|((y, a), b)| *y = a + b);
            }
            None => y.copy_from_slice(a),
        }
        let mean = sum_of(y, |v| v) / h as f32;
        // Two-pass variance: no cancellation when |mean| ≫ std.
        let var = sum_of(y, |v| (v - mean) * (v - mean)) / h as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for ((y, g), b) in y.iter_mut().zip(gamma).zip(beta) {
            *y = (*y - mean) * rstd * g + b;
        }
    }
});

/// e^x for x ≤ 0 to ~2 ulp (Cephes' expf polynomial), in a form that vectorizes: range
/// reduction by n = round(x·log₂e), a degree-5 polynomial, 2ⁿ built in the exponent bits.
/// Inputs below −87 give e^−87 ≈ 1.6e-38 instead of a denormal: nothing in a softmax sum.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // Adding 1.5·2²³ rounds to an integer and leaves it in the low mantissa bits, so n needs no
    // float → int conversion (Rust's saturating `as` does not vectorize well).
    const MAGIC: f32 = 12_582_912.0;
    let x = if x > -87.0 { x } else { -87.0 };
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let n_bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    e * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `p = exp(s + m − max)` for one row; returns `Σ p`, so `p / Σ p = softmax(s + m)`.
/// Inlined into the AVX2-compiled callers on x86; on aarch64 a function of its own, where
/// the exp's constants stay in registers (inlined into the attention, LLVM re-created nine of
/// them per four values: 41 instructions instead of ~30).
#[cfg_attr(target_arch = "aarch64", inline(never))]
#[cfg_attr(not(target_arch = "aarch64"), inline(always))]
pub(crate) fn masked_exp_row(s: &[f32], m: &[f32], p: &mut [f32]) -> f32 {
    p.iter_mut().zip(s).zip(m).for_each(|((p, s), m)| *p = s + m);
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = p.chunks_exact(8);
    for c in &mut chunks {
        lanes.iter_mut().zip(c).for_each(|(l, &v)| *l = if v > *l { v } else { *l });
    }
    let max = chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    p.iter_mut().for_each(|p| *p = exp_nonpositive(*p - max));
    sum_of(p, |v| v)
}

/// `p = softmax(s + m)` for one row.
#[inline(always)]
fn masked_softmax_row(s: &[f32], m: &[f32], p: &mut [f32]) {
    let inv = 1.0 / masked_exp_row(s, m, p);
    p.iter_mut().for_each(|p| *p *= inv);
}

simd_dispatch!(masked_softmax_rows(
    scores: &[f32],
    mask: &[f32],
    width: usize,
    rows_per_mask: usize,
    p: &mut [f32]
) -> () {
    for (row, (s, p)) in scores.chunks_exact(width).zip(p.chunks_exact_mut(width)).enumerate() {
        masked_softmax_row(s, &mask[(row / rows_per_mask) * width..][..width], p);
    }
});

/// `LayerNorm(a (+ b))` over the last axis, with the residual add that usually precedes it.
#[derive(Clone, Debug, PartialEq)]
pub struct AddLayerNorm {
    pub gamma: Arc<Vec<f32>>,
    pub beta: Arc<Vec<f32>>,
    pub eps: f32,
}

impl Eq for AddLayerNorm {}

impl Op for AddLayerNorm {
    fn name(&self) -> StaticName {
        "BertliteAddLayerNorm".into()
    }
    op_as_typed_op!();
}

impl EvalOp for AddLayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let h = self.gamma.len();
        let shape = inputs[0].shape();
        ensure!(shape.last() == Some(&h), "AddLayerNorm: input {shape:?}, h = {h}");
        ensure!(inputs.iter().all(|i| i.shape() == shape), "AddLayerNorm: addends differ");
        if h == 0 {
            return Ok(tvec![Tensor::zero::<f32>(shape)?.into_tvalue()]);
        }
        // SAFETY: `layer_norm_rows` writes every row of `y` (its length is rows × h).
        let mut y = unsafe { Tensor::uninitialized::<f32>(shape)? };
        {
            let a_ram = inputs[0].try_as_plain_ram()?;
            let b_ram = inputs.get(1).map(|b| b.try_as_plain_ram()).transpose()?;
            let b = b_ram.as_ref().map(|b| b.as_slice::<f32>()).transpose()?;
            let mut y_ram = y.try_as_plain_ram_mut()?;
            let y = y_ram.as_slice_mut::<f32>()?;
            layer_norm_rows(a_ram.as_slice::<f32>()?, b, &self.gamma, &self.beta, self.eps, y);
        }
        Ok(tvec![y.into_tvalue()])
    }
}

impl TypedOp for AddLayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f32s = inputs.iter().all(|i| i.datum_type == f32::datum_type());
        ensure!(f32s, "AddLayerNorm wants f32");
        Ok(tvec![f32::fact(inputs[0].shape.clone())])
    }
    as_op!();
}

/// `softmax(scores + mask)` over the last axis; `mask [d0, 1, .., 1, t]` broadcasts over the
/// middle axes (heads, query positions) of `scores [d0, .., t]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedSoftmax;

impl Op for MaskedSoftmax {
    fn name(&self) -> StaticName {
        "BertliteMaskedSoftmax".into()
    }
    op_as_typed_op!();
}

impl EvalOp for MaskedSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (scores, mask) = args_2!(inputs);
        let (s, m) = (scores.shape(), mask.shape());
        ensure!(mask_broadcasts(s, m, &1), "MaskedSoftmax: mask {m:?} does not fit scores {s:?}");
        let width = s.last().copied().unwrap_or(0);
        if width == 0 || scores.len() == 0 {
            return Ok(tvec![Tensor::zero::<f32>(s)?.into_tvalue()]);
        }
        // SAFETY: `masked_softmax_rows` writes every row of `p` (its length is rows × width).
        let mut p = unsafe { Tensor::uninitialized::<f32>(s)? };
        {
            let rows_per_mask = scores.len() / mask.len();
            let s_ram = scores.try_as_plain_ram()?;
            let m_ram = mask.try_as_plain_ram()?;
            let mut p_ram = p.try_as_plain_ram_mut()?;
            let (s, m) = (s_ram.as_slice::<f32>()?, m_ram.as_slice::<f32>()?);
            masked_softmax_rows(s, m, width, rows_per_mask, p_ram.as_slice_mut::<f32>()?);
        }
        Ok(tvec![p.into_tvalue()])
    }
}

/// Whether `mask` is `[1 or d0, 1, .., 1, t]` against `scores [d0, .., t]`.
fn mask_broadcasts<D: PartialEq>(scores: &[D], mask: &[D], one: &D) -> bool {
    let r = scores.len();
    r >= 2
        && mask.len() == r
        && mask[r - 1] == scores[r - 1]
        && (mask[0] == scores[0] || mask[0] == *one)
        && mask[1..r - 1].iter().all(|d| d == one)
}

impl TypedOp for MaskedSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f32s = inputs.iter().all(|i| i.datum_type == f32::datum_type());
        ensure!(f32s, "MaskedSoftmax wants f32");
        Ok(tvec![f32::fact(inputs[0].shape.clone())])
    }
    as_op!();
}

/// How many stretches [`rewrite`] fused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fused {
    pub layer_norms: usize,
    pub softmaxes: usize,
}

/// Swaps every LayerNorm (with its residual add) and masked softmax of `model` for the ops above.
///
/// One patch per match, applied at once: the next LayerNorm's residual reads the previous one's
/// output, which must already be the fused op's (a tap of the old output would keep the whole
/// unfused chain alive).
pub fn rewrite(model: &mut TypedModel) -> TractResult<Fused> {
    let mut fused = Fused::default();
    // Patches append nodes; the ones we add are never candidates.
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let out = OutletId::new(id, 0);
        let mut patch = TypedModelPatch::new(format!("bertlite fuse {}", node.name));
        if let Some(ln) = match_layer_norm(model, out) {
            let inputs = ln
                .inputs
                .iter()
                .map(|&i| patch.tap_model(model, i))
                .collect::<TractResult<TVec<_>>>()?;
            let (gamma, beta) = (Arc::new(ln.gamma), Arc::new(ln.beta));
            let op = AddLayerNorm { gamma, beta, eps: ln.eps };
            let y = patch.wire_node(format!("{}.fused", node.name), op, &inputs)?[0];
            patch.shunt_outside(model, out, y)?;
            fused.layer_norms += 1;
        } else if let Some([scores, mask]) = match_masked_softmax(model, node) {
            let inputs = [patch.tap_model(model, scores)?, patch.tap_model(model, mask)?];
            let p = patch.wire_node(format!("{}.fused", node.name), MaskedSoftmax, &inputs)?[0];
            patch.shunt_outside(model, out, p)?;
            fused.softmaxes += 1;
        } else {
            continue;
        }
        patch.apply(model)?;
    }
    Ok(fused)
}

struct LayerNormMatch {
    inputs: TVec<OutletId>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

/// The outlet behind `o` once the loader's no-op f32 → f32 casts are skipped.
pub(crate) fn through_casts(model: &TypedModel, mut o: OutletId) -> OutletId {
    loop {
        let node = model.node(o.node);
        let noop = node.op_as::<Cast>().is_some_and(|c| c.to == f32::datum_type())
            && model.outlet_fact(node.inputs[0]).is_ok_and(|f| f.datum_type == f32::datum_type());
        if !noop {
            return o;
        }
        o = node.inputs[0];
    }
}

/// The two operands of `o` if it is the binary op `B`.
fn bin_inputs<B: BinMiniOp>(model: &TypedModel, o: OutletId) -> Option<[OutletId; 2]> {
    let node = model.node(o.node);
    node.op_as::<TypedBinOp>().filter(|op| op.0.is::<B>())?;
    Some([through_casts(model, node.inputs[0]), through_casts(model, node.inputs[1])])
}

fn const_f32(model: &TypedModel, o: OutletId) -> Option<Vec<f32>> {
    let (t, _) = crate::int8::konst(model, o)?;
    t.try_as_plain_ram().ok()?.as_slice::<f32>().ok().map(|s| s.to_vec())
}

/// `(x, c)` if `o` is the commutative op `B` of `x` and a constant `c`.
fn with_const<B: BinMiniOp>(model: &TypedModel, o: OutletId) -> Option<(OutletId, Vec<f32>)> {
    let [a, b] = bin_inputs::<B>(model, o)?;
    match const_f32(model, b) {
        Some(c) => Some((a, c)),
        None => Some((b, const_f32(model, a)?)),
    }
}

fn single(values: &[f32]) -> Option<f32> {
    (values.len() == 1).then(|| values[0])
}

/// The input of `o` if `o` is the single-input element-wise op `E`.
fn element_wise_input<E: ElementWiseMiniOp>(model: &TypedModel, o: OutletId) -> Option<OutletId> {
    let node = model.node(o.node);
    node.op_as::<ElementWiseOp>().filter(|ew| ew.0.is::<E>())?;
    Some(through_casts(model, node.inputs[0]))
}

/// `x` if `o` is `reducer(x)` over the last axis only.
fn reduce_last(model: &TypedModel, o: OutletId, reducer: Reducer) -> Option<OutletId> {
    let node = model.node(o.node);
    let reduce = node.op_as::<Reduce>().filter(|r| r.reducer == reducer)?;
    let x = through_casts(model, node.inputs[0]);
    let rank = model.outlet_fact(x).ok()?.rank();
    (rank > 0 && reduce.axes.as_slice() == [rank - 1]).then_some(x)
}

/// `x` if `o` is the mean of `x` over its last axis (`h` long): `sum · (1/h)` or `sum / h`.
fn mean_last(model: &TypedModel, o: OutletId, h: usize) -> Option<OutletId> {
    let h = h as f32;
    if let Some((sum, c)) = with_const::<Mul>(model, o) {
        let inv_h = single(&c)?;
        return if (inv_h * h - 1.0).abs() < 1e-5 {
            reduce_last(model, sum, Reducer::Sum)
        } else {
            None
        };
    }
    let [sum, d] = bin_inputs::<Div>(model, o)?;
    if single(&const_f32(model, d)?)? != h {
        return None;
    }
    reduce_last(model, sum, Reducer::Sum)
}

/// `c` if `o` is the mean of `c²` over the last axis.
fn mean_of_squares_last(model: &TypedModel, o: OutletId, h: usize) -> Option<OutletId> {
    if let Some(c) = reduce_last(model, o, Reducer::MeanOfSquares) {
        return Some(c);
    }
    element_wise_input::<Square>(model, mean_last(model, o, h)?)
}

/// `((x − mean(x)) · rsqrt(var(x) + ε)) · γ + β` over the last axis, ending at `out`; `x`
/// itself is split into its two addends when it is an `a + b` of equal shapes.
fn match_layer_norm(model: &TypedModel, out: OutletId) -> Option<LayerNormMatch> {
    let (scaled, beta) = with_const::<Add>(model, out)?;
    let (normed, gamma) = with_const::<Mul>(model, scaled)?;
    let h = gamma.len();
    let [p, q] = bin_inputs::<Mul>(model, normed)?;
    let (centered, rstd) =
        if element_wise_input::<Rsqrt>(model, q).is_some() { (p, q) } else { (q, p) };
    let (var, eps) = with_const::<Add>(model, element_wise_input::<Rsqrt>(model, rstd)?)?;
    let eps = single(&eps)?;
    if mean_of_squares_last(model, var, h)? != centered {
        return None;
    }
    let [x, mean] = bin_inputs::<Sub>(model, centered)?;
    if mean_last(model, mean, h)? != x {
        return None;
    }
    let fact = model.outlet_fact(x).ok()?;
    let last = fact.shape.last()?.to_usize().ok()?;
    if fact.datum_type != f32::datum_type() || last != h || beta.len() != h {
        return None;
    }
    let same = |o: OutletId| {
        model.outlet_fact(o).is_ok_and(|f| f.datum_type == fact.datum_type && f.shape == fact.shape)
    };
    let inputs = match bin_inputs::<Add>(model, x) {
        Some([a, b]) if same(a) && same(b) => tvec![a, b],
        _ => tvec![x],
    };
    Some(LayerNormMatch { inputs, gamma, beta, eps })
}

/// `[scores, mask]` if `node` is a last-axis softmax of `scores + mask` with a broadcast mask.
pub(crate) fn match_masked_softmax(model: &TypedModel, node: &TypedNode) -> Option<[OutletId; 2]> {
    let softmax = node.op_as::<Softmax>()?;
    let input = through_casts(model, node.inputs[0]);
    let rank = model.outlet_fact(input).ok()?.rank();
    if rank == 0
        || softmax.axes.as_slice() != [rank - 1]
        || softmax.kind != SoftmaxKind::Softmax
        || softmax.quant_output_dt.is_some()
    {
        return None;
    }
    let [a, b] = bin_inputs::<Add>(model, input)?;
    let fact = |o: OutletId| model.outlet_fact(o).ok().map(|f| (f.datum_type, f.shape.to_tvec()));
    let (dt, shape) = fact(input)?;
    if dt != f32::datum_type() {
        return None;
    }
    for [scores, mask] in [[a, b], [b, a]] {
        let (sd, s) = fact(scores)?;
        let (md, m) = fact(mask)?;
        if sd == dt && md == dt && s == shape && mask_broadcasts(&s, &m, &1.to_dim()) {
            return Some([scores, mask]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        for i in 0..=100_000 {
            let x = -87.0 * i as f32 / 100_000.0;
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!((got - want).abs() <= 4.0 * f32::EPSILON * want, "exp({x}): {got} vs {want}");
        }
        assert!(exp_nonpositive(-10_000.0) < 1e-37);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    fn bin(
        model: &mut TypedModel,
        name: &str,
        op: Box<dyn BinMiniOp>,
        a: OutletId,
        b: OutletId,
    ) -> TractResult<OutletId> {
        let wire = tract_nnef::tract_core::ops::change_axes::wire_with_rank_broadcast;
        Ok(wire(name, model, TypedBinOp(op, None), &[a, b])?[0])
    }

    fn konst(
        model: &mut TypedModel,
        name: &str,
        shape: &[usize],
        v: &[f32],
    ) -> TractResult<OutletId> {
        model.add_const(name, Tensor::from_shape(shape, v)?)
    }

    /// `attn + x → LayerNorm` and `scores + mask → softmax`, from primitives as `bertlite-tool`
    /// writes them; odd sizes (h = 13, t = 5) reach the vector loops' remainders.
    fn unfused_model(h: usize, t: usize) -> TractResult<TypedModel> {
        use tract_nnef::tract_core::ops::math;
        let mut m = TypedModel::default();
        let a = m.add_source("a", f32::fact([2, t, h]))?;
        let b = m.add_source("b", f32::fact([2, t, h]))?;
        let scores = m.add_source("scores", f32::fact([2, 3, t, t]))?;
        let mask = m.add_source("mask", f32::fact([2, 1, 1, t]))?;
        let x = bin(&mut m, "residual", Box::new(Add), a, b)?;
        let sum = m.wire_node("sum", Reduce::new(tvec![2], Reducer::Sum), &[x])?[0];
        let inv_h = konst(&mut m, "inv_h", &[], &[1.0 / h as f32])?;
        let mean = bin(&mut m, "mean", Box::new(Mul), sum, inv_h)?;
        let centered = bin(&mut m, "center", Box::new(Sub), x, mean)?;
        let var = Reduce::new(tvec![2], Reducer::MeanOfSquares);
        let var = m.wire_node("var", var, &[centered])?[0];
        let eps = konst(&mut m, "eps", &[], &[1e-12])?;
        let var_eps = bin(&mut m, "var_eps", Box::new(Add), var, eps)?;
        let rstd = m.wire_node("rsqrt", math::rsqrt(), &[var_eps])?[0];
        let normed = bin(&mut m, "normed", Box::new(Mul), centered, rstd)?;
        let gamma: Vec<f32> = (0..h).map(|i| 0.5 + i as f32 / 10.0).collect();
        let beta: Vec<f32> = (0..h).map(|i| i as f32 / 7.0 - 0.5).collect();
        let gamma = konst(&mut m, "gamma", &[h], &gamma)?;
        let beta = konst(&mut m, "beta", &[h], &beta)?;
        let scaled = bin(&mut m, "scale", Box::new(Mul), normed, gamma)?;
        let y = bin(&mut m, "shift", Box::new(Add), scaled, beta)?;
        let masked = bin(&mut m, "masked", Box::new(Add), scores, mask)?;
        let softmax = Softmax::new(tvec![3], None, SoftmaxKind::Softmax);
        let p = m.wire_node("softmax", softmax, &[masked])?[0];
        m.select_output_outlets(&[y, p])?;
        Ok(m)
    }

    #[test]
    fn fused_ops_compute_what_tract_computes() -> TractResult<()> {
        let (h, t) = (13, 5);
        let model = unfused_model(h, t)?;
        let input = |shape: &[usize], f: fn(usize) -> f32| {
            let n = shape.iter().product::<usize>();
            Tensor::from_shape(shape, &(0..n).map(f).collect::<Vec<_>>()).map(|t| t.into_tvalue())
        };
        let inputs = tvec![
            input(&[2, t, h], |i| ((i * 37 % 23) as f32 - 11.0) / 3.0)?,
            input(&[2, t, h], |i| (i % 7) as f32 * 0.25 + 40.0)?, // large mean: two-pass variance
            input(&[2, 3, t, t], |i| ((i * 13 % 17) as f32 - 8.0) * 1.5)?,
            // The second text's last two tokens are padding (−10000, as BERT's mask).
            input(&[2, 1, 1, t], |i| if i >= 2 * 5 - 2 { -10_000.0 } else { 0.0 })?,
        ];
        let expected = model.clone().into_runnable()?.run(inputs.clone())?;
        let mut fused_model = model;
        let fused = rewrite(&mut fused_model)?;
        assert_eq!(fused, Fused { layer_norms: 1, softmaxes: 1 });
        let got = fused_model.into_optimized()?.into_runnable()?.run(inputs)?;
        for (e, g) in expected.iter().zip(&got) {
            let (e, g) = (e.to_plain_array_view::<f32>()?, g.to_plain_array_view::<f32>()?);
            assert_eq!(e.shape(), g.shape());
            for (&e, &g) in e.iter().zip(g.iter()) {
                // f32 summation order differs: a few ulp of values of order 1.
                assert!((e - g).abs() <= 1e-5 * e.abs().max(1.0), "{e} vs {g}");
            }
        }
        let p = got[1].to_plain_array_view::<f32>()?;
        assert!(p.iter().skip(p.len() - 3 * t).enumerate().all(|(i, &p)| i % t < 3 || p < 1e-30));
        Ok(())
    }

    #[test]
    fn other_softmaxes_and_norms_are_left_to_tract() -> TractResult<()> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([2, 3, 4]))?;
        let y = m.add_source("y", f32::fact([2, 3, 4]))?;
        // Softmax over a middle axis, of a sum without a broadcast mask: neither matches.
        let sum = bin(&mut m, "sum", Box::new(Add), x, y)?;
        let softmax = Softmax::new(tvec![1], None, SoftmaxKind::Softmax);
        let p = m.wire_node("softmax", softmax, &[sum])?[0];
        m.select_output_outlets(&[p])?;
        assert_eq!(rewrite(&mut m)?, Fused::default());
        Ok(())
    }
}
