//! Finds the encoder's LayerNorms and masked softmaxes and swaps in one-pass ops for them.
//!
//! tract 0.23 runs a LayerNorm as five ops (`Reduce<Sum>`, `OptSubByScalar`, `RmsNorm`,
//! `OptBinChain(Mul+Add)`, plus the residual `Add` before it) and the attention mask as a
//! broadcast `Add` before `Softmax`: each is a full pass over memory, several on generic
//! broadcasting code (results/performance.md has the profile). Here each stretch is one
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
use tract_nnef::tract_core::ops::math::{Add, Div, Mul, Rsqrt, Square, Sub};
use tract_nnef::tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};

use super::pattern::{
    bin_inputs, const_f32, element_wise_input, single, through_casts, with_const,
};
use crate::ops::layer_norm::AddLayerNorm;
use crate::ops::softmax::{MaskedSoftmax, mask_broadcasts};

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
    // `c` of shape [1, ..] if `o` is `a + c` read only here, c repeated over the first axis.
    let repeated = |o: OutletId| {
        let [p, q] = bin_inputs::<Add>(model, o)?;
        let (a, c) = if same(p) { (p, q) } else { (q, p) };
        let c_shape = model.outlet_fact(c).ok()?.shape.to_tvec();
        let ok = same(a)
            && c_shape.split_first().is_some_and(|(one, rest)| {
                *one == 1.to_dim() && rest == &fact.shape.to_tvec()[1..]
            })
            && model.outlet_successors(o).len() == 1;
        ok.then_some([a, c])
    };
    let inputs = match bin_inputs::<Add>(model, x) {
        Some([a, b]) if same(a) && same(b) => match (repeated(a), repeated(b)) {
            (Some([a, c]), _) => tvec![a, b, c],
            (_, Some([b, c])) => tvec![b, a, c],
            _ => tvec![a, b],
        },
        _ => tvec![x],
    };
    Some(LayerNormMatch { inputs, gamma, beta, eps })
}

/// `[scores, mask]` if `node` is a last-axis softmax of `scores + mask` with a broadcast mask.
pub(super) fn match_masked_softmax(model: &TypedModel, node: &TypedNode) -> Option<[OutletId; 2]> {
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
    use tract_nnef::tract_core::ops::binary::{BinMiniOp, TypedBinOp};

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

    /// `attn + x → LayerNorm` (with `position`, `(a + p) + b` and p `[1, t, h]`, as the
    /// embeddings are) and `scores + mask → softmax`, from primitives as `bertlite-tool`
    /// writes them; odd sizes (h = 13, t = 5) reach the vector loops' remainders.
    fn unfused_model(h: usize, t: usize, position: bool) -> TractResult<TypedModel> {
        use tract_nnef::tract_core::ops::math;
        let mut m = TypedModel::default();
        let mut a = m.add_source("a", f32::fact([2, t, h]))?;
        let b = m.add_source("b", f32::fact([2, t, h]))?;
        let scores = m.add_source("scores", f32::fact([2, 3, t, t]))?;
        let mask = m.add_source("mask", f32::fact([2, 1, 1, t]))?;
        if position {
            let p = m.add_source("p", f32::fact([1, t, h]))?;
            a = bin(&mut m, "add_position", Box::new(Add), a, p)?;
        }
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
        for position in [false, true] {
            fused_ops_compute_what_tract_computes_with(position)?;
        }
        Ok(())
    }

    fn fused_ops_compute_what_tract_computes_with(position: bool) -> TractResult<()> {
        let (h, t) = (13, 5);
        let model = unfused_model(h, t, position)?;
        let input = |shape: &[usize], f: fn(usize) -> f32| {
            let n = shape.iter().product::<usize>();
            Tensor::from_shape(shape, &(0..n).map(f).collect::<Vec<_>>()).map(|t| t.into_tvalue())
        };
        let mut inputs = tvec![
            input(&[2, t, h], |i| ((i * 37 % 23) as f32 - 11.0) / 3.0)?,
            input(&[2, t, h], |i| (i % 7) as f32 * 0.25 + 40.0)?, // large mean: two-pass variance
            input(&[2, 3, t, t], |i| ((i * 13 % 17) as f32 - 8.0) * 1.5)?,
            // The second text's last two tokens are padding (−10000, as BERT's mask).
            input(&[2, 1, 1, t], |i| if i >= 2 * 5 - 2 { -10_000.0 } else { 0.0 })?,
        ];
        if position {
            inputs.push(input(&[1, t, h], |i| (i % 11) as f32 * 0.3 - 1.0)?);
        }
        let expected = model.clone().into_runnable()?.run(inputs.clone())?;
        let mut fused_model = model;
        let fused = rewrite(&mut fused_model)?;
        assert_eq!(fused, Fused { layer_norms: 1, softmaxes: 1 });
        // The position add is taken in: the op's third input.
        let norm = fused_model.nodes().iter().find(|n| n.op_is::<AddLayerNorm>());
        assert_eq!(norm.map(|n| n.inputs.len()), Some(if position { 3 } else { 2 }));
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
