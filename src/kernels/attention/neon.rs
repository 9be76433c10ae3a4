//! The NEON forms of [`super::attention_head`]'s steps: the gathers by 4 × 4 register
//! transposes (`trn1`, `trn2`) instead of one scalar move per value, the score tiles with the
//! mask and row maximum taken in registers, and the context pairs normalized and stored from
//! registers. The loops are `asm!` where LLVM split the four-register loads into pairs.

use std::arch::aarch64::*;
use std::arch::asm;

use super::{KC, QR};

/// Four d of a score tile: the four d's query registers (`[dh][QR]`, four d = 16 floats)
/// into v4-v7, then per d its 16 keys into v0-v3 and 16 `fmla`s by element into v16-v31
/// (`acc[4r + j]` = keys 4j..4j+4 of query row r). `{q}` and `{k}` advance.
macro_rules! fmla_four_d {
    () => {
        concat!(
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{q}], #64\n",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{k}], #64\n",
            "fmla v16.4s, v0.4s, v4.s[0]\n",
            "fmla v17.4s, v1.4s, v4.s[0]\n",
            "fmla v18.4s, v2.4s, v4.s[0]\n",
            "fmla v19.4s, v3.4s, v4.s[0]\n",
            "fmla v20.4s, v0.4s, v4.s[1]\n",
            "fmla v21.4s, v1.4s, v4.s[1]\n",
            "fmla v22.4s, v2.4s, v4.s[1]\n",
            "fmla v23.4s, v3.4s, v4.s[1]\n",
            "fmla v24.4s, v0.4s, v4.s[2]\n",
            "fmla v25.4s, v1.4s, v4.s[2]\n",
            "fmla v26.4s, v2.4s, v4.s[2]\n",
            "fmla v27.4s, v3.4s, v4.s[2]\n",
            "fmla v28.4s, v0.4s, v4.s[3]\n",
            "fmla v29.4s, v1.4s, v4.s[3]\n",
            "fmla v30.4s, v2.4s, v4.s[3]\n",
            "fmla v31.4s, v3.4s, v4.s[3]\n",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{k}], #64\n",
            "fmla v16.4s, v0.4s, v5.s[0]\n",
            "fmla v17.4s, v1.4s, v5.s[0]\n",
            "fmla v18.4s, v2.4s, v5.s[0]\n",
            "fmla v19.4s, v3.4s, v5.s[0]\n",
            "fmla v20.4s, v0.4s, v5.s[1]\n",
            "fmla v21.4s, v1.4s, v5.s[1]\n",
            "fmla v22.4s, v2.4s, v5.s[1]\n",
            "fmla v23.4s, v3.4s, v5.s[1]\n",
            "fmla v24.4s, v0.4s, v5.s[2]\n",
            "fmla v25.4s, v1.4s, v5.s[2]\n",
            "fmla v26.4s, v2.4s, v5.s[2]\n",
            "fmla v27.4s, v3.4s, v5.s[2]\n",
            "fmla v28.4s, v0.4s, v5.s[3]\n",
            "fmla v29.4s, v1.4s, v5.s[3]\n",
            "fmla v30.4s, v2.4s, v5.s[3]\n",
            "fmla v31.4s, v3.4s, v5.s[3]\n",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{k}], #64\n",
            "fmla v16.4s, v0.4s, v6.s[0]\n",
            "fmla v17.4s, v1.4s, v6.s[0]\n",
            "fmla v18.4s, v2.4s, v6.s[0]\n",
            "fmla v19.4s, v3.4s, v6.s[0]\n",
            "fmla v20.4s, v0.4s, v6.s[1]\n",
            "fmla v21.4s, v1.4s, v6.s[1]\n",
            "fmla v22.4s, v2.4s, v6.s[1]\n",
            "fmla v23.4s, v3.4s, v6.s[1]\n",
            "fmla v24.4s, v0.4s, v6.s[2]\n",
            "fmla v25.4s, v1.4s, v6.s[2]\n",
            "fmla v26.4s, v2.4s, v6.s[2]\n",
            "fmla v27.4s, v3.4s, v6.s[2]\n",
            "fmla v28.4s, v0.4s, v6.s[3]\n",
            "fmla v29.4s, v1.4s, v6.s[3]\n",
            "fmla v30.4s, v2.4s, v6.s[3]\n",
            "fmla v31.4s, v3.4s, v6.s[3]\n",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{k}], #64\n",
            "fmla v16.4s, v0.4s, v7.s[0]\n",
            "fmla v17.4s, v1.4s, v7.s[0]\n",
            "fmla v18.4s, v2.4s, v7.s[0]\n",
            "fmla v19.4s, v3.4s, v7.s[0]\n",
            "fmla v20.4s, v0.4s, v7.s[1]\n",
            "fmla v21.4s, v1.4s, v7.s[1]\n",
            "fmla v22.4s, v2.4s, v7.s[1]\n",
            "fmla v23.4s, v3.4s, v7.s[1]\n",
            "fmla v24.4s, v0.4s, v7.s[2]\n",
            "fmla v25.4s, v1.4s, v7.s[2]\n",
            "fmla v26.4s, v2.4s, v7.s[2]\n",
            "fmla v27.4s, v3.4s, v7.s[2]\n",
            "fmla v28.4s, v0.4s, v7.s[3]\n",
            "fmla v29.4s, v1.4s, v7.s[3]\n",
            "fmla v30.4s, v2.4s, v7.s[3]\n",
            "fmla v31.4s, v3.4s, v7.s[3]\n",
        )
    };
}

/// Rows `r[i]` → columns: lane i of `out[d]` is `r[i][d]`.
#[inline(always)]
fn transpose4(r: [float32x4_t; 4]) -> [float32x4_t; 4] {
    // SAFETY: NEON is the aarch64 baseline; register-only operations.
    unsafe {
        let (t0, t1) = (vtrn1q_f32(r[0], r[1]), vtrn2q_f32(r[0], r[1]));
        let (t2, t3) = (vtrn1q_f32(r[2], r[3]), vtrn2q_f32(r[2], r[3]));
        let f64s = |a: float32x4_t| vreinterpretq_f64_f32(a);
        let lo = |a, b| vreinterpretq_f32_f64(vtrn1q_f64(f64s(a), f64s(b)));
        let hi = |a, b| vreinterpretq_f32_f64(vtrn2q_f64(f64s(a), f64s(b)));
        [lo(t0, t2), lo(t1, t3), hi(t0, t2), hi(t1, t3)]
    }
}

/// One 4 × 16 tile of scores (`keys` `[dh][KC]`, `qt` `[dh][QR]`, fused multiply-adds in
/// d order) plus the tile's 16 mask values, row r stored at `scores[r · stride..][..16]`;
/// `maxes[r]` takes the row's largest.
#[inline(always)]
pub(super) fn masked_scores_tile(
    keys: &[f32],
    qt: &[f32],
    mask: &[f32],
    scores: &mut [f32],
    stride: usize,
    maxes: &mut [f32; QR],
) {
    // ok: the caller passes one tile of keys and queries, 16 mask values, 4 score rows.
    assert!(mask.len() == KC && scores.len() >= (QR - 1) * stride + KC);
    // SAFETY: NEON is the aarch64 baseline; chunks hold KC = 16 and QR = 4 values, the
    // stores are in the rows asserted above.
    unsafe {
        // acc[4r + j]: keys 4j..4j+4 of query row r, in v16-v31 through the `asm!`.
        let mut acc = [vdupq_n_f32(0.0); 16];
        // Four d per loop step in one `asm!` (LLVM split the four-register loads of the
        // intrinsics into pairs): 5 loads per 64 `fmla`s.
        let steps = keys.len() / (4 * KC);
        if steps > 0 {
            let (mut k, mut q, mut n) = (keys.as_ptr(), qt.as_ptr(), steps);
            asm!(
                "2:",
                fmla_four_d!(),
                "subs {n}, {n}, #1",
                "b.ne 2b",
                k = inout(reg) k,
                q = inout(reg) q,
                n = inout(reg) n,
                inout("v16") acc[0], inout("v17") acc[1], inout("v18") acc[2],
                inout("v19") acc[3], inout("v20") acc[4], inout("v21") acc[5],
                inout("v22") acc[6], inout("v23") acc[7], inout("v24") acc[8],
                inout("v25") acc[9], inout("v26") acc[10], inout("v27") acc[11],
                inout("v28") acc[12], inout("v29") acc[13], inout("v30") acc[14],
                inout("v31") acc[15],
                out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _,
                out("v5") _, out("v6") _, out("v7") _,
                options(nostack, readonly)
            );
            let _ = (k, q, n);
        }
        // The last d (dh not a multiple of 4) one by one, in the same order.
        let (kd, qd) = (&keys[steps * 4 * KC..], &qt[steps * 4 * QR..]);
        for (kv, qv) in kd.chunks_exact(KC).zip(qd.chunks_exact(QR)) {
            let q = vld1q_f32(qv.as_ptr());
            let k: [float32x4_t; 4] = std::array::from_fn(|j| vld1q_f32(kv.as_ptr().add(4 * j)));
            for j in 0..4 {
                acc[j] = vfmaq_laneq_f32::<0>(acc[j], k[j], q);
                acc[4 + j] = vfmaq_laneq_f32::<1>(acc[4 + j], k[j], q);
                acc[8 + j] = vfmaq_laneq_f32::<2>(acc[8 + j], k[j], q);
                acc[12 + j] = vfmaq_laneq_f32::<3>(acc[12 + j], k[j], q);
            }
        }
        let acc: [[float32x4_t; KC / 4]; QR] =
            std::array::from_fn(|r| std::array::from_fn(|j| acc[4 * r + j]));
        let m = vld1q_f32_x4(mask.as_ptr());
        let m = [m.0, m.1, m.2, m.3];
        for (r, (acc, max)) in acc.iter().zip(maxes.iter_mut()).enumerate() {
            let v: [float32x4_t; 4] = std::array::from_fn(|j| vaddq_f32(acc[j], m[j]));
            vst1q_f32_x4(
                scores.as_mut_ptr().add(r * stride),
                float32x4x4_t(v[0], v[1], v[2], v[3]),
            );
            let top = vmaxq_f32(vmaxq_f32(v[0], v[1]), vmaxq_f32(v[2], v[3]));
            *max = max.max(vmaxvq_f32(top));
        }
    }
}

/// The keys of whole groups of four (of `t`) into `kt` `[t16 / KC][dh][KC]`, key j's
/// values at `k[j · w + off..][..dh]`; returns how many keys it did (none unless dh is a
/// multiple of 4).
pub(super) fn gather_keys(
    k: &[f32],
    (w, off, dh): (usize, usize, usize),
    t: usize,
    kt: &mut [f32],
) -> usize {
    let keys = t / 4 * 4;
    if !dh.is_multiple_of(4) || keys == 0 {
        return 0;
    }
    // ok: the op sizes k to t rows of w ≥ off + dh, and kt to the tiles of t (scratch).
    assert!(k.len() >= (keys - 1) * w + off + dh && kt.len() >= keys.div_ceil(KC) * dh * KC);
    for j0 in (0..keys).step_by(4) {
        let (tile, c) = (j0 / KC, j0 % KC);
        for d0 in (0..dh).step_by(4) {
            // SAFETY: NEON is the aarch64 baseline; the reads are in the rows asserted
            // above, the writes at (tile · dh + d) · KC + c..+4 with c + 4 ≤ KC.
            unsafe {
                let rows =
                    std::array::from_fn(|i| vld1q_f32(k.as_ptr().add((j0 + i) * w + off + d0)));
                for (dd, col) in transpose4(rows).into_iter().enumerate() {
                    vst1q_f32(kt.as_mut_ptr().add((tile * dh + d0 + dd) * KC + c), col);
                }
            }
        }
    }
    keys
}

/// Four query rows (row r at `q[r · w + off..][..dh]`) into `qt` `[dh][QR]`; false (and
/// nothing written) unless dh is a multiple of 4.
pub(super) fn gather_queries(
    q: &[f32],
    (w, off, dh): (usize, usize, usize),
    qt: &mut [f32],
) -> bool {
    if !dh.is_multiple_of(4) {
        return false;
    }
    // ok: the op passes four whole rows and a QR · dh scratch.
    assert!(q.len() >= 3 * w + off + dh && qt.len() >= QR * dh);
    for d0 in (0..dh).step_by(4) {
        // SAFETY: NEON is the aarch64 baseline; reads in the rows asserted above, the
        // write is qt[d0 · QR..][..16], d0 + 4 ≤ dh.
        unsafe {
            let rows = std::array::from_fn(|r| vld1q_f32(q.as_ptr().add(r * w + off + d0)));
            let [c0, c1, c2, c3] = transpose4(rows);
            vst1q_f32_x4(qt.as_mut_ptr().add(d0 * QR), float32x4x4_t(c0, c1, c2, c3));
        }
    }
    true
}

/// Four keys of a 32-wide context pair: the two rows' four probabilities into v8 and v9, then
/// per key its value row into v0-v7 and 16 `fmla`s by element into v16-v23 (row 0) and v24-v31
/// (row 1). `{p0}`, `{p1}` and `{v}` advance.
macro_rules! context_four_keys {
    () => {
        concat!(
            "ld1 {{v8.4s}}, [{p0}], #16\n",
            "ld1 {{v9.4s}}, [{p1}], #16\n",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{v}], #64\n",
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{v}], #64\n",
            "fmla v16.4s, v0.4s, v8.s[0]\n",
            "fmla v24.4s, v0.4s, v9.s[0]\n",
            "fmla v17.4s, v1.4s, v8.s[0]\n",
            "fmla v25.4s, v1.4s, v9.s[0]\n",
            "fmla v18.4s, v2.4s, v8.s[0]\n",
            "fmla v26.4s, v2.4s, v9.s[0]\n",
            "fmla v19.4s, v3.4s, v8.s[0]\n",
            "fmla v27.4s, v3.4s, v9.s[0]\n",
            "fmla v20.4s, v4.4s, v8.s[0]\n",
            "fmla v28.4s, v4.4s, v9.s[0]\n",
            "fmla v21.4s, v5.4s, v8.s[0]\n",
            "fmla v29.4s, v5.4s, v9.s[0]\n",
            "fmla v22.4s, v6.4s, v8.s[0]\n",
            "fmla v30.4s, v6.4s, v9.s[0]\n",
            "fmla v23.4s, v7.4s, v8.s[0]\n",
            "fmla v31.4s, v7.4s, v9.s[0]\n",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{v}], #64\n",
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{v}], #64\n",
            "fmla v16.4s, v0.4s, v8.s[1]\n",
            "fmla v24.4s, v0.4s, v9.s[1]\n",
            "fmla v17.4s, v1.4s, v8.s[1]\n",
            "fmla v25.4s, v1.4s, v9.s[1]\n",
            "fmla v18.4s, v2.4s, v8.s[1]\n",
            "fmla v26.4s, v2.4s, v9.s[1]\n",
            "fmla v19.4s, v3.4s, v8.s[1]\n",
            "fmla v27.4s, v3.4s, v9.s[1]\n",
            "fmla v20.4s, v4.4s, v8.s[1]\n",
            "fmla v28.4s, v4.4s, v9.s[1]\n",
            "fmla v21.4s, v5.4s, v8.s[1]\n",
            "fmla v29.4s, v5.4s, v9.s[1]\n",
            "fmla v22.4s, v6.4s, v8.s[1]\n",
            "fmla v30.4s, v6.4s, v9.s[1]\n",
            "fmla v23.4s, v7.4s, v8.s[1]\n",
            "fmla v31.4s, v7.4s, v9.s[1]\n",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{v}], #64\n",
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{v}], #64\n",
            "fmla v16.4s, v0.4s, v8.s[2]\n",
            "fmla v24.4s, v0.4s, v9.s[2]\n",
            "fmla v17.4s, v1.4s, v8.s[2]\n",
            "fmla v25.4s, v1.4s, v9.s[2]\n",
            "fmla v18.4s, v2.4s, v8.s[2]\n",
            "fmla v26.4s, v2.4s, v9.s[2]\n",
            "fmla v19.4s, v3.4s, v8.s[2]\n",
            "fmla v27.4s, v3.4s, v9.s[2]\n",
            "fmla v20.4s, v4.4s, v8.s[2]\n",
            "fmla v28.4s, v4.4s, v9.s[2]\n",
            "fmla v21.4s, v5.4s, v8.s[2]\n",
            "fmla v29.4s, v5.4s, v9.s[2]\n",
            "fmla v22.4s, v6.4s, v8.s[2]\n",
            "fmla v30.4s, v6.4s, v9.s[2]\n",
            "fmla v23.4s, v7.4s, v8.s[2]\n",
            "fmla v31.4s, v7.4s, v9.s[2]\n",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{v}], #64\n",
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{v}], #64\n",
            "fmla v16.4s, v0.4s, v8.s[3]\n",
            "fmla v24.4s, v0.4s, v9.s[3]\n",
            "fmla v17.4s, v1.4s, v8.s[3]\n",
            "fmla v25.4s, v1.4s, v9.s[3]\n",
            "fmla v18.4s, v2.4s, v8.s[3]\n",
            "fmla v26.4s, v2.4s, v9.s[3]\n",
            "fmla v19.4s, v3.4s, v8.s[3]\n",
            "fmla v27.4s, v3.4s, v9.s[3]\n",
            "fmla v20.4s, v4.4s, v8.s[3]\n",
            "fmla v28.4s, v4.4s, v9.s[3]\n",
            "fmla v21.4s, v5.4s, v8.s[3]\n",
            "fmla v29.4s, v5.4s, v9.s[3]\n",
            "fmla v22.4s, v6.4s, v8.s[3]\n",
            "fmla v30.4s, v6.4s, v9.s[3]\n",
            "fmla v23.4s, v7.4s, v8.s[3]\n",
            "fmla v31.4s, v7.4s, v9.s[3]\n",
        )
    };
}

/// [`super::context_pair`] on NEON, normalized by `inv` and written straight from registers: row 0 at
/// `out[..DH]`, row 1 (if `rows` is 2) at `out[stride..][..DH]`. Keys in groups of four: the
/// two rows' four probabilities are one register each, multiplied by element into each value
/// row; then the last keys one by one. The same fused operations in the same key order, and
/// the same multiply by 1/Σ, as the portable loops.
#[inline(always)]
pub(super) fn context_pair_into<const DH: usize>(
    (p0, p1): (&[f32], &[f32]),
    v: &[f32],
    inv: [f32; 2],
    (out, stride, rows): (&mut [f32], usize, usize),
) {
    const { assert!(DH.is_multiple_of(4) && DH <= 64) };
    let t = p0.len();
    // ok: the caller passes two probability rows of t, t value rows, and the output rows.
    assert!(p1.len() == t && v.len() >= t * DH && (1..=2).contains(&rows));
    assert!(out.len() >= (rows - 1) * stride + DH);
    let keys = t / 4 * 4;
    let lanes = DH / 4;
    // SAFETY: NEON is the aarch64 baseline; reads below `t` probabilities and `t` value rows
    // of DH, writes in the rows asserted above.
    unsafe {
        let mut acc0: [float32x4_t; 16] = [vdupq_n_f32(0.0); 16];
        let mut acc1: [float32x4_t; 16] = [vdupq_n_f32(0.0); 16];
        let mut start = 0;
        if DH == 32 && keys > 0 {
            // One `asm!` loop with four-register loads (LLVM split the intrinsics' loads into
            // pairs): 10 loads per 128 `fmla`s.
            let (mut a, mut b, mut vp, mut n) = (p0.as_ptr(), p1.as_ptr(), v.as_ptr(), keys / 4);
            asm!(
                "2:",
                context_four_keys!(),
                "subs {n}, {n}, #1",
                "b.ne 2b",
                p0 = inout(reg) a,
                p1 = inout(reg) b,
                v = inout(reg) vp,
                n = inout(reg) n,
                inout("v16") acc0[0], inout("v17") acc0[1], inout("v18") acc0[2],
                inout("v19") acc0[3], inout("v20") acc0[4], inout("v21") acc0[5],
                inout("v22") acc0[6], inout("v23") acc0[7], inout("v24") acc1[0],
                inout("v25") acc1[1], inout("v26") acc1[2], inout("v27") acc1[3],
                inout("v28") acc1[4], inout("v29") acc1[5], inout("v30") acc1[6],
                inout("v31") acc1[7],
                out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
                out("v6") _, out("v7") _, out("v8") _, out("v9") _,
                options(nostack, readonly)
            );
            let _ = (a, b, vp, n);
            start = keys;
        }
        for g in (start..keys).step_by(4) {
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
        for j in keys..t {
            let row = v.as_ptr().add(j * DH);
            for l in 0..lanes {
                let x = vld1q_f32(row.add(4 * l));
                acc0[l] = vfmaq_n_f32(acc0[l], x, p0[j]);
                acc1[l] = vfmaq_n_f32(acc1[l], x, p1[j]);
            }
        }
        for l in 0..lanes {
            vst1q_f32(out.as_mut_ptr().add(4 * l), vmulq_n_f32(acc0[l], inv[0]));
            if rows == 2 {
                vst1q_f32(out.as_mut_ptr().add(stride + 4 * l), vmulq_n_f32(acc1[l], inv[1]));
            }
        }
    }
}
