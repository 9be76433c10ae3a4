//! Self-attention as one op: scores, masked softmax and context per head, with the
//! head's keys and values gathered once and the scores row block kept in L1.
//!
//! tract 0.23 runs it as two batched matmuls with their packing, two axis moves and the softmax
//! (~5 ms of a 28 ms int8 inference at 128 tokens on this machine kind, most of it packing and
//! moving 32-wide heads). Here:
//!
//! ```text
//! q, k, v [b, s, heads·dh], mask [b, 1, 1, s] ── Attention ── context [b, s, heads·dh]
//! per (batch, head): Kᵀ gathered [dh, s]; per 4 query rows: scores = q·Kᵀ (4×16 FMA tiles),
//!                    softmax(scores + mask), context rows = p·V (2 rows × dh FMA tiles)
//! ```
//!
//! The 1/√dh scale is already folded into the query weights by `bertlite-tool`. The pattern is
//! matched on the graph as loaded (the einsums, reshapes and moves tract's declutter leaves for
//! `bshd,bthd->bhst` and `bhst,bthd->bshd`); anything else stays with tract. x86_64 with
//! AVX2 + FMA and aarch64 use it ([`available`]); armv7 keeps tract's ops.

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::einsum::EinSum;

use crate::fused::{masked_exp_row, match_masked_softmax, through_casts};

/// Query rows per scores tile, key columns per tile.
const QR: usize = 4;
const KC: usize = 16;
const _: () = assert!(QR == 4 && KC.is_multiple_of(4), "scores_tile's NEON form");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attention {
    pub heads: usize,
    pub head_dim: usize,
}

impl Op for Attention {
    fn name(&self) -> StaticName {
        "BertliteAttention".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("heads: {}, head_dim: {}", self.heads, self.head_dim)])
    }
    op_as_typed_op!();
}

impl EvalOp for Attention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v, mask) = args_4!(inputs);
        let (h, dh) = (self.heads, self.head_dim);
        let shape = q.shape();
        ensure!(
            shape.len() == 3 && shape[2] == h * dh && k.shape() == shape && v.shape() == shape,
            "Attention: q {shape:?}, k {:?}, v {:?}, {h} heads of {dh}",
            k.shape(),
            v.shape()
        );
        let (batch, seq) = (shape[0], shape[1]);
        let m = mask.shape();
        ensure!(
            m.len() == 4 && m[1] == 1 && m[2] == 1 && m[3] == seq && (m[0] == batch || m[0] == 1),
            "Attention: mask {m:?} for {batch} × {seq} tokens"
        );
        if q.len() == 0 {
            return Ok(tvec![Tensor::zero::<f32>(shape)?.into_tvalue()]);
        }
        // SAFETY: every (batch, row, head) slice of the output is written below.
        let mut out = unsafe { Tensor::uninitialized::<f32>(shape)? };
        {
            let (q_ram, k_ram, v_ram, m_ram) = (
                q.try_as_plain_ram()?,
                k.try_as_plain_ram()?,
                v.try_as_plain_ram()?,
                mask.try_as_plain_ram()?,
            );
            let (q, k, v) =
                (q_ram.as_slice::<f32>()?, k_ram.as_slice::<f32>()?, v_ram.as_slice::<f32>()?);
            let mask = m_ram.as_slice::<f32>()?;
            let mut out_ram = out.try_as_plain_ram_mut()?;
            let out = out_ram.as_slice_mut::<f32>()?;
            let per_batch = seq * h * dh;
            let pool = crate::encoder::thread_pool();
            let mut scratch = Scratch::new(seq, dh);
            for b in 0..batch {
                let mask = &mask[if m[0] == 1 { 0 } else { b * seq }..][..seq];
                let range = b * per_batch..(b + 1) * per_batch;
                let (q, k, v) = (&q[range.clone()], &k[range.clone()], &v[range.clone()]);
                let out = &mut out[range];
                let dims = |head, out_stride| Dims { seq, heads: h, dh, head, out_stride };
                match &pool {
                    // With --threads > 1, heads run on tract's pool, each into its own
                    // `[seq, dh]` block, scattered into the interleaved output after.
                    Some(pool) if h > 1 => {
                        use rayon::prelude::*;
                        let blocks: Vec<Vec<f32>> = pool.install(|| {
                            (0..h)
                                .into_par_iter()
                                // One scratch per rayon job, not per head.
                                .map_init(
                                    || Scratch::new(seq, dh),
                                    |scratch, head| {
                                        let mut block = vec![0f32; seq * dh];
                                        let dims = dims(head, dh);
                                        attention_head(q, k, v, mask, dims, scratch, &mut block);
                                        block
                                    },
                                )
                                .collect()
                        });
                        for (head, block) in blocks.iter().enumerate() {
                            for (row, src) in block.chunks_exact(dh).enumerate() {
                                out[row * h * dh + head * dh..][..dh].copy_from_slice(src);
                            }
                        }
                    }
                    _ => {
                        for head in 0..h {
                            let o = &mut out[head * dh..];
                            attention_head(q, k, v, mask, dims(head, h * dh), &mut scratch, o);
                        }
                    }
                }
            }
        }
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.iter().all(|i| i.datum_type == f32::datum_type()), "Attention wants f32");
        Ok(tvec![f32::fact(inputs[0].shape.clone())])
    }
    as_op!();
}

#[derive(Clone, Copy)]
struct Dims {
    seq: usize,
    heads: usize,
    dh: usize,
    head: usize,
    /// Distance between the head's output rows in `out`.
    out_stride: usize,
}

/// Per-op buffers, reused across heads: keys by tile `[t16 / KC, dh, KC]` (t padded to the
/// tile), values `[t, dh]`, one tile of query rows `[dh, QR]`, scores `[QR, t16]` and
/// probabilities `[QR, t]`.
struct Scratch {
    kt: Vec<f32>,
    v: Vec<f32>,
    q: Vec<f32>,
    scores: Vec<f32>,
    probs: Vec<f32>,
}

impl Scratch {
    fn new(seq: usize, dh: usize) -> Scratch {
        let t16 = seq.div_ceil(KC) * KC;
        Scratch {
            kt: vec![0.0; dh * t16],
            v: vec![0.0; seq * dh],
            q: vec![0.0; QR * dh],
            scores: vec![0.0; QR * t16],
            probs: vec![0.0; QR * seq],
        }
    }
}

// One head of one text: `out[r * dims.out_stride..][..dh]` receives row r of its context.
simd_dispatch!(attention_head(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    dims: Dims,
    scratch: &mut Scratch,
    out: &mut [f32]
) -> () {
    let Dims { seq: t, heads, dh, head, out_stride } = dims;
    let (w, off, t16) = (heads * dh, head * dh, t.div_ceil(KC) * KC);
    let Scratch { kt, v: vh, q: qt, scores, probs } = scratch;
    // Keys tile by tile, `[t16 / KC][dh][KC]`: a scores tile reads one contiguous run.
    for j in 0..t {
        let (tile, c) = (j / KC, j % KC);
        for (d, &x) in k[j * w + off..][..dh].iter().enumerate() {
            kt[(tile * dh + d) * KC + c] = x;
        }
        vh[j * dh..][..dh].copy_from_slice(&v[j * w + off..][..dh]);
    }
    let mut sums = [0f32; QR];
    for i0 in (0..t).step_by(QR) {
        let rows = QR.min(t - i0);
        // The query rows transposed, `[dh][QR]`, zero past the last row.
        qt.fill(0.0);
        for r in 0..rows {
            for (d, &x) in q[(i0 + r) * w + off..][..dh].iter().enumerate() {
                qt[d * QR + r] = x;
            }
        }
        for (tile, keys) in kt.chunks_exact(dh * KC).enumerate() {
            let acc = scores_tile(keys, qt);
            for (r, acc) in acc.iter().enumerate() {
                scores[r * t16 + tile * KC..][..KC].copy_from_slice(acc);
            }
        }
        // Unnormalized probabilities; the context is divided by their sum instead (dh
        // divisions per row rather than t multiplications).
        for (r, sum) in sums.iter_mut().enumerate().take(rows) {
            *sum = masked_exp_row(&scores[r * t16..][..t], mask, &mut probs[r * t..][..t]);
        }
        let mut r = 0;
        while r < rows {
            let pair = (rows - r).min(2);
            let p0 = &probs[r * t..][..t];
            let p1 = &probs[(r + pair - 1) * t..][..t];
            let (o0, o1) = match dh {
                32 => context_pair::<32>(p0, p1, vh),
                64 => context_pair::<64>(p0, p1, vh),
                _ => {
                    for (rr, p) in [p0, p1].into_iter().enumerate().take(pair) {
                        let o = &mut out[(i0 + r + rr) * out_stride..][..dh];
                        o.fill(0.0);
                        for (j, &pj) in p.iter().enumerate() {
                            let vr = &vh[j * dh..][..dh];
                            o.iter_mut().zip(vr).for_each(|(o, &v)| *o = pj.mul_add(v, *o));
                        }
                        let inv = 1.0 / sums[r + rr];
                        o.iter_mut().for_each(|o| *o *= inv);
                    }
                    r += pair;
                    continue;
                }
            };
            for (rr, o) in [o0, o1].iter().enumerate().take(pair) {
                let inv = 1.0 / sums[r + rr];
                let dst = &mut out[(i0 + r + rr) * out_stride..][..dh];
                dst.iter_mut().zip(o).for_each(|(d, &o)| *d = o * inv);
            }
            r += pair;
        }
    }
});

/// One 4 × 16 tile of scores: `acc[r][c] = Σ_d qt[d][r] · keys[d][c]` (`keys` `[dh][KC]`,
/// `qt` `[dh][QR]`), fused multiply-adds in d order.
#[inline(always)]
fn scores_tile(keys: &[f32], qt: &[f32]) -> [[f32; KC]; QR] {
    #[cfg(target_arch = "aarch64")]
    {
        // The four query values of one d are one register; `fmla` by element multiplies it
        // into the keys (LLVM loaded them one by one: 25 instructions per d, now 21). The
        // same fused operations in the same order as the portable loop.
        use std::arch::aarch64::*;
        // SAFETY: NEON is the aarch64 baseline; chunks hold KC = 16 and QR = 4 values.
        unsafe {
            let mut acc = [[vdupq_n_f32(0.0); KC / 4]; QR];
            for (kv, qv) in keys.chunks_exact(KC).zip(qt.chunks_exact(QR)) {
                let q = vld1q_f32(qv.as_ptr());
                let k: [float32x4_t; KC / 4] =
                    std::array::from_fn(|j| vld1q_f32(kv.as_ptr().add(4 * j)));
                for j in 0..KC / 4 {
                    acc[0][j] = vfmaq_laneq_f32::<0>(acc[0][j], k[j], q);
                    acc[1][j] = vfmaq_laneq_f32::<1>(acc[1][j], k[j], q);
                    acc[2][j] = vfmaq_laneq_f32::<2>(acc[2][j], k[j], q);
                    acc[3][j] = vfmaq_laneq_f32::<3>(acc[3][j], k[j], q);
                }
            }
            let mut out = [[0f32; KC]; QR];
            for (o, a) in out.iter_mut().zip(&acc) {
                for (j, a) in a.iter().enumerate() {
                    vst1q_f32(o.as_mut_ptr().add(4 * j), *a);
                }
            }
            out
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        // Exact-size chunks: no bounds checks, the 4 × 16 accumulators stay in registers.
        let mut acc = [[0f32; KC]; QR];
        for (kv, qv) in keys.chunks_exact(KC).zip(qt.chunks_exact(QR)) {
            for (acc, &qv) in acc.iter_mut().zip(qv) {
                acc.iter_mut().zip(kv).for_each(|(a, &k)| *a = qv.mul_add(k, *a));
            }
        }
        acc
    }
}

/// `p0 · V` and `p1 · V` for a head width known at compile time, so both accumulator rows
/// stay in registers (2 × DH/8 ymm) across all keys.
#[inline(always)]
fn context_pair<const DH: usize>(p0: &[f32], p1: &[f32], v: &[f32]) -> ([f32; 64], [f32; 64]) {
    let mut a0 = [0f32; DH];
    let mut a1 = [0f32; DH];
    #[cfg(target_arch = "aarch64")]
    let done = context_pair_neon::<DH>(p0, p1, v, &mut a0, &mut a1);
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    for ((&x0, &x1), vr) in p0[done..].iter().zip(&p1[done..]).zip(v[done * DH..].chunks_exact(DH))
    {
        for d in 0..DH {
            a0[d] = x0.mul_add(vr[d], a0[d]);
            a1[d] = x1.mul_add(vr[d], a1[d]);
        }
    }
    let (mut o0, mut o1) = ([0f32; 64], [0f32; 64]);
    o0[..DH].copy_from_slice(&a0);
    o1[..DH].copy_from_slice(&a1);
    (o0, o1)
}

/// The first keys of [`context_pair`] in whole groups of four, on NEON: the two rows' four
/// probabilities are one register each, multiplied by element into each value row (LLVM
/// broadcast every probability on its own: 25 instructions per key at dh 32, now 21). The same
/// fused operations in the same key order; returns how many keys it did.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn context_pair_neon<const DH: usize>(
    p0: &[f32],
    p1: &[f32],
    v: &[f32],
    a0: &mut [f32; DH],
    a1: &mut [f32; DH],
) -> usize {
    use std::arch::aarch64::*;
    let keys = p0.len().min(p1.len()).min(v.len() / DH) / 4 * 4;
    // SAFETY: NEON is the aarch64 baseline; DH is a multiple of 4 (32 or 64), each group
    // reads 4 probabilities per row and 4 value rows of DH, all below `keys`.
    unsafe {
        let mut acc0: [float32x4_t; 16] = [vdupq_n_f32(0.0); 16];
        let mut acc1: [float32x4_t; 16] = [vdupq_n_f32(0.0); 16];
        let lanes = DH / 4;
        for g in (0..keys).step_by(4) {
            let q0 = vld1q_f32(p0.as_ptr().add(g));
            let q1 = vld1q_f32(p1.as_ptr().add(g));
            macro_rules! key {
                ($i:literal) => {{
                    let row = v.as_ptr().add((g + $i) * DH);
                    for l in 0..lanes {
                        let x = vld1q_f32(row.add(4 * l));
                        acc0[l] = vfmaq_laneq_f32::<$i>(acc0[l], x, q0);
                        acc1[l] = vfmaq_laneq_f32::<$i>(acc1[l], x, q1);
                    }
                }};
            }
            key!(0);
            key!(1);
            key!(2);
            key!(3);
        }
        for l in 0..lanes {
            vst1q_f32(a0.as_mut_ptr().add(4 * l), acc0[l]);
            vst1q_f32(a1.as_mut_ptr().add(4 * l), acc1[l]);
        }
    }
    keys
}

/// Whether this CPU runs [`Attention`] (and [`rewrite`] swaps it in): x86_64 with AVX2 + FMA,
/// and aarch64, where NEON and FMA are the base architecture so the loops above compile to
/// `fmla` as they are. Not armv7: its default target has no NEON, and `mul_add` there is a
/// libm call.
pub fn available() -> bool {
    let cpu = crate::cpu::features();
    cpu.avx2_fma || cpu.aarch64
}

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

/// The only node reading `o`.
fn sole_successor(model: &TypedModel, o: OutletId) -> Option<OutletId> {
    match model.outlet_successors(o) {
        [next] => Some(OutletId::new(next.node, 0)),
        _ => None,
    }
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
pub fn rewrite(model: &mut TypedModel) -> TractResult<usize> {
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
        let op = Attention { heads: m.heads, head_dim: m.head_dim };
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
        crate::nnef_reader::framework().model_for_read(&mut &tar[..])
    }

    #[test]
    fn fused_attention_computes_what_tract_computes() -> TractResult<()> {
        if !available() {
            return Ok(());
        }
        // dh 32 and 64 take the register-tiled context, 8 the generic loop; 5 and 19 tokens
        // leave partial query and key tiles; later texts end in two padding tokens. (Batch ≥ 2:
        // with a concrete batch of 1 the NNEF loader drops the batch merges; bundles have a
        // symbolic batch.)
        for &(batch, seq, heads, dh) in &[(2, 5, 3, 32), (2, 19, 2, 64), (3, 7, 4, 8)] {
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
            assert_eq!(rewrite(&mut fused)?, 1, "{batch}×{seq}, {heads} heads of {dh}");
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
