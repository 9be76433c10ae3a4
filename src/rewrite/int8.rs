//! Finds each matmul with int8 weights (`cast(i8 const) · scale`, how `bertlite-tool` stores
//! them) and swaps in the int8 ops of [`crate::ops::int8`].

use std::collections::HashMap;
use std::f32::consts::FRAC_1_SQRT_2;

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::binary::TypedBinOp;
use tract_nnef::tract_core::ops::cast::Cast;
use tract_nnef::tract_core::ops::einsum::EinSum;
use tract_nnef::tract_core::ops::math::{Add, Erf, Mul};

use super::pattern::{
    behind_reshapes, bin_inputs, const_f32, element_wise_input, konst, single, with_const,
};
use crate::kernels::gemm_i8;
use crate::ops::attention::Attention;
use crate::ops::int8::{DequantizeRows, Int8Linear, LinearI8, QuantizeRows};

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

/// The outlets reading `o`, through no-op casts (the NNEF loader adds them).
fn readers(model: &TypedModel, o: OutletId) -> Vec<OutletId> {
    let mut found = Vec::new();
    for s in model.outlet_successors(o) {
        let node = model.node(s.node);
        let out = OutletId::new(node.id, 0);
        if node.op_as::<Cast>().is_some_and(|c| c.to == f32::datum_type()) {
            found.extend(readers(model, out));
        } else {
            found.push(out);
        }
    }
    found
}

/// If BERT's exact GELU, `((1 + erf(x · 1/√2)) · x) · ½` (how `bertlite-tool` writes it),
/// follows `linear` (after reshapes), and nothing else reads it: the GELU's output, and the
/// reshapes to apply to the linear's output in its place.
fn gelu_after(model: &TypedModel, linear: OutletId) -> Option<(OutletId, Vec<AxisOp>)> {
    let mut x = linear;
    let mut reshapes = Vec::new();
    while let [next] = model.outlet_successors(x) {
        match model.node(next.node).op_as::<AxisOp>() {
            Some(op @ AxisOp::Reshape(..)) => reshapes.push(op.clone()),
            _ => break,
        }
        x = OutletId::new(next.node, 0);
    }
    let is = |v: &[f32], want: f32| single(v).is_some_and(|v| (v - want).abs() <= 1e-6 * want);
    let [a, b] = readers(model, x)[..] else { return None };
    // One reader scales by 1/√2 on the way to erf; the other multiplies by (1 + erf).
    let scales = |o| with_const::<Mul>(model, o).is_some_and(|(_, c)| is(&c, FRAC_1_SQRT_2));
    let (scale, times_x) = if scales(a) { (a, b) } else { (b, a) };
    let (scaled, c) = with_const::<Mul>(model, scale)?;
    (scaled == x && is(&c, FRAC_1_SQRT_2)).then_some(())?;
    let [erf] = readers(model, scale)[..] else { return None };
    (element_wise_input::<Erf>(model, erf)? == scale).then_some(())?;
    let [plus] = readers(model, erf)[..] else { return None };
    let (erf_in, one) = with_const::<Add>(model, plus)?;
    (erf_in == erf && is(&one, 1.0)).then_some(())?;
    let inputs = bin_inputs::<Mul>(model, times_x)?;
    (inputs.contains(&plus) && inputs.contains(&x)).then_some(())?;
    (readers(model, plus)[..] == [times_x]).then_some(())?;
    let [end] = readers(model, times_x)[..] else { return None };
    let (halved, c) = with_const::<Mul>(model, end)?;
    (halved == times_x && is(&c, 0.5)).then_some((end, reshapes))
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

/// Linears reading one input, to become one [`LinearI8`].
struct SharedInput {
    /// The tensor behind the input's reshapes, and the input's shape: query, key and value
    /// each reshape the same tensor on their own.
    key: (OutletId, ShapeFact),
    input: OutletId,
    name: String,
    /// The matmul nodes.
    matmuls: Vec<usize>,
    /// Each linear, with the outlet its output replaces (a fused GELU's end lies behind the
    /// reshape that follows the linear, which the linear takes in).
    linears: Vec<(Int8Linear, OutletId)>,
}

/// If `x`, the input of `matmuls` (linears of depth `k`), is through reshapes of its leading
/// axes `src · c`, `c` a constant per channel (the smoothing of `bertlite-tool`'s calibrated
/// bundles) read by nothing but those matmuls: `(src, c, the reshapes from the product to
/// x)`. The linears can then scale their input rows themselves, before quantizing them, in
/// place of a pass of tract's over the whole tensor on one thread.
fn scaled_input(
    model: &TypedModel,
    x: OutletId,
    k: usize,
    matmuls: &[usize],
) -> Option<(OutletId, Vec<f32>, Vec<AxisOp>)> {
    let product = behind_reshapes(model, x);
    let [a, b] = bin_inputs::<Mul>(model, product)?;
    let ((src, c), c_at) = match const_f32(model, b) {
        Some(c) => ((a, c), b),
        None => ((b, const_f32(model, a)?), a),
    };
    let c_shape = model.outlet_fact(c_at).ok()?.shape.as_concrete()?.to_vec();
    let per_channel = c.len() == k && c_shape.last() == Some(&k);
    let same_shape = model.outlet_fact(src).ok()?.shape == model.outlet_fact(product).ok()?.shape;
    let mut reshapes = Vec::new();
    let mut o = x;
    while o != product {
        let node = model.node(o.node);
        let reshape @ AxisOp::Reshape(at, from, _) = node.op_as::<AxisOp>()? else { return None };
        let rank = model.outlet_fact(node.inputs[0]).ok()?.rank();
        (at + from.len() < rank).then_some(())?;
        reshapes.push(reshape.clone());
        o = node.inputs[0];
    }
    reshapes.reverse();
    fn only_matmuls(model: &TypedModel, o: OutletId, matmuls: &[usize]) -> bool {
        model.outlet_successors(o).iter().all(|s| {
            matmuls.contains(&s.node)
                || (model
                    .node(s.node)
                    .op_as::<AxisOp>()
                    .is_some_and(|op| matches!(op, AxisOp::Reshape(..)))
                    && only_matmuls(model, OutletId::new(s.node, 0), matmuls))
        })
    }
    (per_channel && same_shape && only_matmuls(model, product, matmuls))
        .then_some((src, c, reshapes))
}

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
        let kernel = gemm_i8::Kernel::native();
        if kernel != gemm_i8::Kernel::Portable && is_linear(einsum) {
            let (n, k) = (q.shape()[0], q.shape()[1]);
            let w = q.try_as_plain_ram()?.as_slice::<i8>()?.to_vec();
            let bias = following_bias(model, node, n);
            let linear_out = OutletId::new(bias.as_ref().map_or(node.id, |(add, _)| *add), 0);
            let gelu = gelu_after(model, linear_out);
            let linear = Int8Linear {
                weights: Arc::new(gemm_i8::PackedWeights::pack(&w, n, k, kernel)),
                channel_scales: Arc::new(channel_scales),
                bias: bias.as_ref().map(|(_, b)| Arc::new(b.clone())),
                gelu: gelu.is_some(),
                reshapes: gelu.as_ref().map(|(_, r)| r.clone()).unwrap_or_default(),
            };
            let replaced = gelu.map_or(linear_out, |(end, _)| end);
            // Query, key and value each reshape the same tensor on their own: group them by
            // the tensor behind the reshapes (their inputs are then equal, element for element).
            let key = (behind_reshapes(model, x), model.outlet_fact(x)?.shape.clone());
            match fused.iter_mut().find(|group| group.key == key) {
                Some(group) => {
                    group.matmuls.push(node.id);
                    group.linears.push((linear, replaced));
                }
                None => fused.push(SharedInput {
                    key,
                    input: x,
                    name: format!("{}.int8", node.name),
                    matmuls: vec![node.id],
                    linears: vec![(linear, replaced)],
                }),
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
        let col_sums = gemm_i8::col_sums(q.try_as_plain_ram()?.as_slice::<i8>()?, n, k);
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
    for SharedInput { input: x, name, matmuls, linears: group, .. } in fused {
        let (mut linears, replaced): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let k = linears.first().map_or(0, |l| l.weights.k);
        // The attention's context rows are weighted means of value rows, without a token's
        // few large values: splitting them measured no gain (golden sentences 0.99906 / 0.99637
        // without, 0.99908 / 0.99588 with) for 1/4 of the selection work.
        let split_outliers = !model.node(x.node).op_is::<Attention>()
            && !model.node(behind_reshapes(model, x).node).op_is::<Attention>();
        let (input, input_scales) = match scaled_input(model, x, k, &matmuls) {
            Some((src, c, reshapes)) => {
                // The reshapes of the leading axes apply to the outputs as they did to x.
                for l in &mut linears {
                    l.reshapes.splice(0..0, reshapes.iter().cloned());
                }
                (src, Some(Arc::new(c)))
            }
            None => (x, None),
        };
        let tapped = patch.tap_model(model, input)?;
        let op = LinearI8 { linears, split_outliers, input_scales };
        let outs = patch.wire_node(&name, op, &[tapped])?;
        for (out, replaced) in outs.into_iter().zip(replaced) {
            patch.shunt_outside(model, replaced, out)?;
        }
    }
    patch.apply(model)?;
    Ok(count)
}

/// The int8 kernel the linears run on: ours for this CPU, or tract's.
pub(super) fn kernel_name() -> &'static str {
    match gemm_i8::Kernel::native() {
        gemm_i8::Kernel::Portable => "tract",
        kernel => kernel.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        if gemm_i8::available() {
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

    /// A linear followed by a reshape and BERT's exact GELU (as `bertlite-tool` writes the
    /// FFN): the GELU runs inside the int8 op, none of its five ops remain, and the result is
    /// the f32 graph's within the int8 bound above (GELU's slope is at most 1.13).
    #[test]
    fn gelu_after_a_linear_is_fused_into_it() -> TractResult<()> {
        let (n, k, t) = (6usize, 16usize, 3usize);
        let wq: Vec<i8> = (0..n * k).map(|i| ((i * 53 % 255) as i32 - 127) as i8).collect();
        let ws: Vec<f32> = (0..n).map(|i| 0.004 * (i + 1) as f32).collect();
        let xs: Vec<f32> = (0..t * k).map(|i| ((i * 11 % 19) as f32 - 9.0) / 4.0).collect();
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([t, k]))?;
        let q = model.add_const("w.q", Tensor::from_shape(&[n, k], &wq)?)?;
        let s = model.add_const("w.scale", Tensor::from_shape(&[n, 1], &ws)?)?;
        let qf = model.wire_node("w.cast", Cast { to: f32::datum_type() }, &[q])?[0];
        let w = model.wire_node("w", TypedBinOp(Box::new(Mul), None), &[qf, s])?[0];
        let mm = EinSum::new("mk,nk->mn".parse()?, f32::datum_type());
        let y = model.wire_node("mm", mm, &[x, w])?[0];
        let bias: Vec<f32> = (0..n).map(|i| 0.3 * i as f32 - 0.8).collect();
        let b = model.add_const("b", Tensor::from_shape(&[1, n], &bias)?)?;
        let y = model.wire_node("add_bias", TypedBinOp(Box::new(Add), None), &[y, b])?[0];
        let reshape = AxisOp::Reshape(0, tvec![t.to_dim()], tvec![1.to_dim(), t.to_dim()]);
        let y = model.wire_node("unmerge", reshape, &[y])?[0];
        let scalar = |model: &mut TypedModel, name: &str, v: f32| {
            model.add_const(name, Tensor::from_shape(&[1, 1, 1], &[v])?)
        };
        use tract_nnef::tract_core::ops::binary::BinMiniOp;
        let bin = |model: &mut TypedModel, name: &str, op: Box<dyn BinMiniOp>, a, b| {
            Ok::<_, TractError>(model.wire_node(name, TypedBinOp(op, None), &[a, b])?[0])
        };
        let c = scalar(&mut model, "inv_sqrt2", FRAC_1_SQRT_2)?;
        let scaled = bin(&mut model, "gelu.div", Box::new(Mul), y, c)?;
        let erf =
            model.wire_node("gelu.erf", tract_nnef::tract_core::ops::math::erf(), &[scaled])?[0];
        let one = scalar(&mut model, "one", 1.0)?;
        let plus = bin(&mut model, "gelu.plus1", Box::new(Add), erf, one)?;
        let times_x = bin(&mut model, "gelu.times_x", Box::new(Mul), plus, y)?;
        let half = scalar(&mut model, "half", 0.5)?;
        let out = bin(&mut model, "gelu", Box::new(Mul), times_x, half)?;
        model.select_output_outlets(&[out])?;
        let input = Tensor::from_shape(&[t, k], &xs)?;
        let expected = model.clone().into_runnable()?.run(tvec![input.clone().into_tvalue()])?;
        assert_eq!(rewrite_linears(&mut model)?, 1);
        let model = model.into_optimized()?;
        if gemm_i8::available() {
            let ops: Vec<&LinearI8> = model.nodes().iter().filter_map(|n| n.op_as()).collect();
            assert!(ops.len() == 1 && ops[0].linears[0].gelu, "the GELU runs in the int8 op");
            let gelus = model
                .nodes()
                .iter()
                .filter(|n| ["Erf", "Gelu"].iter().any(|op| format!("{:?}", n.op).contains(op)))
                .count();
            assert_eq!(gelus, 0, "no erf or GELU left to tract: {model}");
        }
        let got = model.into_runnable()?.run(tvec![input.into_tvalue()])?;
        let (e, g) =
            (expected[0].to_plain_array_view::<f32>()?, got[0].to_plain_array_view::<f32>()?);
        assert_eq!(e.shape(), g.shape());
        for ((&e, &g), row) in e.iter().zip(g.iter()).zip((0..t * n).map(|i| i / n)) {
            let x = &xs[row * k..][..k];
            let range =
                x.iter().fold(0f32, |m, &v| m.max(v)) - x.iter().fold(0f32, |m, &v| m.min(v));
            let bound = 1.13 * k as f32 * (range / 127.0) * 127.0 * ws[n - 1] + 1e-5;
            assert!((e - g).abs() <= bound, "{e} vs {g} (bound {bound})");
        }
        Ok(())
    }

    /// The smoothing multiply before query/key/value-like linears (`x · c`, c per channel)
    /// and the head-splitting reshapes after them are taken into the int8 op: neither a
    /// multiply nor a reshape is left in the plan, and the outputs are bit for bit those of
    /// the same linears fed `x · c` computed beforehand (the same f32 products).
    #[test]
    fn smoothing_and_reshapes_are_taken_into_the_linear() -> TractResult<()> {
        let (n, k, t, heads) = (8usize, 16usize, 5usize, 2usize);
        let wq: Vec<i8> = (0..n * k).map(|i| ((i * 29 % 255) as i32 - 127) as i8).collect();
        let ws: Vec<f32> = (0..n).map(|i| 0.02 * (i + 1) as f32).collect();
        let c: Vec<f32> = (0..k).map(|i| 0.25 + 0.37 * (i % 5) as f32).collect();
        let xs: Vec<f32> = (0..t * k).map(|i| ((i * 7 % 23) as f32 - 11.0) / 3.0).collect();
        // x (· c if `smooth`) → two linears, each reshaped into heads.
        let graph = |smooth: bool| -> TractResult<TypedModel> {
            // Tokens symbolic, as in a bundle (tract turns a reshape of known sizes into
            // another op).
            let mut model = TypedModel::default();
            let s = model.symbols.sym("S");
            let mut x = model.add_source("x", f32::fact(&[1.to_dim(), s.into(), k.to_dim()]))?;
            if smooth {
                let c = model.add_const("c", Tensor::from_shape(&[1, 1, k], &c)?)?;
                x = model.wire_node("smooth", TypedBinOp(Box::new(Mul), None), &[x, c])?[0];
            }
            let q = model.add_const("w.q", Tensor::from_shape(&[n, k], &wq)?)?;
            let s = model.add_const("w.scale", Tensor::from_shape(&[n, 1], &ws)?)?;
            let qf = model.wire_node("w.cast", Cast { to: f32::datum_type() }, &[q])?[0];
            let w = model.wire_node("w", TypedBinOp(Box::new(Mul), None), &[qf, s])?[0];
            let mut outputs = Vec::new();
            for name in ["a", "b"] {
                let mm = EinSum::new("bsk,nk->bsn".parse()?, f32::datum_type());
                let y = model.wire_node(name, mm, &[x, w])?[0];
                let split = AxisOp::Reshape(
                    2,
                    tvec![n.to_dim()],
                    tvec![heads.to_dim(), (n / heads).to_dim()],
                );
                outputs.push(model.wire_node(format!("{name}.heads"), split, &[y])?[0]);
            }
            model.select_output_outlets(&outputs)?;
            assert_eq!(rewrite_linears(&mut model)?, 2);
            model.into_optimized()
        };
        if !gemm_i8::available() {
            return Ok(());
        }
        let smoothed = graph(true)?;
        let ops: Vec<&LinearI8> = smoothed.nodes().iter().filter_map(|n| n.op_as()).collect();
        assert!(ops.len() == 1 && ops[0].input_scales.is_some(), "{smoothed}");
        let others = smoothed.nodes().iter().filter(|n| {
            !n.op_is::<LinearI8>() && !n.op_is::<tract_nnef::tract_core::ops::source::TypedSource>()
        });
        assert_eq!(others.count(), 0, "a multiply or reshape left: {smoothed}");
        let input = Tensor::from_shape(&[1, t, k], &xs)?;
        let got = smoothed.into_runnable()?.run(tvec![input.into_tvalue()])?;
        let pre: Vec<f32> = xs.iter().enumerate().map(|(i, x)| x * c[i % k]).collect();
        let expected = graph(false)?
            .into_runnable()?
            .run(tvec![Tensor::from_shape(&[1, t, k], &pre)?.into_tvalue()])?;
        for (e, g) in expected.iter().zip(&got) {
            assert_eq!(g.shape(), [1, t, heads, n / heads]);
            let (e, g) = (e.to_plain_array_view::<f32>()?, g.to_plain_array_view::<f32>()?);
            assert_eq!(e, g);
        }
        Ok(())
    }
}
