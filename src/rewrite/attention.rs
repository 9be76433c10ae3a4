//! Finds self-attention as the host tool writes it and swaps in [`Attention`].

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::einsum::EinSum;

use super::norm_softmax::match_masked_softmax;
use super::pattern::{sole_successor, through_casts};
use crate::kernels::attention::{available, int8_scores_available};
use crate::ops::attention::Attention;

/// The single input of `o` if `o` is the axis op `expected`.
fn axis_op_input(model: &TypedModel, o: OutletId, expected: &AxisOp) -> Option<OutletId> {
    let node = model.node(o.node);
    (node.op_as::<AxisOp>()? == expected).then(|| node.inputs[0])
}

/// `(x, heads, dh)` if `o` splits the last axis of a rank-3 `x` into `[heads, dh]`.
fn split_heads(model: &TypedModel, o: OutletId) -> Option<(OutletId, usize, usize)> {
    let node = model.node(o.node);
    let AxisOp::Reshape(2, from, to) = node.op_as::<AxisOp>()? else { return None };
    let x = node.inputs[0];
    let (heads, dh) = (to.first()?.to_usize().ok()?, to.get(1)?.to_usize().ok()?);
    let ok = to.len() == 2
        && from.len() == 1
        && from[0].to_usize().ok()? == heads * dh
        && model.outlet_fact(x).ok()?.rank() == 3;
    ok.then_some((x, heads, dh))
}

/// The input of `o` if `o` reshapes axes `at..at+from` into `to` axes, with the given counts.
fn reshape(model: &TypedModel, o: OutletId, at: usize, from: usize, to: usize) -> Option<OutletId> {
    let node = model.node(o.node);
    match node.op_as::<AxisOp>()? {
        AxisOp::Reshape(a, f, t) if *a == at && f.len() == from && t.len() == to => {
            Some(node.inputs[0])
        }
        _ => None,
    }
}

fn einsum_axes(model: &TypedModel, o: OutletId) -> Option<(String, [OutletId; 2])> {
    let node = model.node(o.node);
    let einsum = node.op_as::<EinSum>()?;
    if einsum.q_params.is_some() || node.inputs.len() != 2 {
        return None;
    }
    let inputs = [through_casts(model, node.inputs[0]), through_casts(model, node.inputs[1])];
    Some((einsum.axes.to_string(), inputs))
}

struct AttentionMatch {
    q: OutletId,
    k: OutletId,
    v: OutletId,
    mask: OutletId,
    heads: usize,
    head_dim: usize,
    /// The merged-heads context `[b, s, heads·dh]` the op replaces.
    out: OutletId,
}

/// Self-attention ending at the context einsum `context` (see the module doc).
fn match_attention(model: &TypedModel, context: OutletId) -> Option<AttentionMatch> {
    let (axes, [probs, v_in]) = einsum_axes(model, context)?;
    (axes == "amk,ank->amn").then_some(())?;
    let softmax = reshape(model, probs, 0, 2, 1)?;
    let [scores, mask] = match_masked_softmax(model, model.node(softmax.node))?;
    let (axes, [q_in, k_in]) = einsum_axes(model, scores)?;
    (axes == "abmk,abkn->abmn").then_some(())?;
    let (q, heads, head_dim) =
        split_heads(model, axis_op_input(model, q_in, &AxisOp::Move(1, 2))?)?;
    let (k, hk, dk) = split_heads(model, axis_op_input(model, k_in, &AxisOp::Move(1, 3))?)?;
    let v_heads = axis_op_input(model, reshape(model, v_in, 0, 2, 1)?, &AxisOp::Move(1, 3))?;
    let (v, hv, dv) = split_heads(model, v_heads)?;
    if (hk, dk) != (heads, head_dim) || (hv, dv) != (heads, head_dim) {
        return None;
    }
    let unmerged = sole_successor(model, context)?;
    reshape(model, unmerged, 0, 1, 2)?;
    let moved = sole_successor(model, unmerged)?;
    axis_op_input(model, moved, &AxisOp::Move(1, 2))?;
    let out = sole_successor(model, moved)?;
    let node = model.node(out.node);
    let AxisOp::Reshape(2, from, to) = node.op_as::<AxisOp>()? else { return None };
    if from.len() != 2 || to.len() != 1 {
        return None;
    }
    let facts = [q, k, v].map(|o| model.outlet_fact(o).ok().map(|f| f.without_value()));
    let out_fact = model.outlet_fact(out).ok()?;
    let same = facts.iter().all(|f| f.as_ref().is_some_and(|f| f.shape == out_fact.shape));
    let f32s = facts.iter().all(|f| f.as_ref().is_some_and(|f| f.datum_type == f32::datum_type()));
    (same && f32s).then_some(AttentionMatch { q, k, v, mask, heads, head_dim, out })
}

/// Swaps every self-attention block of `model` for [`Attention`]; returns how many.
pub fn rewrite(model: &mut TypedModel, int8_scores: bool) -> TractResult<usize> {
    if !available() {
        return Ok(0);
    }
    let mut patch = TypedModelPatch::new("bertlite fused attention");
    let mut count = 0;
    for node in model.nodes() {
        let Some(m) = match_attention(model, OutletId::new(node.id, 0)) else { continue };
        let inputs = [m.q, m.k, m.v, m.mask]
            .iter()
            .map(|&o| patch.tap_model(model, o))
            .collect::<TractResult<TVec<_>>>()?;
        let int8_scores = int8_scores && int8_scores_available(m.head_dim);
        let op = Attention { heads: m.heads, head_dim: m.head_dim, int8_scores };
        let y = patch.wire_node(format!("{}.attention", node.name), op, &inputs)?[0];
        patch.shunt_outside(model, m.out, y)?;
        count += 1;
    }
    patch.apply(model)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_nnef::tract_core::ops::binary::TypedBinOp;
    use tract_nnef::tract_core::ops::math::Add;
    use tract_nnef::tract_core::ops::nn::{Softmax, SoftmaxKind};

    /// Attention as `bertlite-tool` builds it, through NNEF as the bundle stores it.
    fn host_attention(
        batch: usize,
        seq: usize,
        heads: usize,
        dh: usize,
    ) -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let fact = f32::fact([batch, seq, heads * dh]);
        let [q, k, v] = ["q", "k", "v"].map(|n| m.add_source(n, fact.clone()));
        let mask = m.add_source("mask", f32::fact([batch, 1, 1, seq]))?;
        let split =
            AxisOp::Reshape(2, tvec![(heads * dh).to_dim()], tvec![heads.to_dim(), dh.to_dim()]);
        let q = m.wire_node("q_heads", split.clone(), &[q?])?[0];
        let k = m.wire_node("k_heads", split.clone(), &[k?])?[0];
        let v = m.wire_node("v_heads", split, &[v?])?[0];
        let scores = EinSum::new("bshd,bthd->bhst".parse()?, f32::datum_type());
        let scores = m.wire_node("scores", scores, &[q, k])?[0];
        let masked = m.wire_node("masked", TypedBinOp(Box::new(Add), None), &[scores, mask])?[0];
        let softmax = Softmax::new(tvec![3], None, SoftmaxKind::Softmax);
        let probs = m.wire_node("softmax", softmax, &[masked])?[0];
        let context = EinSum::new("bhst,bthd->bshd".parse()?, f32::datum_type());
        let context = m.wire_node("context", context, &[probs, v])?[0];
        let merge =
            AxisOp::Reshape(2, tvec![heads.to_dim(), dh.to_dim()], tvec![(heads * dh).to_dim()]);
        let out = m.wire_node("merge_heads", merge, &[context])?[0];
        m.select_output_outlets(&[out])?;
        m.declutter()?;
        let tar = tract_nnef::nnef().write_to_tar(&m, Vec::new())?;
        crate::encoder::nnef_reader::framework().model_for_read(&mut &tar[..])
    }

    #[test]
    fn fused_attention_computes_what_tract_computes() -> TractResult<()> {
        if !available() {
            return Ok(());
        }
        // dh 32 and 64 take the register-tiled context, 8 the generic loop; 5 and 19 tokens
        // leave partial query and key tiles; later texts end in two padding tokens. (Batch ≥ 2:
        // with a concrete batch of 1 the NNEF loader drops the batch merges; bundles have a
        // symbolic batch.) 70 and 40 tokens: the AVX-512 score tiles of 4 + 1 and 2 + 1 key
        // tiles, and partial 4-row context tiles. With AVX-512: 13 tokens, an 8-row query block
        // and one of 5 (a full and a partial half); head widths 16, 48 and 128 take its other
        // context tiles.
        let shapes = [
            (2, 5, 3, 32),
            (2, 19, 2, 64),
            (3, 7, 4, 8),
            (2, 70, 2, 32),
            (2, 40, 2, 64),
            (2, 13, 2, 16),
            (2, 21, 2, 48),
            (2, 11, 2, 128),
        ];
        for &(batch, seq, heads, dh) in &shapes {
            let model = host_attention(batch, seq, heads, dh)?;
            let n = batch * seq * heads * dh;
            let input = |seed: usize| {
                let data: Vec<f32> =
                    (0..n).map(|i| (((i * 7919 + seed) % 97) as f32 - 48.0) / 40.0).collect();
                Tensor::from_shape(&[batch, seq, heads * dh], &data).map(|t| t.into_tvalue())
            };
            let mask: Vec<f32> = (0..batch * seq)
                .map(|i| if i >= seq && i % seq >= seq - 2 { -10_000.0 } else { 0.0 })
                .collect();
            let mask = Tensor::from_shape(&[batch, 1, 1, seq], &mask)?.into_tvalue();
            let inputs = tvec![input(1)?, input(2)?, input(3)?, mask];
            let expected = model.clone().into_runnable()?.run(inputs.clone())?;
            let mut fused = model;
            assert_eq!(rewrite(&mut fused, false)?, 1, "{batch}×{seq}, {heads} heads of {dh}");
            let got = fused.into_optimized()?.into_runnable()?.run(inputs)?;
            let (e, g) =
                (expected[0].to_plain_array_view::<f32>()?, got[0].to_plain_array_view::<f32>()?);
            assert_eq!(e.shape(), g.shape());
            for (&e, &g) in e.iter().zip(g.iter()) {
                // Sums of ≤ 64 products of order-1 values in a different order, and our exp:
                // a few ulp each.
                assert!((e - g).abs() <= 2e-5, "{e} vs {g}");
            }
        }
        Ok(())
    }
}
