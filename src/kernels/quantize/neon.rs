//! The aarch64 form of [`super::quantize_row_split`] for rows of whole chunks of 16: two
//! passes over the row instead of the portable form's four (peaks, copy, min/max, quantize).
//!
//! Pass 1 keeps each chunk's peak magnitude, minimum and maximum; the outliers come from the
//! peaks as in the portable form, and the rest's range from the chunks' minima and maxima, the
//! few chunks holding an outlier read again without it. Pass 2 quantizes with `fcvtns` (the
//! same round-half-even as the portable form's) and saturating narrows, then puts the zero
//! point at the outliers. Results are identical to the portable form's (the tests below hold
//! them to it); rows it does not take (non-finite, constant, longer than the peaks' buffer)
//! go to the portable form.
//!
//! Why by hand: LLVM vectorized each portable pass, but four passes and a copy read the row
//! five times (counts before and after: results/boards.md).

use std::arch::aarch64::*;

use super::{ACTIVATION_MAX, Largest, MAX_CHUNKS, RowQuant, outliers_and_rest_range};

/// `None` where the portable form must decide (see the module doc).
#[inline(always)]
pub(super) fn quantize_row_split(x: &[f32], out: &mut [u8]) -> Option<(RowQuant, Largest)> {
    let k = x.len();
    let chunks = k / 16;
    if k == 0 || !k.is_multiple_of(16) || chunks > MAX_CHUNKS || out.len() != k {
        return None;
    }
    let mut peaks = [0u32; MAX_CHUNKS];
    let mut lows = [0f32; MAX_CHUNKS];
    let mut highs = [0f32; MAX_CHUNKS];
    // SAFETY: NEON is the aarch64 baseline; chunk i reads x[16i..16i + 16], i < chunks = k / 16.
    let lane_peaks = unsafe {
        let abs = vdupq_n_u32(0x7fff_ffff);
        let mut worst = vdupq_n_u32(0);
        for i in 0..chunks {
            let v = vld1q_f32_x4(x.as_ptr().add(16 * i));
            let bits = |v: float32x4_t| vandq_u32(vreinterpretq_u32_f32(v), abs);
            let peak = vmaxq_u32(vmaxq_u32(bits(v.0), bits(v.1)), vmaxq_u32(bits(v.2), bits(v.3)));
            worst = vmaxq_u32(worst, peak);
            peaks[i] = vmaxvq_u32(peak);
            lows[i] = vminvq_f32(vminq_f32(vminq_f32(v.0, v.1), vminq_f32(v.2, v.3)));
            highs[i] = vmaxvq_f32(vmaxq_f32(vmaxq_f32(v.0, v.1), vmaxq_f32(v.2, v.3)));
        }
        worst
    };
    // SAFETY: NEON is the aarch64 baseline.
    let (worst, bound) = unsafe { (vmaxvq_u32(lane_peaks), vminvq_u32(lane_peaks)) };
    if worst >= f32::INFINITY.to_bits() {
        return None;
    }
    // Lane l of `lane_peaks` is the largest magnitude at the positions ≡ l (mod 4): four
    // values from disjoint positions, so their minimum bounds the 4th largest from below, with
    // no pass over the peaks.
    const _: () = assert!(super::OUTLIERS == 4);
    let (largest, lo, range) = outliers_and_rest_range(
        x,
        &peaks[..chunks],
        &mut lows[..chunks],
        &mut highs[..chunks],
        bound,
    )?;
    let inv = f32::from(ACTIVATION_MAX) / range;
    let zero = super::round_even(-lo * inv);
    // SAFETY: as pass 1; chunk i writes out[16i..16i + 16], out.len() = k.
    unsafe {
        let (scale, zeros, top) = (vdupq_n_f32(inv), vdupq_n_s32(zero), vdupq_n_u8(ACTIVATION_MAX));
        for i in 0..chunks {
            let v = vld1q_f32_x4(x.as_ptr().add(16 * i));
            let q = |v: float32x4_t| vaddq_s32(vcvtnq_s32_f32(vmulq_f32(v, scale)), zeros);
            let lo8 = vqmovn_u16(vcombine_u16(vqmovun_s32(q(v.0)), vqmovun_s32(q(v.1))));
            let hi8 = vqmovn_u16(vcombine_u16(vqmovun_s32(q(v.2)), vqmovun_s32(q(v.3))));
            vst1q_u8(out.as_mut_ptr().add(16 * i), vminq_u8(vcombine_u8(lo8, hi8), top));
        }
    }
    for (i, _) in largest.iter() {
        out[i] = zero as u8;
    }
    Some((RowQuant { scale: range / f32::from(ACTIVATION_MAX), zero }, largest))
}
