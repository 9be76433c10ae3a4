//! Self-attention as one op: scores, masked softmax and context per head, with the
//! head's keys and values gathered once and the scores row block kept in L1.
//!
//! tract 0.23 runs it as two batched matmuls with their packing, two axis moves and the softmax,
//! most of the time going to packing and moving 32-wide heads (results/performance.md has the
//! profile). Here:
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

#[cfg(not(target_arch = "aarch64"))]
use super::softmax::masked_exp_row;
#[cfg(target_arch = "aarch64")]
use super::softmax::shifted_exp_row;

/// Query rows per scores tile, key columns per tile.
const QR: usize = 4;
const KC: usize = 16;
const _: () = assert!(QR == 4 && KC == 16, "scores_tile's NEON form");

#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) seq: usize,
    pub(crate) heads: usize,
    pub(crate) dh: usize,
    pub(crate) head: usize,
    /// Distance between the head's output rows in `out`.
    pub(crate) out_stride: usize,
}

/// Per-op buffers, reused across heads: keys by tile `[t16 / KC, dh, KC]` (t padded to the
/// tile), values `[t, dh]`, one tile of query rows `[dh, QR]`, scores `[QR, t16]` and
/// probabilities `[QR, t]`.
pub(crate) struct Scratch {
    kt: Vec<f32>,
    v: Vec<f32>,
    q: Vec<f32>,
    scores: Vec<f32>,
    probs: Vec<f32>,
    /// The mask over `t16` keys, −∞ past the last (aarch64: added in the score tiles).
    mask: Vec<f32>,
}

impl Scratch {
    pub(crate) fn new(seq: usize, dh: usize) -> Scratch {
        let t16 = seq.div_ceil(KC) * KC;
        Scratch {
            kt: vec![0.0; dh * t16],
            v: vec![0.0; seq * dh],
            q: vec![0.0; QR * dh],
            scores: vec![0.0; QR * t16],
            probs: vec![0.0; QR * seq],
            mask: vec![f32::NEG_INFINITY; t16],
        }
    }
}

// One head of one text: `out[r * dims.out_stride..][..dh]` receives row r of its context.
simd_dispatch!(pub(crate) attention_head(
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
    let Scratch { kt, v: vh, q: qt, scores, probs, mask: mask16 } = scratch;
    mask16[..t].copy_from_slice(&mask[..t]);
    // Keys tile by tile, `[t16 / KC][dh][KC]`: a scores tile reads one contiguous run.
    #[cfg(target_arch = "aarch64")]
    let done = neon::gather_keys(k, (w, off, dh), t, kt);
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    for j in done..t {
        let (tile, c) = (j / KC, j % KC);
        for (d, &x) in k[j * w + off..][..dh].iter().enumerate() {
            kt[(tile * dh + d) * KC + c] = x;
        }
    }
    for j in 0..t {
        vh[j * dh..][..dh].copy_from_slice(&v[j * w + off..][..dh]);
    }
    let mut sums = [0f32; QR];
    for i0 in (0..t).step_by(QR) {
        let rows = QR.min(t - i0);
        // The query rows transposed, `[dh][QR]`, zero past the last row.
        #[cfg(target_arch = "aarch64")]
        let done = rows == QR && neon::gather_queries(&q[i0 * w..], (w, off, dh), qt);
        #[cfg(not(target_arch = "aarch64"))]
        let done = false;
        if !done {
            qt.fill(0.0);
            for r in 0..rows {
                for (d, &x) in q[(i0 + r) * w + off..][..dh].iter().enumerate() {
                    qt[d * QR + r] = x;
                }
            }
        }
        // Unnormalized probabilities; the context is divided by their sum instead (dh
        // divisions per row rather than t multiplications).
        #[cfg(target_arch = "aarch64")]
        {
            // The mask added and each row's maximum taken while the tile is in registers:
            // the exp pass is then all that is left of the softmax.
            let mut maxes = [f32::NEG_INFINITY; QR];
            for (tile, keys) in kt.chunks_exact(dh * KC).enumerate() {
                let at = tile * KC;
                neon::masked_scores_tile(keys, qt, &mask16[at..at + KC], &mut scores[at..], t16, &mut maxes);
            }
            for (r, sum) in sums.iter_mut().enumerate().take(rows) {
                *sum = shifted_exp_row(&scores[r * t16..][..t], maxes[r], &mut probs[r * t..][..t]);
            }
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            for (tile, keys) in kt.chunks_exact(dh * KC).enumerate() {
                let acc = scores_tile(keys, qt);
                for (r, acc) in acc.iter().enumerate() {
                    scores[r * t16 + tile * KC..][..KC].copy_from_slice(acc);
                }
            }
            for (r, sum) in sums.iter_mut().enumerate().take(rows) {
                *sum = masked_exp_row(&scores[r * t16..][..t], mask, &mut probs[r * t..][..t]);
            }
        }
        let mut r = 0;
        while r < rows {
            let pair = (rows - r).min(2);
            let p0 = &probs[r * t..][..t];
            let p1 = &probs[(r + pair - 1) * t..][..t];
            let inv = [1.0 / sums[r], 1.0 / sums[r + pair - 1]];
            #[cfg(target_arch = "aarch64")]
            {
                // Accumulated, normalized and stored from registers.
                let out = &mut out[(i0 + r) * out_stride..];
                let done = match dh {
                    32 => context_pair_into::<32>((p0, p1), vh, inv, (out, out_stride, pair)),
                    64 => context_pair_into::<64>((p0, p1), vh, inv, (out, out_stride, pair)),
                    _ => false,
                };
                if done {
                    r += pair;
                    continue;
                }
            }
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
                let dst = &mut out[(i0 + r + rr) * out_stride..][..dh];
                dst.iter_mut().zip(o).for_each(|(d, &o)| *d = o * inv[rr]);
            }
            r += pair;
        }
    }
});

/// One 4 × 16 tile of scores: `acc[r][c] = Σ_d qt[d][r] · keys[d][c]` (`keys` `[dh][KC]`,
/// `qt` `[dh][QR]`), fused multiply-adds in d order (aarch64: `neon::masked_scores_tile`).
#[cfg(not(target_arch = "aarch64"))]
#[inline(always)]
fn scores_tile(keys: &[f32], qt: &[f32]) -> [[f32; KC]; QR] {
    // Exact-size chunks: no bounds checks, the 4 × 16 accumulators stay in registers.
    let mut acc = [[0f32; KC]; QR];
    for (kv, qv) in keys.chunks_exact(KC).zip(qt.chunks_exact(QR)) {
        for (acc, &qv) in acc.iter_mut().zip(qv) {
            acc.iter_mut().zip(kv).for_each(|(a, &k)| *a = qv.mul_add(k, *a));
        }
    }
    acc
}

/// `p0 · V` and `p1 · V` for a head width known at compile time, so both accumulator rows
/// stay in registers (2 × DH/8 ymm) across all keys (aarch64: `context_pair_into`).
#[inline(always)]
fn context_pair<const DH: usize>(p0: &[f32], p1: &[f32], v: &[f32]) -> ([f32; 64], [f32; 64]) {
    let mut a0 = [0f32; DH];
    let mut a1 = [0f32; DH];
    for ((&x0, &x1), vr) in p0.iter().zip(p1).zip(v.chunks_exact(DH)) {
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

/// Four keys of a 32-wide context pair: the two rows' four probabilities into v8 and v9, then
/// per key its value row into v0-v7 and 16 `fmla`s by element into v16-v23 (row 0) and v24-v31
/// (row 1). `{p0}`, `{p1}` and `{v}` advance.
#[cfg(target_arch = "aarch64")]
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

/// [`context_pair`] on NEON, normalized by `inv` and written straight from registers: row 0 at
/// `out[..DH]`, row 1 (if `rows` is 2) at `out[stride..][..DH]`. Keys in groups of four: the
/// two rows' four probabilities are one register each, multiplied by element into each value
/// row; then the last keys one by one. The same fused operations in the same key order, and
/// the same multiply by 1/Σ, as the portable loops. Returns false (nothing written) for a
/// width it does not take.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn context_pair_into<const DH: usize>(
    (p0, p1): (&[f32], &[f32]),
    v: &[f32],
    inv: [f32; 2],
    (out, stride, rows): (&mut [f32], usize, usize),
) -> bool {
    use std::arch::aarch64::*;
    use std::arch::asm;
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
    true
}

/// The gathers of [`attention_head`] on NEON: 4 × 4 blocks transposed in registers (`trn1`,
/// `trn2`) instead of one scalar move per value.
#[cfg(target_arch = "aarch64")]
mod neon {
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
                let k: [float32x4_t; 4] =
                    std::array::from_fn(|j| vld1q_f32(kv.as_ptr().add(4 * j)));
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
}

/// Whether this CPU runs the fused attention (and the rewrite swaps it in): x86_64 with AVX2 + FMA,
/// and aarch64, where NEON and FMA are the base architecture so the loops above compile to
/// `fmla` as they are. Not armv7: its default target has no NEON, and `mul_add` there is a
/// libm call.
pub fn available() -> bool {
    let cpu = crate::platform::cpu::features();
    cpu.avx2_fma || cpu.aarch64
}
