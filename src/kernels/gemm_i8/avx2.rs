//! The x86_64 AVX2 + FMA micro-kernel of [`super::linear`]: 4 rows × 16 channels, u8 × s8
//! `vpmaddubsw` products, two summed per i16 lane, widened by `vpmaddwd` (see the module doc
//! of [`super`] for the layout and why the i16 stage is exact).

use std::arch::x86_64::*;

use super::{BlockConstants, BlockLanes, MR, NB, PackedWeights, Rescale, add_corrections};

/// # Safety
/// AVX2 and FMA must be present; shapes as [`super::linear`] asserts them.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn linear(
    x: &[u8],
    m: usize,
    w: &PackedWeights,
    rescale: &Rescale,
    y: &mut [f32],
) {
    let kq = w.quads();
    let n = w.n;
    let xp = x.as_ptr();
    let ones = _mm256_set1_epi16(1);
    for block in 0..n.div_ceil(NB) {
        let wp = unsafe { w.data.as_ptr().add(block * kq * NB * 4) };
        let BlockConstants { c0, width, lanes } = BlockConstants::new(w, rescale, block);
        let BlockLanes { scales: cs, bias, sums } = lanes;
        let (cs, bias, sums) = unsafe {
            (
                [_mm256_loadu_ps(cs.as_ptr()), _mm256_loadu_ps(cs.as_ptr().add(8))],
                [_mm256_loadu_ps(bias.as_ptr()), _mm256_loadu_ps(bias.as_ptr().add(8))],
                [
                    _mm256_loadu_si256(sums.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(sums.as_ptr().add(8) as *const __m256i),
                ],
            )
        };
        for m0 in (0..m).step_by(MR) {
            let rows: [usize; MR] = std::array::from_fn(|r| (m0 + r).min(m - 1));
            let mut a = [[_mm256_setzero_si256(); 2]; MR];
            // The first row tile streams the block's weights from L3 or memory (the model's
            // 10.6 MB do not stay in L2); it also prefetches the next block, two lines per
            // step, so the next block's first tile finds it in L2 (into L1 it would evict the
            // current block at k = 1536). It pays at 16 tokens, not at 128: measure with
            // linear_i8_6_layers (tools/benches) before changing it.
            let next = if m0 == 0 && block + 1 < n.div_ceil(NB) { NB * 4 * kq } else { 0 };
            for q in (0..kq).step_by(2) {
                unsafe {
                    if next > 0 {
                        let p = wp.add(next + q * NB * 4);
                        _mm_prefetch::<_MM_HINT_T1>(p);
                        _mm_prefetch::<_MM_HINT_T1>(p.add(64));
                    }
                    let w = |q: usize, h: usize| {
                        _mm256_loadu_si256(wp.add(q * NB * 4 + 32 * h) as *const __m256i)
                    };
                    let (w0, w1, v0, v1) = (w(q, 0), w(q, 1), w(q + 1, 0), w(q + 1, 1));
                    for r in 0..MR {
                        let x = xp.add(rows[r] * kq * 4 + 4 * q) as *const i32;
                        let xa = _mm256_set1_epi32(x.read_unaligned());
                        let xb = _mm256_set1_epi32(x.add(1).read_unaligned());
                        // i16 lanes: four products each, within range by construction.
                        let s0 = _mm256_add_epi16(
                            _mm256_maddubs_epi16(xa, w0),
                            _mm256_maddubs_epi16(xb, v0),
                        );
                        let s1 = _mm256_add_epi16(
                            _mm256_maddubs_epi16(xa, w1),
                            _mm256_maddubs_epi16(xb, v1),
                        );
                        a[r][0] = _mm256_add_epi32(a[r][0], _mm256_madd_epi16(s0, ones));
                        a[r][1] = _mm256_add_epi32(a[r][1], _mm256_madd_epi16(s1, ones));
                    }
                }
            }
            // The block's left-out weights (a few per block), added in i32 while the rows' x
            // are still in L1: exact, and no scattered pass over y afterwards.
            if w.block_fixes[block] < w.block_fixes[block + 1] {
                let mut t = [[0i32; NB]; MR];
                for (t, a) in t.iter_mut().zip(&a) {
                    let p = t.as_mut_ptr() as *mut __m256i;
                    unsafe {
                        _mm256_storeu_si256(p, a[0]);
                        _mm256_storeu_si256(p.add(1), a[1]);
                    }
                }
                add_corrections(w, block, x, kq * 4, &rows, &mut t);
                for (a, t) in a.iter_mut().zip(&t) {
                    let p = t.as_ptr() as *const __m256i;
                    unsafe { *a = [_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1))] };
                }
            }
            for (r, acc_r) in a.iter().enumerate() {
                let row = m0 + r;
                if row >= m {
                    break;
                }
                let rs = _mm256_set1_ps(rescale.rows[row]);
                let zero = _mm256_set1_epi32(rescale.zeros[row]);
                let out: [__m256; 2] = std::array::from_fn(|h| {
                    let scale = _mm256_mul_ps(rs, cs[h]);
                    let exact = _mm256_sub_epi32(acc_r[h], _mm256_mullo_epi32(zero, sums[h]));
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), scale, bias[h])
                });
                let dst = &mut y[row * n + c0..][..width];
                if width == NB {
                    unsafe {
                        _mm256_storeu_ps(dst.as_mut_ptr(), out[0]);
                        _mm256_storeu_ps(dst.as_mut_ptr().add(8), out[1]);
                    }
                } else {
                    let mut lanes = [0f32; NB];
                    unsafe {
                        _mm256_storeu_ps(lanes.as_mut_ptr(), out[0]);
                        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), out[1]);
                    }
                    dst.copy_from_slice(&lanes[..width]);
                }
            }
        }
    }
}
