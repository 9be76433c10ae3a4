//! x86_64 AVX2 kernel for [`super::outliers`]: 16 channels per step; two inputs' 16 weights
//! interleaved byte by byte and widened to i16 pairs, so `vpmaddwd` against the two 16-bit
//! values broadcast as a pair adds both products into each channel's i32 at once.

use std::arch::x86_64::*;

use super::NB;
use crate::kernels::quantize::{OUTLIERS, Outliers};

// Values are taken in pairs.
const _: () = assert!(OUTLIERS.is_multiple_of(2));

/// Channels `0..full` (a multiple of 16) of one row.
///
/// # Safety
/// AVX2 and FMA are present; every `o.index[j] · n + full ≤ columns.len()`; `channels` and `y`
/// hold `full` values.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn add_row(
    o: &Outliers,
    columns: &[i8],
    n: usize,
    full: usize,
    channels: &[f32],
    y: &mut [f32],
) {
    // SAFETY: the caller's bounds; loads of 16 bytes / 8 floats at c0 + 16 ≤ full.
    unsafe {
        let cols = o.index.map(|k| columns.as_ptr().add(k as usize * n));
        // (q[2p], q[2p + 1]) as one i32 lane pattern for vpmaddwd.
        let pairs: [__m256i; OUTLIERS / 2] = std::array::from_fn(|p| {
            let lo = o.q[2 * p] as u16 as u32;
            let hi = o.q[2 * p + 1] as u16 as u32;
            _mm256_set1_epi32((lo | (hi << 16)) as i32)
        });
        let scale = _mm256_set1_ps(o.scale);
        let mut c0 = 0;
        while c0 < full {
            let mut acc = [_mm256_setzero_si256(); 2];
            for (p, &pair) in pairs.iter().enumerate() {
                let a = _mm_loadu_si128(cols[2 * p].add(c0).cast());
                let b = _mm_loadu_si128(cols[2 * p + 1].add(c0).cast());
                // Channels 0-7 and 8-15: (a[c], b[c]) byte pairs, sign-extended to i16 pairs.
                let lo = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(a, b));
                let hi = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(a, b));
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(lo, pair));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(hi, pair));
            }
            for (i, &acc) in acc.iter().enumerate() {
                let at = c0 + 8 * i;
                let ch = _mm256_mul_ps(scale, _mm256_loadu_ps(channels.as_ptr().add(at)));
                let yv = _mm256_loadu_ps(y.as_ptr().add(at));
                let out = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), ch, yv);
                _mm256_storeu_ps(y.as_mut_ptr().add(at), out);
            }
            c0 += NB;
        }
    }
}
