//! x86_64 AVX-512 form of one attention head ([`head`]), for blocks of 8 query rows: the
//! scores of 4 rows against up to 64 keys (four key tiles, 16 zmm accumulators) with the mask
//! added and each row's maximum taken in registers, `exp(s − max)` in place with fused
//! multiply-adds, and the context of 8 rows (head width 32; 4 at 64) with 16 zmm accumulators.
//! The AVX2 build of the portable tiles has 8 ymm accumulators; compiled for AVX-512 as they
//! are, the same tiles would have 4 zmm ones, too few to cover the fused multiply-add's latency
//! (results/performance.md, session 19).
//!
//! Scores and context: the portable tiles' products, added in the same order (d for the
//! scores, keys for the context) with fused multiply-adds, so the same sums bit for bit. The
//! exp rounds differently (within 2⁻²³ relative of e^x) and the row sums in another order,
//! so the probabilities differ from the portable form's in their last bits.

use std::arch::x86_64::*;

use super::{KC, QR};

/// Keys `0..t / KC · KC` of one head (key j at `k[j · w + off..][..dh]`) into `kt` by tile
/// (`[t16 / KC][dh][KC]`), each tile's d-th row one 16-lane gather; returns how many keys it
/// did (the caller moves the rest, fewer than a tile, one by one). Moved one value at a time,
/// the keys' and the queries' transposes were 10.6% of an int8 inference at 8 × 256 tokens
/// (`perf record`: scalar stores, more than the scores' multiply-adds).
///
/// # Safety
/// AVX-512 F is present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gather_keys(
    k: &[f32],
    (w, off, dh): (usize, usize, usize),
    t: usize,
    kt: &mut [f32],
) -> usize {
    let keys = t / KC * KC;
    if keys == 0 || w > i32::MAX as usize / KC {
        return 0;
    }
    // ok: the op sizes k to t rows of w ≥ off + dh, and kt to the tiles of t (scratch).
    assert!(k.len() >= (keys - 1) * w + off + dh && kt.len() >= keys * dh, "gather_keys: shapes");
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let rows = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(w as i32));
    for tile in 0..keys / KC {
        for d in 0..dh {
            // SAFETY: lane c reads k[(tile · KC + c) · w + off + d], inside the rows asserted
            // above; the store is KC floats at (tile · dh + d) · KC < keys · dh.
            unsafe {
                let base = k.as_ptr().add(tile * KC * w + off + d);
                let v = _mm512_i32gather_ps::<4>(rows, base);
                _mm512_storeu_ps(kt.as_mut_ptr().add((tile * dh + d) * KC), v);
            }
        }
    }
    keys
}

/// Query rows per block: two [`QR`]-row score blocks, then their context together, so the
/// context tile has 16 zmm accumulators at head width 32 (8 with [`QR`] rows: just the
/// fused multiply-add's latency × its two ports, and the two broadcasts per accumulator row
/// crowd the loads).
pub(super) const QB: usize = 2 * QR;

/// [`context_rows`] for one head width.
type ContextRows = unsafe fn(&[f32], usize, usize, &[f32], &[f32; QB], &mut [f32], usize);

/// One head of one text, after its keys (`kt`, by tile, `[t16 / KC][dh][KC]`) and values
/// (`v`, `[t][dh]`) are gathered: for each block of [`QB`] query rows the scores with the mask
/// added and each row's maximum taken while they are in registers, `exp(s − max)` in place,
/// then the context, divided by the row's sum as it is stored. `false` (nothing written) for a
/// head width the context tile does not take (a multiple of 16 up to 64, or 128).
///
/// # Safety
/// AVX-512 F is present; `q` holds `t` rows of `w ≥ off + dh`; `kt` `t16 / KC` whole tiles;
/// `v` `t × dh`; `mask16` `t16` values (−∞ past `t`); `scores` `QB × t16`; `out` reaches
/// `(t − 1) · stride + dh`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn head(
    q: &[f32],
    (w, off, dh): (usize, usize, usize),
    t: usize,
    kt: &[f32],
    v: &[f32],
    mask16: &[f32],
    scores: &mut [f32],
    (out, stride): (&mut [f32], usize),
) -> bool {
    let t16 = t.div_ceil(KC) * KC;
    let context: ContextRows = match dh {
        16 => context_rows::<1, 8>,
        32 => context_rows::<2, 8>,
        48 => context_rows::<3, 4>,
        64 => context_rows::<4, 4>,
        128 => context_rows::<8, 2>,
        _ => return false,
    };
    if t == 0 {
        return true;
    }
    // ok: the op sizes every buffer to these shapes (Scratch::new, the op's shape checks).
    assert!(
        q.len() >= (t - 1) * w + off + dh
            && kt.len() >= t16 * dh
            && v.len() >= t * dh
            && mask16.len() >= t16
            && scores.len() >= QB * t16
            && out.len() >= (t - 1) * stride + dh,
        "attention head: shapes"
    );
    let (kt, v) = (&kt[..t16 * dh], &v[..t * dh]);
    for i0 in (0..t).step_by(QB) {
        let rows = QB.min(t - i0);
        let mut maxes = [[f32::NEG_INFINITY; QR]; QB / QR];
        for (half, maxes) in maxes.iter_mut().enumerate().take(rows.div_ceil(QR)) {
            // Rows past the last repeat it; their scores are not used.
            let last = i0 + rows - 1;
            let q = std::array::from_fn(|r| &q[(i0 + half * QR + r).min(last) * w + off..][..dh]);
            let scores = &mut scores[half * QR * t16..];
            // SAFETY: AVX-512 F is present; shapes asserted above.
            unsafe { masked_scores(kt, q, dh, mask16, t16, scores, maxes) };
        }
        let mut inv = [0f32; QB];
        for (r, inv) in inv.iter_mut().enumerate().take(rows) {
            let (row, max) = (&mut scores[r * t16..][..t], maxes[r / QR][r % QR]);
            // SAFETY: AVX-512 F is present.
            *inv = 1.0 / unsafe { exp_row(row, max) };
        }
        let out = &mut out[i0 * stride..];
        // SAFETY: AVX-512 F is present; `scores` holds `rows` rows of t (stride t16), `v`
        // t × dh, and `out` reaches row i0 + rows − 1 of this head.
        unsafe { context(scores, t16, rows, v, &inv, out, stride) };
    }
    true
}

/// The scores of `QR` query rows (`q[r]`, `dh` values each, read where they are: no transposed
/// copy) against every key tile of `kt` (`[tiles][dh][KC]`), plus the mask, into `scores`
/// (`[QR][t16]`); `maxes[r]` becomes row r's largest.
///
/// # Safety
/// AVX-512 F is present; `kt` holds whole tiles of `dh × KC`, every `q[r]` `dh` values,
/// `mask16` and every row of `scores` `t16 ≥` the keys in `kt`.
#[target_feature(enable = "avx512f")]
unsafe fn masked_scores(
    kt: &[f32],
    q: [&[f32]; QR],
    dh: usize,
    mask16: &[f32],
    t16: usize,
    scores: &mut [f32],
    maxes: &mut [f32; QR],
) {
    let tiles = kt.len() / (dh * KC);
    assert!(
        q.iter().all(|q| q.len() >= dh)
            && mask16.len() >= tiles * KC
            && scores.len() >= (QR - 1) * t16 + tiles * KC,
        "scores: shapes"
    );
    let q = q.map(<[f32]>::as_ptr);
    let mut peak = [_mm512_set1_ps(f32::NEG_INFINITY); QR];
    let mut tile = 0;
    while tile < tiles {
        let at = (tile, mask16, &mut peak);
        // SAFETY: tiles `tile..tile + T` exist (`T ≤ tiles - tile`), bounds asserted above.
        unsafe {
            tile += match tiles - tile {
                4.. => scores_tiles::<4>(kt, q, dh, t16, scores, at),
                2 | 3 => scores_tiles::<2>(kt, q, dh, t16, scores, at),
                _ => scores_tiles::<1>(kt, q, dh, t16, scores, at),
            };
        }
    }
    for (m, p) in maxes.iter_mut().zip(peak) {
        *m = _mm512_reduce_max_ps(p);
    }
}

/// Key tiles `first..first + T`: `4 × T` zmm accumulators, one fused multiply-add per row,
/// tile and d (the portable tile's products in its order: the same sums bit for bit); stored
/// with the mask added, each row's lane-wise peak kept. Returns `T`.
///
/// # Safety
/// As [`masked_scores`]'s; `q[r]` points at `dh` values.
#[target_feature(enable = "avx512f")]
unsafe fn scores_tiles<const T: usize>(
    kt: &[f32],
    q: [*const f32; QR],
    dh: usize,
    t16: usize,
    scores: &mut [f32],
    (first, mask16, peak): (usize, &[f32], &mut [__m512; QR]),
) -> usize {
    let keys = unsafe { kt.as_ptr().add(first * dh * KC) };
    let mut acc = [[_mm512_setzero_ps(); T]; QR];
    for d in 0..dh {
        // SAFETY: d < dh; tile `first + j` is `dh × KC` floats from `keys + j · dh · KC`.
        unsafe {
            let k: [__m512; T] =
                std::array::from_fn(|j| _mm512_loadu_ps(keys.add((j * dh + d) * KC)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let q = _mm512_set1_ps(*q[r].add(d));
                for j in 0..T {
                    acc[j] = _mm512_fmadd_ps(q, k[j], acc[j]);
                }
            }
        }
    }
    // SAFETY: the mask holds the tiles' `(first + T) · KC ≤ tiles · KC` values.
    let mask: [__m512; T] =
        std::array::from_fn(|j| unsafe { _mm512_loadu_ps(mask16.as_ptr().add((first + j) * KC)) });
    for (r, acc) in acc.iter().enumerate() {
        for (j, &acc) in acc.iter().enumerate() {
            let s = _mm512_add_ps(acc, mask[j]);
            peak[r] = _mm512_max_ps(peak[r], s);
            let at = r * t16 + (first + j) * KC;
            // SAFETY: `at + KC ≤ (QR − 1) · t16 + tiles · KC ≤ scores.len()`.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(at), s) };
        }
    }
    T
}

/// `p = exp(p − max)` in place over one row; returns `Σ p`.
///
/// # Safety
/// AVX-512 F is present.
#[target_feature(enable = "avx512f")]
unsafe fn exp_row(p: &mut [f32], max: f32) -> f32 {
    let n = p.len();
    let pp = p.as_mut_ptr();
    let max = _mm512_set1_ps(max);
    let mut sums = [_mm512_setzero_ps(); 2];
    let mut i = 0;
    // SAFETY (all raw accesses): lanes i..i + 16 masked to i..n.
    while i < n {
        let k: __mmask16 = if n - i >= 16 { !0 } else { (1 << (n - i)) - 1 };
        unsafe {
            let e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, pp.add(i)), max));
            _mm512_mask_storeu_ps(pp.add(i), k, e);
            let acc = &mut sums[(i / 16) % 2];
            *acc = _mm512_mask_add_ps(*acc, k, *acc, e);
        }
        i += 16;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(sums[0], sums[1]))
}

/// Rows `0..rows` (≤ [`QB`]) of the context, in blocks of `R` (rows past `rows` repeat the
/// last, not stored), head width `16 · W`: `out[r · stride..][..dh] = (p[r] · V) · inv[r]`,
/// `p[r]` at `probs[r · pstride..]` (`t` values, t = `v.len() / dh`). `R × W` zmm
/// accumulators, one fused multiply-add per row, width step and key, keys in order (the
/// portable context's sums bit for bit).
///
/// # Safety
/// AVX-512 F is present; `probs` holds `rows` rows of t at stride `pstride`, and `out`
/// reaches `(rows − 1) · stride + dh`.
#[target_feature(enable = "avx512f")]
unsafe fn context_rows<const W: usize, const R: usize>(
    probs: &[f32],
    pstride: usize,
    rows: usize,
    v: &[f32],
    inv: &[f32; QB],
    out: &mut [f32],
    stride: usize,
) {
    let dh = 16 * W;
    let t = v.len() / dh;
    for r0 in (0..rows).step_by(R) {
        let p: [*const f32; R] = std::array::from_fn(|r| unsafe {
            probs.as_ptr().add((r0 + r).min(rows - 1) * pstride)
        });
        let mut acc = [[_mm512_setzero_ps(); W]; R];
        for j in 0..t {
            // SAFETY: j < t; row j of v is dh floats at j · dh; each p[r] holds t values.
            unsafe {
                let vr: [__m512; W] =
                    std::array::from_fn(|w| _mm512_loadu_ps(v.as_ptr().add(j * dh + 16 * w)));
                for r in 0..R {
                    let pj = _mm512_set1_ps(*p[r].add(j));
                    for w in 0..W {
                        acc[r][w] = _mm512_fmadd_ps(pj, vr[w], acc[r][w]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate().take(rows - r0) {
            let scale = _mm512_set1_ps(inv[r0 + r]);
            for (w, &acc) in acc.iter().enumerate() {
                // SAFETY: row r0 + r < rows; `(rows − 1) · stride + dh ≤ out.len()`.
                unsafe {
                    let dst = out.as_mut_ptr().add((r0 + r) * stride + 16 * w);
                    _mm512_storeu_ps(dst, _mm512_mul_ps(acc, scale));
                }
            }
        }
    }
}

/// e^x for x ≤ 0, 16 lanes: [`crate::kernels::softmax::exp_nonpositive`]'s range reduction
/// and polynomial (Cephes' expf) in fused multiply-adds, n = round(x·log₂e) by `vrndscaleps`
/// and 2ⁿ applied by `vscalefps`: 14 operations where the portable form's operation-for-
/// operation copy took 27 (the exp was the attention's largest cost after its tiles, 15% of an
/// int8 inference at 256 tokens on an AMX host, `perf record`). Fused, the roundings differ
/// from the portable form's: within 2⁻²³ relative of e^x, 1.5 × that of the portable form
/// (the tests).
#[target_feature(enable = "avx512f")]
fn exp_nonpositive(x: __m512) -> __m512 {
    let c = _mm512_set1_ps;
    let x = _mm512_max_ps(x, c(-87.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, c(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fmadd_ps(n, c(2.121_944_4e-4), _mm512_fnmadd_ps(n, c(0.693_359_4), x));
    let mut p = c(1.987_569_1e-4);
    for k in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_fmadd_ps(p, r, c(k));
    }
    let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), c(1.0));
    _mm512_scalef_ps(e, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys gathered by tile against the one-by-one move, and the masked scores of query rows
    /// read in place against the portable tile plus the mask (same products in the same
    /// order): equal bit for bit, and each row's maximum the largest of its scores, at key
    /// counts around the tile of 16 and the 4-tile step, head widths 8 to 64, the head at the
    /// start, middle and end of its row.
    #[test]
    fn key_gather_and_masked_scores_match_the_portable_ones() {
        if !crate::platform::cpu::features().avx512f {
            return;
        }
        for (t, heads, dh, head) in
            [(16usize, 1, 32, 0), (17, 3, 32, 1), (40, 2, 64, 1), (70, 4, 8, 3), (256, 12, 32, 11)]
        {
            let (w, off, t16) = (heads * dh, head * dh, t.div_ceil(KC) * KC);
            let k: Vec<f32> = (0..t * w).map(|i| ((i * 7919 % 101) as f32 - 50.0) / 16.0).collect();
            let q: Vec<f32> =
                (0..t * w).map(|i| ((i * 104_729 % 89) as f32 - 44.0) / 8.0).collect();
            let mut mask: Vec<f32> =
                (0..t).map(|j| if j % 5 == 4 { -10_000.0 } else { 0.0 }).collect();
            mask.resize(t16, f32::NEG_INFINITY);
            let mut want = vec![0f32; dh * t16];
            for j in 0..t {
                for d in 0..dh {
                    want[(j / KC * dh + d) * KC + j % KC] = k[j * w + off + d];
                }
            }
            let mut got = vec![0f32; dh * t16];
            // SAFETY: AVX-512 F is present (checked).
            let done = unsafe { gather_keys(&k, (w, off, dh), t, &mut got) };
            assert_eq!(done, t / KC * KC, "t {t}");
            got[done * dh..].copy_from_slice(&want[done * dh..]);
            assert_eq!(got, want, "t {t}, dh {dh}, head {head}");
            for i0 in (0..t).step_by(QR) {
                let rows = QR.min(t - i0);
                let row = |r: usize| &q[(i0 + r.min(rows - 1)) * w + off..][..dh];
                let mut scores_got = vec![0f32; QR * t16];
                let mut maxes = [0f32; QR];
                // SAFETY: AVX-512 F is present (checked); shapes as `masked_scores` wants them.
                unsafe {
                    let q = std::array::from_fn(row);
                    masked_scores(&got, q, dh, &mask, t16, &mut scores_got, &mut maxes);
                }
                let mut qt = vec![0f32; dh * QR];
                for r in 0..rows {
                    for d in 0..dh {
                        qt[d * QR + r] = q[(i0 + r) * w + off + d];
                    }
                }
                for (tile, keys) in want.chunks_exact(dh * KC).enumerate() {
                    let acc = super::super::scores_tile(keys, &qt);
                    for (r, acc) in acc.iter().enumerate().take(rows) {
                        let got = &scores_got[r * t16 + tile * KC..][..KC];
                        let mask = &mask[tile * KC..][..KC];
                        let want: Vec<f32> = acc.iter().zip(mask).map(|(a, m)| a + m).collect();
                        assert_eq!(got, want, "t {t}, dh {dh}, rows {i0}+{r}, tile {tile}");
                    }
                }
                for (r, &max) in maxes.iter().enumerate().take(rows) {
                    let row = &scores_got[r * t16..][..t16];
                    assert_eq!(max, row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                }
            }
        }
    }

    /// The fused exp against e^x in float64 and against the portable exp, over its whole
    /// range (x from −100, where −87 and below give e^−87 as the portable form does): a
    /// relative error of at most 2⁻²³ (one step of a float near 1; 0.69 of it measured here,
    /// Cephes' polynomial is good to about that) and within 1.5 of those steps of the portable
    /// form (1.0 measured: the two round differently). A row: each value within 2 steps of
    /// e^(s − max), the sum within 4 of the float64 sum of the exact exps.
    #[test]
    fn exp_is_within_an_ulp_of_the_exact_one() {
        if !crate::platform::cpu::features().avx512f {
            return;
        }
        let ulp = |a: f32, b: f64| {
            ((f64::from(a) - b).abs() / f64::from(b as f32).abs()) / f64::from(f32::EPSILON)
        };
        let xs: Vec<f32> = (0..=320_000).map(|i| -100.0 * i as f32 / 320_000.0).collect();
        let mut worst = (0f64, 0f64);
        for x in xs.chunks_exact(16) {
            let mut got = [0f32; 16];
            // SAFETY: AVX-512 F is present (checked).
            unsafe {
                _mm512_storeu_ps(got.as_mut_ptr(), exp_nonpositive(_mm512_loadu_ps(x.as_ptr())))
            };
            for (&x, &g) in x.iter().zip(&got) {
                let exact = f64::from(x.max(-87.0)).exp();
                let portable = crate::kernels::softmax::exp_nonpositive(x);
                worst.0 = worst.0.max(ulp(g, exact));
                worst.1 = worst.1.max(ulp(g, f64::from(portable)));
            }
        }
        assert!(
            worst.0 <= 1.0 && worst.1 <= 1.5,
            "worst ulp: to e^x {}, to the portable {}",
            worst.0,
            worst.1
        );
        for n in [1, 5, 15, 16, 17, 31, 32, 33, 130, 256] {
            let s: Vec<f32> = (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0).collect();
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut p = s.clone();
            // SAFETY: AVX-512 F is present (checked).
            let sum = unsafe { exp_row(&mut p, max) };
            let exact: Vec<f64> = s.iter().map(|&s| f64::from(s - max).exp()).collect();
            for (&p, &e) in p.iter().zip(&exact) {
                assert!(ulp(p, e) <= 2.0, "row of {n}: {p} vs {e}");
            }
            let want: f64 = exact.iter().sum();
            assert!(
                (f64::from(sum) - want).abs() <= 4.0 * f64::from(f32::EPSILON) * want,
                "sum of {n}"
            );
        }
    }
}
