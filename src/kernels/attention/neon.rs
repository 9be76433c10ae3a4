//! The NEON forms of [`super::attention_head`]'s steps: the gathers by 4 × 4 register
//! transposes (`trn1`, `trn2`) instead of one scalar move per value, the score tiles with the
//! mask and row maximum taken in registers, and the context pairs normalized and stored from
//! registers. The loops are `asm!` where LLVM split the four-register loads into pairs.
//!
//! On the int8 path of a CPU with dot-product, the scores come from int8 queries and keys
//! instead (`masked_scores_i8`: each row quantized on its own step, `sdot` tiles of 4 rows ×
//! 16 keys, a quarter of the `fmla` tiles' multiply instructions); the context stays f32,
//! because int8 probabilities lose too much of a long text's small weights (results/
//! performance.md, session 33).

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

/// Widest head the int8 scores take: a score sums at most 256 products of ±127, which f32
/// holds exactly (< 2^24).
pub(super) const I8_MAX_DH: usize = 256;

/// Symmetric int8 of one row: `q = round(x · 127 / max|x|)`, ties to even (`fcvtns`), handed
/// out 16 bytes at a time as `store(group, bytes)` (group g holds `x[16g..16g + 16]`): the
/// callers store them straight into their tile layouts, with no row buffer in between.
/// Returns the step `max|x| / 127`: 0 for an all-zero row, NaN (and zero bytes) for a row with a
/// non-finite value, so its scores come out NaN as the f32 path's do. `x.len()` is a multiple
/// of 16.
#[inline(always)]
fn quantize_symmetric_into(x: &[f32], mut store: impl FnMut(usize, int8x16_t)) -> f32 {
    debug_assert!(x.len().is_multiple_of(16));
    // SAFETY: NEON is the aarch64 baseline; whole chunks of 16 floats are read.
    unsafe {
        // `fmax` propagates NaN, and ∞ is its own maximum. Two chains: half the latency.
        let (mut m0, mut m1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        for c in x.chunks_exact(8) {
            m0 = vmaxq_f32(m0, vabsq_f32(vld1q_f32(c.as_ptr())));
            m1 = vmaxq_f32(m1, vabsq_f32(vld1q_f32(c.as_ptr().add(4))));
        }
        let max = vmaxvq_f32(vmaxq_f32(m0, m1));
        if !(max > 0.0 && max.is_finite()) {
            (0..x.len() / 16).for_each(|g| store(g, vdupq_n_s8(0)));
            return if max == 0.0 { 0.0 } else { f32::NAN };
        }
        let inv = 127.0 / max;
        for (g, c) in x.chunks_exact(16).enumerate() {
            // |x · inv| ≤ 127 (plus rounding, never to 127.5): the narrowing saturates nothing.
            let q = |i: usize| vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(c.as_ptr().add(4 * i)), inv));
            let lo = vcombine_s16(vqmovn_s32(q(0)), vqmovn_s32(q(1)));
            let hi = vcombine_s16(vqmovn_s32(q(2)), vqmovn_s32(q(3)));
            store(g, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
        }
        max / 127.0
    }
}

/// [`quantize_symmetric_into`] a contiguous `out` (as long as `x`).
#[cfg(test)]
fn quantize_symmetric(x: &[f32], out: &mut [i8]) -> f32 {
    assert_eq!(out.len(), x.len());
    // SAFETY: group g's 16 bytes are at out[16g..16g + 16], inside `out`.
    quantize_symmetric_into(x, |g, b| unsafe { vst1q_s8(out.as_mut_ptr().add(16 * g), b) })
}

/// The keys of one head quantized ([`quantize_symmetric_into`], one step per key) into `kq`
/// `[t16 / KC][dh / 4][KC][4]` (a score tile's weights, as `sdot_group!` reads them: per four
/// d, the tile's 16 keys' four bytes) and their steps into `ks` `[t16]`; the padding keys past
/// `t` get zero bytes and step 0. Key j's values are at `k[j · w + off..][..dh]`; dh is a
/// multiple of 16, at most [`I8_MAX_DH`].
pub(super) fn gather_keys_i8(
    k: &[f32],
    (w, off, dh): (usize, usize, usize),
    t: usize,
    kq: &mut [i8],
    ks: &mut [f32],
) {
    let t16 = t.div_ceil(KC) * KC;
    // ok: the op sizes k to t rows of w ≥ off + dh, the scratch to t16 keys of dh.
    assert!(dh.is_multiple_of(16) && dh <= I8_MAX_DH);
    assert!(kq.len() >= t16 * dh && ks.len() >= t16 && k.len() >= (t.max(1) - 1) * w + off + dh);
    for j in 0..t16 {
        // Quad i of key j at `kq[(tile · dh/4 + i) · KC · 4 + c · 4..][..4]`: a group of 16
        // bytes is four 4-byte lanes, 64 bytes apart.
        let (tile, c) = (j / KC, j % KC);
        let at = tile * dh * KC + c * 4;
        // SAFETY: group g's last lane ends at at + (4g + 3) · 64 + 4 ≤ (tile + 1) · dh · KC ≤
        // t16 · dh (asserted), so every store is inside `kq`.
        let store = |g: usize, b: int8x16_t| unsafe {
            let (b, to) = (vreinterpretq_u32_s8(b), kq.as_mut_ptr().add(at + 4 * g * KC * 4));
            vst1q_lane_u32::<0>(to.cast(), b);
            vst1q_lane_u32::<1>(to.add(KC * 4).cast(), b);
            vst1q_lane_u32::<2>(to.add(2 * KC * 4).cast(), b);
            vst1q_lane_u32::<3>(to.add(3 * KC * 4).cast(), b);
        };
        ks[j] = if j < t {
            quantize_symmetric_into(&k[j * w + off..][..dh], store)
        } else {
            let mut store = store;
            (0..dh / 16).for_each(|g| store(g, unsafe { vdupq_n_s8(0) }));
            0.0
        };
    }
}

/// Four query rows quantized ([`quantize_symmetric_into`], one step per row) into `qq`
/// `[dh / 16][QR][16]` (a score tile's rows, as `sdot_group!` reads them) and their steps into
/// `qs`; rows past `rows` repeat the last. Row r's values are at `q[r · w + off..][..dh]`.
pub(super) fn quantize_queries(
    q: &[f32],
    (w, off, dh): (usize, usize, usize),
    rows: usize,
    qq: &mut [i8],
    qs: &mut [f32; QR],
) {
    // ok: the op passes `rows` ≥ 1 whole rows and a QR · dh scratch.
    assert!(dh.is_multiple_of(16) && dh <= I8_MAX_DH && (1..=QR).contains(&rows));
    assert!(q.len() >= (rows - 1) * w + off + dh && qq.len() >= QR * dh);
    for (r, step) in qs.iter_mut().enumerate() {
        let x = &q[r.min(rows - 1) * w + off..][..dh];
        // SAFETY: (g · QR + r) · 16 + 16 ≤ dh · QR (asserted): inside `qq`.
        *step = quantize_symmetric_into(x, |g, b| unsafe {
            vst1q_s8(qq.as_mut_ptr().add((g * QR + r) * 16), b)
        });
    }
}

/// Four query rows' scores from int8 queries and keys, tile of 16 keys by tile:
/// `Σ_d q[r][d] · k[c][d]` by `sdot` (exact in i32), then `f32(sum) · (qs[r] · ks[c]) +
/// mask[c]` fused, row r stored at `scores[r · stride..][..t16]`; `maxes[r]` takes the row's
/// largest. `keys` is `[t16 / KC][dh / 4][KC][4]` with its steps `ks` `[t16]`, `q` the rows'
/// `[dh / 16][QR][16]` (dh a multiple of 16), `mask` `[t16]`.
///
/// # Safety
/// The CPU must have dot-product.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn masked_scores_i8(
    (keys, ks): (&[i8], &[f32]),
    (q, qs): (&[i8], &[f32; QR]),
    mask: &[f32],
    (scores, stride): (&mut [f32], usize),
    maxes: &mut [f32; QR],
) {
    let t16 = ks.len();
    let dh = keys.len() / t16.max(1);
    let groups = dh / 16;
    // ok: the caller passes whole tiles of keys with their steps, the rows of as many d, a mask
    // for every key, 4 score rows of t16.
    assert!(t16.is_multiple_of(KC) && groups > 0 && keys.len() == t16 * dh && dh == groups * 16);
    assert!(q.len() >= dh * QR && mask.len() == t16 && scores.len() >= (QR - 1) * stride + t16);
    // SAFETY: dot-product is present (the caller's promise); each `asm!` reads `groups` × 64
    // bytes of `q` and × 256 of a tile of `keys`; the stores are in the rows asserted above.
    unsafe {
        let mut top = [vdupq_n_f32(f32::NEG_INFINITY); QR];
        for tile in 0..t16 / KC {
            // acc[4r + j]: keys 4j..4j+4 of query row r, in v16-v31 through the `asm!`.
            let mut acc = [vdupq_n_s32(0); 16];
            asm!(
                "2:",
                crate::kernels::gemm_i8::neon_dot::sdot_group!(),
                "subs {g}, {g}, #1",
                "b.ne 2b",
                x = inout(reg) q.as_ptr() => _,
                w = inout(reg) keys.as_ptr().add(tile * dh * KC) => _,
                g = inout(reg) groups => _,
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
            let at = tile * KC;
            let k = vld1q_f32_x4(ks.as_ptr().add(at));
            let k = [k.0, k.1, k.2, k.3];
            let m = vld1q_f32_x4(mask.as_ptr().add(at));
            let m = [m.0, m.1, m.2, m.3];
            for (r, top) in top.iter_mut().enumerate() {
                // Sums of at most 256 products of ±127: exact in f32.
                let v: [float32x4_t; 4] = std::array::from_fn(|j| {
                    vfmaq_f32(m[j], vcvtq_f32_s32(acc[4 * r + j]), vmulq_n_f32(k[j], qs[r]))
                });
                vst1q_f32_x4(
                    scores.as_mut_ptr().add(r * stride + at),
                    float32x4x4_t(v[0], v[1], v[2], v[3]),
                );
                *top = vmaxq_f32(*top, vmaxq_f32(vmaxq_f32(v[0], v[1]), vmaxq_f32(v[2], v[3])));
            }
        }
        for (max, top) in maxes.iter_mut().zip(top) {
            *max = max.max(vmaxvq_f32(top));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Dims, Scratch, attention_head};
    use super::*;

    /// The scalar reference of [`quantize_symmetric`]: round half to even of `x · (127 / max)`.
    fn quantize_reference(x: &[f32]) -> (Vec<i8>, f32) {
        let max = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
        let inv = 127.0 / max;
        (x.iter().map(|&v| (v * inv).round_ties_even() as i8).collect(), max / 127.0)
    }

    fn data(n: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 101) as f32 - 50.0) / 50.0 * scale).collect()
    }

    /// The int8 score tiles against scalar code on the same definition (each query and key
    /// row quantized on its own step, products summed in integers, `sum · (qs · ks) + mask`
    /// fused): equal bit for bit, each row's maximum the largest of its scores. Key counts
    /// around the tile of 16, head widths 16 to 64, the head at the start, middle and end of
    /// its row, partial query tiles.
    #[test]
    fn int8_score_tiles_match_the_scalar_reference() {
        if !crate::platform::cpu::features().dotprod {
            return;
        }
        for (t, heads, dh, head) in
            [(5usize, 1, 16, 0), (16, 2, 32, 1), (19, 3, 32, 1), (40, 2, 64, 1), (70, 4, 48, 3)]
        {
            let (w, off, t16) = (heads * dh, head * dh, t.div_ceil(KC) * KC);
            let k = data(t * w, 1, 2.0);
            let q = data(t * w, 2, 0.7);
            let mut mask: Vec<f32> =
                (0..t).map(|j| if j % 5 == 4 { -10_000.0 } else { 0.0 }).collect();
            mask.resize(t16, f32::NEG_INFINITY);
            let (mut kq, mut ks) = (vec![0i8; t16 * dh], vec![0f32; t16]);
            gather_keys_i8(&k, (w, off, dh), t, &mut kq, &mut ks);
            let keys: Vec<(Vec<i8>, f32)> =
                (0..t).map(|j| quantize_reference(&k[j * w + off..][..dh])).collect();
            for i0 in (0..t).step_by(QR) {
                let rows = QR.min(t - i0);
                let (mut qq, mut qs) = (vec![0i8; QR * dh], [0f32; QR]);
                quantize_queries(&q[i0 * w..], (w, off, dh), rows, &mut qq, &mut qs);
                let mut scores = vec![0f32; QR * t16];
                let mut maxes = [f32::NEG_INFINITY; QR];
                // SAFETY: dot-product is present (checked).
                unsafe {
                    masked_scores_i8((&kq, &ks), (&qq, &qs), &mask, (&mut scores, t16), &mut maxes)
                };
                for r in 0..rows {
                    let (qr, qstep) = quantize_reference(&q[(i0 + r) * w + off..][..dh]);
                    assert_eq!(qs[r], qstep, "t {t}, dh {dh}, row {}", i0 + r);
                    for (j, (kr, kstep)) in keys.iter().enumerate() {
                        let sum: i32 =
                            qr.iter().zip(kr).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
                        let want = (sum as f32).mul_add(kstep * qstep, mask[j]);
                        let got = scores[r * t16 + j];
                        assert_eq!(
                            got,
                            want,
                            "t {t}, dh {dh}, head {head}, row {}, key {j}",
                            i0 + r
                        );
                    }
                    for j in t..t16 {
                        assert_eq!(scores[r * t16 + j], f32::NEG_INFINITY, "padding key {j}");
                    }
                    let row = &scores[r * t16..][..t16];
                    assert_eq!(maxes[r], row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                }
            }
        }
    }

    /// An all-zero row has step 0 and zero bytes; a row with a NaN or an infinity has step
    /// NaN (its scores, and so its context, come out NaN as on the f32 path), never a panic.
    #[test]
    fn quantizing_zero_and_non_finite_rows() {
        let mut out = [1i8; 16];
        assert_eq!(quantize_symmetric(&[0.0; 16], &mut out), 0.0);
        assert_eq!(out, [0; 16]);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = [0.5f32; 16];
            x[7] = bad;
            let mut out = [1i8; 16];
            assert!(quantize_symmetric(&x, &mut out).is_nan(), "{bad}");
            assert_eq!(out, [0; 16]);
        }
    }

    /// A head with int8 scores against the same head in f32: the context within the bound that
    /// the quantization implies. With each query and key value off by at most half its row's
    /// step, a score moves by at most Δ = Σ_d (½sq·|k_d| + ½sk·|q_d| + ¼sq·sk); the softmax's
    /// weights then move by a factor within e^(±2Δ), and the context by at most
    /// (e^(2Δ) − 1) · max|v| (plus f32 rounding: 1e-5).
    #[test]
    fn int8_scores_stay_within_the_quantization_bound() {
        if !crate::platform::cpu::features().dotprod {
            return;
        }
        for (t, heads, dh, head) in [(7usize, 2, 32, 1), (40, 2, 64, 0), (129, 3, 32, 2)] {
            let w = heads * dh;
            let (q, k, v) = (data(t * w, 3, 0.5), data(t * w, 4, 0.5), data(t * w, 5, 1.0));
            let mask: Vec<f32> = (0..t).map(|j| if j + 2 >= t { -10_000.0 } else { 0.0 }).collect();
            let run = |int8_scores: bool| {
                let mut out = vec![0f32; t * dh];
                let dims = Dims { seq: t, heads, dh, head, out_stride: dh, int8_scores };
                attention_head(&q, &k, &v, &mask, dims, &mut Scratch::new(t, dh), &mut out);
                out
            };
            let (exact, int8) = (run(false), run(true));
            let row = |x: &[f32], i: usize| x[i * w + head * dh..][..dh].to_vec();
            let step = |r: &[f32]| r.iter().fold(0f32, |m, &x| m.max(x.abs())) / 127.0;
            let vmax = (0..t).map(|j| step(&row(&v, j)) * 127.0).fold(0f32, f32::max);
            for i in 0..t {
                let (qi, sq) = (row(&q, i), step(&row(&q, i)));
                let delta = (0..t)
                    .map(|j| {
                        let (kj, sk) = (row(&k, j), step(&row(&k, j)));
                        qi.iter()
                            .zip(&kj)
                            .map(|(a, b)| 0.5 * sq * b.abs() + 0.5 * sk * a.abs() + 0.25 * sq * sk)
                            .sum::<f32>()
                    })
                    .fold(0f32, f32::max);
                let bound = ((2.0 * delta).exp() - 1.0) * vmax + 1e-5;
                for d in 0..dh {
                    let (e, g) = (exact[i * dh + d], int8[i * dh + d]);
                    assert!(
                        (e - g).abs() <= bound,
                        "t {t}, dh {dh}, row {i}: {e} vs {g} (bound {bound})"
                    );
                }
            }
            assert_ne!(exact, int8, "the int8 path was not taken");
        }
    }
}
