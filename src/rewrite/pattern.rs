//! Graph-pattern helpers shared by the rewrites: each answers one question about an outlet of
//! the loaded graph, or `None`.

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_nnef::tract_core::ops::cast::Cast;
use tract_nnef::tract_core::ops::element_wise::ElementWiseOp;
use tract_nnef::tract_core::ops::konst::Const;

/// The outlet behind `o` once the loader's no-op f32 → f32 casts are skipped.
pub(super) fn through_casts(model: &TypedModel, mut o: OutletId) -> OutletId {
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
pub(super) fn bin_inputs<B: BinMiniOp>(model: &TypedModel, o: OutletId) -> Option<[OutletId; 2]> {
    let node = model.node(o.node);
    node.op_as::<TypedBinOp>().filter(|op| op.0.is::<B>())?;
    Some([through_casts(model, node.inputs[0]), through_casts(model, node.inputs[1])])
}

pub(super) fn const_f32(model: &TypedModel, o: OutletId) -> Option<Vec<f32>> {
    let (t, _) = konst(model, o)?;
    t.try_as_plain_ram().ok()?.as_slice::<f32>().ok().map(|s| s.to_vec())
}

/// `(x, c)` if `o` is the commutative op `B` of `x` and a constant `c`.
pub(super) fn with_const<B: BinMiniOp>(
    model: &TypedModel,
    o: OutletId,
) -> Option<(OutletId, Vec<f32>)> {
    let [a, b] = bin_inputs::<B>(model, o)?;
    match const_f32(model, b) {
        Some(c) => Some((a, c)),
        None => Some((b, const_f32(model, a)?)),
    }
}

pub(super) fn single(values: &[f32]) -> Option<f32> {
    (values.len() == 1).then(|| values[0])
}

/// The input of `o` if `o` is the single-input element-wise op `E`.
pub(super) fn element_wise_input<E: ElementWiseMiniOp>(
    model: &TypedModel,
    o: OutletId,
) -> Option<OutletId> {
    let node = model.node(o.node);
    node.op_as::<ElementWiseOp>().filter(|ew| ew.0.is::<E>())?;
    Some(through_casts(model, node.inputs[0]))
}

/// The outlet `o` reshapes, through any chain of reshapes (itself if it is no reshape).
pub(super) fn behind_reshapes(model: &TypedModel, mut o: OutletId) -> OutletId {
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
pub(super) fn konst(model: &TypedModel, mut outlet: OutletId) -> Option<(Arc<Tensor>, usize)> {
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

/// The only node reading `o`.
pub(super) fn sole_successor(model: &TypedModel, o: OutletId) -> Option<OutletId> {
    match model.outlet_successors(o) {
        [next] => Some(OutletId::new(next.node, 0)),
        _ => None,
    }
}
