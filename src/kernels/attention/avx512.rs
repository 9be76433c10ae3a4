//! x86_64 AVX-512 tiles of the fused attention: the scores of 4 query rows against up to 64 keys
//! (four key tiles) and the context of 4 (head width 32) or 2 (64) rows, each with 8 or 16 zmm
//! accumulators. The AVX2 build of the portable tiles has 8 ymm accumulators; compiled for
//! AVX-512 as they are, the same tiles would have 4 zmm ones, too few to cover the
//! fused multiply-add's latency (results/performance.md, session 19).
//!
//! Same products, added in the same order (d for the scores, keys for the context) with fused
//! multiply-adds as the portable tiles: the results are the same bit for bit. The softmax row
//! ([`masked_exp_row`]) sums in another order.

use std::arch::x86_64::*;

use super::{KC, QR};

/// The scores of the tile's `QR` query rows (`qt` `[dh][QR]`) against every key tile of `kt`
/// (`[tiles][dh][KC]`), into `scores` (`[QR][t16]`).
///
/// # Safety
/// AVX-512 F is present; `kt` holds whole tiles of `dh × KC`, `qt` holds `dh × QR` values and
/// `scores` `QR × t16` with `t16 ≥` the keys in `kt`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scores(kt: &[f32], qt: &[f32], dh: usize, t16: usize, scores: &mut [f32]) {
    let tiles = kt.len() / (dh * KC);
    assert!(qt.len() >= dh * QR && scores.len() >= (QR - 1) * t16 + tiles * KC, "scores: shapes");
    let mut tile = 0;
    while tile < tiles {
        // SAFETY: tiles `tile..tile + T` exist (`T ≤ tiles - tile`), bounds asserted above.
        unsafe {
            tile += match tiles - tile {
                4.. => scores_tiles::<4>(kt, qt, dh, t16, scores, tile),
                2 | 3 => scores_tiles::<2>(kt, qt, dh, t16, scores, tile),
                _ => scores_tiles::<1>(kt, qt, dh, t16, scores, tile),
            };
        }
    }
}

/// Key tiles `first..first + T`: `4 × T` zmm accumulators, one fused multiply-add per row,
/// tile and d. Returns `T`.
#[target_feature(enable = "avx512f")]
unsafe fn scores_tiles<const T: usize>(
    kt: &[f32],
    qt: &[f32],
    dh: usize,
    t16: usize,
    scores: &mut [f32],
    first: usize,
) -> usize {
    let keys = unsafe { kt.as_ptr().add(first * dh * KC) };
    let mut acc = [[_mm512_setzero_ps(); T]; QR];
    for d in 0..dh {
        // SAFETY: d < dh; tile `first + j` is `dh × KC` floats from `keys + j · dh · KC`.
        unsafe {
            let k: [__m512; T] =
                std::array::from_fn(|j| _mm512_loadu_ps(keys.add((j * dh + d) * KC)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let q = _mm512_set1_ps(*qt.get_unchecked(d * QR + r));
                for j in 0..T {
                    acc[j] = _mm512_fmadd_ps(q, k[j], acc[j]);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (j, &acc) in acc.iter().enumerate() {
            let at = r * t16 + (first + j) * KC;
            // SAFETY: `at + KC ≤ (QR − 1) · t16 + tiles · KC ≤ scores.len()`.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(at), acc) };
        }
    }
    T
}

/// The context of `rows` (≤ `QR`) query rows: `out[r · stride..][..dh] = (probs[r] · V) ·
/// inv[r]`, `probs` `[QR][t]`, `v` `[t][dh]`, for head widths 32 and 64 (else `false`, nothing
/// written).
///
/// # Safety
/// AVX-512 F is present; `probs` holds `rows × t` values, `v` `t × dh`, and `out` reaches
/// `(rows − 1) · stride + dh`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn context(
    probs: &[f32],
    t: usize,
    rows: usize,
    v: &[f32],
    dh: usize,
    inv: &[f32; QR],
    out: &mut [f32],
    stride: usize,
) -> bool {
    assert!(
        rows <= QR
            && probs.len() >= rows * t
            && v.len() >= t * dh
            && out.len() >= (rows - 1) * stride + dh,
        "context: shapes"
    );
    // SAFETY (both arms): bounds asserted above; each call reads rows r0..r0 + R (clamped to
    // `rows`) and writes only those.
    match dh {
        32 => unsafe { context_rows::<2, 4>(probs, t, 0, rows, v, inv, out, stride) },
        64 => {
            for r0 in (0..rows).step_by(2) {
                unsafe { context_rows::<4, 2>(probs, t, r0, rows, v, inv, out, stride) };
            }
        }
        _ => return false,
    }
    true
}

/// Rows `r0..r0 + R` (those below `rows`; the others repeat the last) of the context, head
/// width `16 · W`: `R × W` zmm accumulators, one fused multiply-add per row, width step and key.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn context_rows<const W: usize, const R: usize>(
    probs: &[f32],
    t: usize,
    r0: usize,
    rows: usize,
    v: &[f32],
    inv: &[f32; QR],
    out: &mut [f32],
    stride: usize,
) {
    let dh = 16 * W;
    let p: [*const f32; R] =
        std::array::from_fn(|r| unsafe { probs.as_ptr().add((r0 + r).min(rows - 1) * t) });
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
    for (r, acc) in acc.iter().enumerate().take(rows.saturating_sub(r0)) {
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

/// [`super::masked_exp_row`] in AVX-512: `p = exp(s + m − max)`, returns `Σ p`. The exp is
/// [`exp_nonpositive`](crate::kernels::softmax)'s, operation for operation (the same `p` bit
/// for bit); the maximum and the sum run in four accumulators each (the portable form's one
/// chain of 8-lane adds and maxes was half its time), so the sum may differ in its last bits.
/// The exp was most of what the attention spent outside its tiles (results/performance.md,
/// session 19).
///
/// # Safety
/// AVX-512 F is present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn masked_exp_row(s: &[f32], m: &[f32], p: &mut [f32]) -> f32 {
    let n = p.len();
    assert!(s.len() >= n && m.len() >= n, "masked_exp_row: shapes");
    let (sp, mp, pp) = (s.as_ptr(), m.as_ptr(), p.as_mut_ptr());
    // Lanes `i..i + 16` of a row of n, as a mask (all 16 but in the last partial step).
    let lanes = |i: usize| -> __mmask16 { if n - i >= 16 { !0 } else { (1 << (n - i)) - 1 } };
    // SAFETY (all raw accesses): lanes i..i + 16 masked to i..n, n ≤ every slice's length.
    unsafe {
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut maxes = [ninf; 4];
        let mut i = 0;
        while i < n {
            let k = lanes(i);
            let v = _mm512_add_ps(
                _mm512_mask_loadu_ps(ninf, k, sp.add(i)),
                _mm512_maskz_loadu_ps(k, mp.add(i)),
            );
            _mm512_mask_storeu_ps(pp.add(i), k, v);
            let acc = &mut maxes[(i / 16) % 4];
            *acc = _mm512_max_ps(*acc, v);
            i += 16;
        }
        let max = _mm512_reduce_max_ps(_mm512_max_ps(
            _mm512_max_ps(maxes[0], maxes[1]),
            _mm512_max_ps(maxes[2], maxes[3]),
        ));
        let max = _mm512_set1_ps(max);
        let mut sums = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i < n {
            let k = lanes(i);
            let e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, pp.add(i)), max));
            _mm512_mask_storeu_ps(pp.add(i), k, e);
            let acc = &mut sums[(i / 16) % 4];
            *acc = _mm512_mask_add_ps(*acc, k, *acc, e);
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(sums[0], sums[1]),
            _mm512_add_ps(sums[2], sums[3]),
        ))
    }
}

/// `crate::kernels::softmax::exp_nonpositive`, 16 lanes: the same constants and operations in
/// the same order, no fused multiply-adds.
#[target_feature(enable = "avx512f")]
fn exp_nonpositive(x: __m512) -> __m512 {
    const MAGIC: f32 = 12_582_912.0;
    let c = _mm512_set1_ps;
    let x = _mm512_max_ps(x, c(-87.0));
    let shifted = _mm512_add_ps(_mm512_mul_ps(x, c(std::f32::consts::LOG2_E)), c(MAGIC));
    let n = _mm512_sub_ps(shifted, c(MAGIC));
    let r = _mm512_add_ps(
        _mm512_sub_ps(x, _mm512_mul_ps(n, c(0.693_359_4))),
        _mm512_mul_ps(n, c(2.121_944_4e-4)),
    );
    let mut p = c(1.987_569_1e-4);
    for k in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_add_ps(_mm512_mul_ps(p, r), c(k));
    }
    let e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), c(1.0));
    let n_bits =
        _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(MAGIC.to_bits() as i32));
    let scale = _mm512_slli_epi32::<23>(_mm512_add_epi32(n_bits, _mm512_set1_epi32(127)));
    _mm512_mul_ps(e, _mm512_castsi512_ps(scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-lane exp against the portable one, bit for bit over its whole range, and a
    /// softmax row against the portable row at lengths around the 16-lane step: the same
    /// values, the sum within a few ulp (another order).
    #[test]
    fn exp_and_softmax_row_match_the_portable_ones() {
        if !crate::platform::cpu::features().avx512f {
            return;
        }
        let xs: Vec<f32> = (0..=160_000).map(|i| -90.0 * i as f32 / 160_000.0).collect();
        for x in xs.chunks_exact(16) {
            let mut got = [0f32; 16];
            // SAFETY: AVX-512 F is present (checked).
            unsafe {
                let e = exp_nonpositive(_mm512_loadu_ps(x.as_ptr()));
                _mm512_storeu_ps(got.as_mut_ptr(), e);
            }
            for (&x, &g) in x.iter().zip(&got) {
                let want = crate::kernels::softmax::exp_nonpositive(x);
                assert_eq!(g.to_bits(), want.to_bits(), "exp({x})");
            }
        }
        for n in [1, 5, 15, 16, 17, 63, 64, 65, 130] {
            let s: Vec<f32> = (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0).collect();
            let m: Vec<f32> = (0..n).map(|i| if i % 7 == 6 { -10_000.0 } else { 0.0 }).collect();
            let (mut want, mut got) = (vec![0f32; n], vec![0f32; n]);
            let want_sum = crate::kernels::softmax::masked_exp_row(&s, &m, &mut want);
            // SAFETY: AVX-512 F is present (checked).
            let got_sum = unsafe { masked_exp_row(&s, &m, &mut got) };
            assert_eq!(got, want, "row of {n}");
            assert!((got_sum - want_sum).abs() <= 4.0 * f32::EPSILON * want_sum, "sum of {n}");
        }
    }
}
