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
//! AVX2 + FMA and aarch64 use it ([`available`]); armv7 keeps tract's ops. With AVX-512 a
//! head runs 16 lanes wide in blocks of 8 query rows (`avx512.rs`, head widths 16 to 64 and
//! 128), on aarch64 with hand-scheduled NEON tiles (`neon.rs`; int8 scores by `sdot` on the
//! int8 path where the CPU has dot-product); elsewhere the loops below, compiled for AVX2 + FMA.

#[cfg(not(target_arch = "aarch64"))]
use super::softmax::masked_exp_row;
#[cfg(target_arch = "aarch64")]
use super::softmax::shifted_exp_row;

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

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
    /// Scores from int8 queries and keys where the CPU has dot-product (aarch64, head widths
    /// that are multiples of 16): the int8 path's choice, [`int8_scores_available`].
    pub(crate) int8_scores: bool,
}

/// Rows of scores a block of queries keeps: the AVX-512 form takes two blocks of [`QR`] at once.
#[cfg(target_arch = "x86_64")]
const SCORE_ROWS: usize = avx512::QB;
#[cfg(not(target_arch = "x86_64"))]
const SCORE_ROWS: usize = QR;

/// Per-op buffers, reused across heads: keys by tile `[t16 / KC, dh, KC]` (t padded to the
/// tile), values `[t, dh]`, one tile of query rows `[dh, QR]`, scores `[SCORE_ROWS, t16]`
/// and probabilities `[QR, t]` (the AVX-512 form takes them in place of the scores).
pub(crate) struct Scratch {
    kt: Vec<f32>,
    v: Vec<f32>,
    q: Vec<f32>,
    scores: Vec<f32>,
    probs: Vec<f32>,
    /// The mask over `t16` keys, −∞ past the last (aarch64: added in the score tiles).
    mask: Vec<f32>,
    /// The int8 scores' keys `[t16 / KC][dh / 4][KC][4]` with their steps `[t16]`, and one
    /// tile of query rows `[dh / 16][QR][16]`.
    #[cfg(target_arch = "aarch64")]
    i8: (Vec<i8>, Vec<f32>, Vec<i8>),
}

impl Scratch {
    pub(crate) fn new(seq: usize, dh: usize) -> Scratch {
        let t16 = seq.div_ceil(KC) * KC;
        Scratch {
            kt: vec![0.0; dh * t16],
            v: vec![0.0; seq * dh],
            q: vec![0.0; QR * dh],
            scores: vec![0.0; SCORE_ROWS * t16],
            probs: vec![0.0; QR * seq],
            mask: vec![f32::NEG_INFINITY; t16],
            #[cfg(target_arch = "aarch64")]
            i8: (vec![0; t16 * dh], vec![0.0; t16], vec![0; QR * dh]),
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
    let Dims { seq: t, heads, dh, head, out_stride, int8_scores } = dims;
    let (w, off, t16) = (heads * dh, head * dh, t.div_ceil(KC) * KC);
    #[cfg(target_arch = "aarch64")]
    let Scratch { kt, v: vh, q: qt, scores, probs, mask: mask16, i8: (kq, ks, qq) } = scratch;
    #[cfg(not(target_arch = "aarch64"))]
    let Scratch { kt, v: vh, q: qt, scores, probs, mask: mask16 } = scratch;
    #[cfg(target_arch = "aarch64")]
    let int8 = int8_scores && int8_scores_available(dh);
    #[cfg(target_arch = "aarch64")]
    if int8 {
        neon::gather_keys_i8(k, (w, off, dh), t, kq, ks);
    }
    #[cfg(not(target_arch = "aarch64"))]
    let _ = int8_scores; // no int8 score kernel here (`int8_scores_available` is false)
    #[cfg(target_arch = "x86_64")]
    let avx512 = crate::platform::cpu::features().avx512f;
    mask16[..t].copy_from_slice(&mask[..t]);
    // Keys tile by tile, `[t16 / KC][dh][KC]`: a scores tile reads one contiguous run.
    #[cfg(target_arch = "aarch64")]
    let done = if int8 { t } else { neon::gather_keys(k, (w, off, dh), t, kt) };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 F is present.
    let done = if avx512 { unsafe { avx512::gather_keys(k, (w, off, dh), t, kt) } } else { 0 };
    #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
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
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 F is present; the shapes are the op's (Scratch::new for t and dh).
    if avx512 && unsafe { avx512::head(q, (w, off, dh), t, kt, vh, mask16, scores, (out, out_stride)) } {
        return;
    }
    let mut sums = [0f32; QR];
    for i0 in (0..t).step_by(QR) {
        let rows = QR.min(t - i0);
        // The query rows transposed, `[dh][QR]`, zero past the last row.
        #[cfg(target_arch = "aarch64")]
        let done = int8 || (rows == QR && neon::gather_queries(&q[i0 * w..], (w, off, dh), qt));
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
            if int8 {
                let mut qs = [0f32; QR];
                neon::quantize_queries(&q[i0 * w..], (w, off, dh), rows, qq, &mut qs);
                // SAFETY: dot-product is present (`int8_scores_available`).
                unsafe {
                    neon::masked_scores_i8(
                        (&kq[..t16 * dh], &ks[..t16]),
                        (&qq[..QR * dh], &qs),
                        &mask16[..t16],
                        (&mut scores[..], t16),
                        &mut maxes,
                    )
                };
            } else {
                for (tile, keys) in kt.chunks_exact(dh * KC).enumerate() {
                    let at = tile * KC;
                    neon::masked_scores_tile(keys, qt, &mask16[at..at + KC], &mut scores[at..], t16, &mut maxes);
                }
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
                let (s, p) = (&scores[r * t16..][..t], &mut probs[r * t..][..t]);
                *sum = masked_exp_row(s, mask, p);
            }
        }
        let mut r = 0;
        while r < rows {
            let pair = (rows - r).min(2);
            let p0 = &probs[r * t..][..t];
            let p1 = &probs[(r + pair - 1) * t..][..t];
            let inv = [1.0 / sums[r], 1.0 / sums[r + pair - 1]];
            #[cfg(target_arch = "aarch64")]
            if let 32 | 64 = dh {
                // Accumulated, normalized and stored from registers.
                let out = (&mut out[(i0 + r) * out_stride..], out_stride, pair);
                if dh == 32 {
                    neon::context_pair_into::<32>((p0, p1), vh, inv, out);
                } else {
                    neon::context_pair_into::<64>((p0, p1), vh, inv, out);
                }
                r += pair;
                continue;
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
/// stay in registers (2 × DH/8 ymm) across all keys (aarch64: `neon::context_pair_into`).
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

/// Whether [`Dims::int8_scores`] takes effect for heads of `dh`: aarch64 with dot-product
/// (`sdot`: 16 multiply-adds per instruction against `fmla`'s 4), dh a multiple of 16 up to
/// 256. Queries and keys are quantized per token and head, symmetric, 8 bits;
/// results/precision.md has what it costs in fidelity.
#[cfg(target_arch = "aarch64")]
pub fn int8_scores_available(dh: usize) -> bool {
    crate::platform::cpu::features().dotprod && dh.is_multiple_of(16) && dh <= neon::I8_MAX_DH
}

/// No int8 score kernel off aarch64.
#[cfg(not(target_arch = "aarch64"))]
pub fn int8_scores_available(_dh: usize) -> bool {
    false
}

/// Whether this CPU runs the fused attention (and the rewrite swaps it in): x86_64 with AVX2 + FMA,
/// and aarch64, where NEON and FMA are the base architecture so the loops above compile to
/// `fmla` as they are. Not armv7: its default target has no NEON, and `mul_add` there is a
/// libm call.
pub fn available() -> bool {
    let cpu = crate::platform::cpu::features();
    cpu.avx2_fma || cpu.aarch64
}
