//! x86_64 AVX-512 form of [`super::quantize_row_split`]: four passes over the row, 16 lanes
//! wide with masked tails, where the portable form makes five, 8 wide (chunk peaks, the outlier
//! scan, a copy with the outliers zeroed, its minimum and maximum, the quantization) with a
//! reduction per chunk.
//!
//! 1. Lane-wise (lane l holds positions ≡ l mod 16) magnitude peaks.
//! 2. The outliers: the lane peaks' maxima by lane mod 4 are four values at distinct
//!    positions, so their minimum bounds the row's 4th largest magnitude from below, and only
//!    values above it are looked at one by one (a compare into a mask per chunk).
//! 3. The rest's minimum and maximum, the outliers' lanes masked off.
//! 4. The quantization, the outliers' bytes then set to the zero point.
//!
//! Why: the portable form was a tenth of an int8 inference at 256 tokens on this host (perf
//! record, session 21); this form takes about two thirds of its time per row (384 and 1536
//! wide). The result is the portable
//! form's bit for bit (same outliers, same range, round-to-nearest-even conversion).

use std::arch::x86_64::*;

use super::{ACTIVATION_MAX, Largest, OUTLIERS, RowQuant, from_keys, insert, magnitude_bits};

/// `None` where the portable form must decide (an empty row, a non-finite value, a zero
/// range).
///
/// # Safety
/// AVX-512 F is present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn quantize_row_split(x: &[f32], out: &mut [u8]) -> Option<(RowQuant, Largest)> {
    let k = x.len();
    if k == 0 || out.len() != k {
        return None;
    }
    // Lanes `i..i + 16` of the row, as a mask (all 16 but in the last partial step).
    let lanes = |i: usize| -> __mmask16 { if k - i >= 16 { !0 } else { (1 << (k - i)) - 1 } };
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    // Masked-off lanes read 0: no effect on a magnitude peak or on a range holding 0.
    // SAFETY (every raw access below): masked to positions below k = x.len() = out.len().
    let load = |i: usize, m: __mmask16| unsafe { _mm512_maskz_loadu_ps(m, x.as_ptr().add(i)) };
    let bits = |v: __m512| _mm512_and_si512(_mm512_castps_si512(v), abs);

    // 1. Lane-wise magnitude peaks.
    let mut peak = _mm512_setzero_si512();
    for i in (0..k).step_by(16) {
        peak = _mm512_max_epu32(peak, bits(load(i, lanes(i))));
    }
    // Lane l of `quarters` is the largest magnitude at positions ≡ l (mod 4): four values at
    // distinct positions, so their minimum bounds the row's 4th largest from below.
    const _: () = assert!(OUTLIERS == 4);
    let quarters = _mm_max_epu32(
        _mm_max_epu32(_mm512_castsi512_si128(peak), _mm512_extracti32x4_epi32::<1>(peak)),
        _mm_max_epu32(_mm512_extracti32x4_epi32::<2>(peak), _mm512_extracti32x4_epi32::<3>(peak)),
    );
    let mut lanes4 = [0u32; 4];
    // SAFETY: 4 u32.
    unsafe { _mm_storeu_si128(lanes4.as_mut_ptr().cast(), quarters) };
    // NaN's magnitude bits are above infinity's.
    if lanes4.iter().any(|&p| p >= f32::INFINITY.to_bits()) {
        return None;
    }

    // 2. The outliers, as [`super::largest_above`] finds them: values above the threshold in
    // index order (an equal one loses the tie), the threshold starting just below the bound.
    let start = lanes4.iter().fold(u32::MAX, |m, &p| m.min(p)).saturating_sub(1);
    // The threshold changes only where a chunk had a value above it: recomputed there alone,
    // the chunks without one carry no dependency from one to the next (reloading it from
    // `keys` after every chunk made the scan about half of this function's time).
    let mut threshold = _mm512_set1_epi32(start as i32);
    let mut keys = [0u64; OUTLIERS];
    for i in (0..k).step_by(16) {
        let v = load(i, lanes(i));
        let mut above = _mm512_cmpgt_epu32_mask(bits(v), threshold);
        if above != 0 {
            while above != 0 {
                let j = i + above.trailing_zeros() as usize;
                let key = (u64::from(magnitude_bits(x[j])) << 32) | u64::from(!(j as u32));
                insert(&mut keys, key);
                above &= above - 1;
            }
            threshold = _mm512_set1_epi32(start.max((keys[OUTLIERS - 1] >> 32) as u32) as i32);
        }
    }
    let largest = from_keys(x, &keys);

    // 3. The range of the rest: chunks holding an outlier read with its lane masked off.
    let mut skip: [(usize, __mmask16); OUTLIERS] = [(0, 0); OUTLIERS];
    let mut by_index = largest.index;
    by_index[..largest.len].sort_unstable();
    let mut n = 0;
    for &i in &by_index[..largest.len] {
        let (chunk, bit) = (i as usize / 16 * 16, 1 << (i % 16));
        if n > 0 && skip[n - 1].0 == chunk {
            skip[n - 1].1 |= bit;
        } else {
            skip[n] = (chunk, bit);
            n += 1;
        }
    }
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut from = 0;
    // The stretches between the outliers' chunks without a look at them, then each such chunk.
    for &(chunk, lanes_out) in &skip[..n] {
        for i in (from..chunk).step_by(16) {
            let v = load(i, lanes(i));
            (lo, hi) = (_mm512_min_ps(lo, v), _mm512_max_ps(hi, v));
        }
        let v = load(chunk, lanes(chunk) & !lanes_out);
        (lo, hi) = (_mm512_min_ps(lo, v), _mm512_max_ps(hi, v));
        from = chunk + 16;
    }
    for i in (from..k).step_by(16) {
        let v = load(i, lanes(i));
        (lo, hi) = (_mm512_min_ps(lo, v), _mm512_max_ps(hi, v));
    }
    let (lo, hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
    let range = hi - lo;
    if !(range > 0.0 && range.is_finite()) {
        return None;
    }

    // 4. The quantization.
    let inv = f32::from(ACTIVATION_MAX) / range;
    let zero = super::round_even(-lo * inv);
    let (scale, zeros) = (_mm512_set1_ps(inv), _mm512_set1_epi32(zero));
    let (floor, top) = (_mm512_setzero_si512(), _mm512_set1_epi32(i32::from(ACTIVATION_MAX)));
    for i in (0..k).step_by(16) {
        // The default rounding, to nearest even: `round_even` for |v · inv| ≤ 127 (an
        // outlier's lane may be anything: it is overwritten below).
        let q =
            _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(load(i, lanes(i)), scale)), zeros);
        let q = _mm512_min_epi32(_mm512_max_epi32(q, floor), top);
        // SAFETY: as the loads. (A narrowing store straight to memory is slow on some CPUs.)
        unsafe {
            let dst = out.as_mut_ptr().add(i);
            match k - i >= 16 {
                true => _mm_storeu_si128(dst.cast(), _mm512_cvtepi32_epi8(q)),
                false => _mm512_mask_cvtepi32_storeu_epi8(dst.cast(), lanes(i), q),
            }
        }
    }
    for (i, _) in largest.iter() {
        out[i] = zero as u8;
    }
    Some((RowQuant { scale: range / f32::from(ACTIVATION_MAX), zero }, largest))
}
