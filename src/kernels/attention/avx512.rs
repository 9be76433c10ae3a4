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

/// The scores of `QR` query rows (`q[r]`, `dh` values each, read where they are: no transposed
/// copy) against every key tile of `kt` (`[tiles][dh][KC]`), into `scores` (`[QR][t16]`).
///
/// # Safety
/// AVX-512 F is present; `kt` holds whole tiles of `dh × KC`, every `q[r]` `dh` values and
/// `scores` `QR × t16` with `t16 ≥` the keys in `kt`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scores(
    kt: &[f32],
    q: [&[f32]; QR],
    dh: usize,
    t16: usize,
    scores: &mut [f32],
) {
    let tiles = kt.len() / (dh * KC);
    assert!(
        q.iter().all(|q| q.len() >= dh) && scores.len() >= (QR - 1) * t16 + tiles * KC,
        "scores: shapes"
    );
    let q = q.map(<[f32]>::as_ptr);
    let mut tile = 0;
    while tile < tiles {
        // SAFETY: tiles `tile..tile + T` exist (`T ≤ tiles - tile`), bounds asserted above.
        unsafe {
            tile += match tiles - tile {
                4.. => scores_tiles::<4>(kt, q, dh, t16, scores, tile),
                2 | 3 => scores_tiles::<2>(kt, q, dh, t16, scores, tile),
                _ => scores_tiles::<1>(kt, q, dh, t16, scores, tile),
            };
        }
    }
}

/// Key tiles `first..first + T`: `4 × T` zmm accumulators, one fused multiply-add per row,
/// tile and d. Returns `T`.
///
/// # Safety
/// As [`scores`]'s; `q[r]` points at `dh` values.
#[target_feature(enable = "avx512f")]
unsafe fn scores_tiles<const T: usize>(
    kt: &[f32],
    q: [*const f32; QR],
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
                let q = _mm512_set1_ps(*q[r].add(d));
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

    /// Keys gathered by tile against the one-by-one move, and the scores of query rows read in
    /// place against the portable tile (same products in the same order): equal bit for bit,
    /// at key counts around the tile of 16 and the 4-tile step, head widths 8 to 64, the head
    /// at the start, middle and end of its row.
    #[test]
    fn key_gather_and_scores_match_the_portable_ones() {
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
                // SAFETY: AVX-512 F is present (checked); shapes as `scores` wants them.
                unsafe { scores(&got, std::array::from_fn(row), dh, t16, &mut scores_got) };
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
                        assert_eq!(got, acc, "t {t}, dh {dh}, rows {i0}+{r}, tile {tile}");
                    }
                }
            }
        }
    }

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
