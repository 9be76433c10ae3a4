//! The aarch64 form of [`super::masked_exp_row`]: two passes over the row in q registers, the
//! exp with fused multiply-adds and `frintn`.
//!
//! Why by hand: LLVM vectorized the portable row, but without fusing (Rust does not contract
//! `a * b + c`), with the final sum in scalar registers; the counts before and after are in
//! results/boards.md.

use std::arch::aarch64::*;

/// Cephes' expf constants (as [`super::exp_nonpositive`]): ln 2 split in two, the degree-5
/// polynomial's coefficients from the highest.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const POLY: [f32; 6] =
    [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
/// Below this, e^x is nothing in a softmax sum; clamping keeps n ≥ −124, so adding n to the
/// exponent bits of e^r (≥ 2^−0.5) leaves a normal float.
const FLOOR: f32 = -86.0;

/// e^x for x ≤ 0, the scalar twin of [`exp4`]: the same operations in the same order, so both
/// round alike (the tail of a row, and the reference the tests hold [`exp4`] to). The
/// polynomial in Estrin's form, which shares r² with the last step; 2ⁿ applied by adding n to
/// the exponent bits.
#[inline(always)]
pub(super) fn exp_fused(x: f32) -> f32 {
    let x = x.max(FLOOR);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let r2 = r * r;
    let a = POLY[4].mul_add(r, POLY[5]);
    let b = POLY[2].mul_add(r, POLY[3]);
    let c = POLY[0].mul_add(r, POLY[1]);
    let p = c.mul_add(r2 * r2, b.mul_add(r2, a));
    let e = p.mul_add(r2, r) + 1.0;
    f32::from_bits(e.to_bits().wrapping_add(((n as i32) << 23) as u32))
}

/// [`exp_fused`] on four lanes.
#[inline(always)]
unsafe fn exp4(x: float32x4_t) -> float32x4_t {
    unsafe {
        let x = vmaxnmq_f32(x, vdupq_n_f32(FLOOR));
        let n = vcvtnq_s32_f32(vmulq_f32(x, vdupq_n_f32(std::f32::consts::LOG2_E)));
        let nf = vcvtq_f32_s32(n);
        let r = vfmaq_f32(x, nf, vdupq_n_f32(-LN2_HI));
        let r = vfmaq_f32(r, nf, vdupq_n_f32(-LN2_LO));
        let r2 = vmulq_f32(r, r);
        let c = |k: usize| vdupq_n_f32(POLY[k]);
        let a = vfmaq_f32(c(5), c(4), r);
        let b = vfmaq_f32(c(3), c(2), r);
        let cc = vfmaq_f32(c(1), c(0), r);
        let p = vfmaq_f32(vfmaq_f32(a, b, r2), cc, vmulq_f32(r2, r2));
        let e = vaddq_f32(vfmaq_f32(r, p, r2), vdupq_n_f32(1.0));
        vreinterpretq_f32_s32(vaddq_s32(vreinterpretq_s32_f32(e), vshlq_n_s32::<23>(n)))
    }
}

/// `p = exp(s + m − max)` over the first `p.len()` values; returns `Σ p`.
#[inline(always)]
pub(super) fn masked_exp_row(s: &[f32], m: &[f32], p: &mut [f32]) -> f32 {
    let t = p.len().min(s.len()).min(m.len());
    let (s, m, p) = (&s[..t], &m[..t], &mut p[..t]);
    let body = t / 4 * 4;
    // SAFETY: NEON is the aarch64 baseline; every access below is at an index < body ≤ t.
    let mut max = unsafe {
        let mut hi = vdupq_n_f32(f32::NEG_INFINITY);
        for i in (0..body).step_by(4) {
            let v = vaddq_f32(vld1q_f32(s.as_ptr().add(i)), vld1q_f32(m.as_ptr().add(i)));
            vst1q_f32(p.as_mut_ptr().add(i), v);
            hi = vmaxq_f32(hi, v);
        }
        vmaxvq_f32(hi)
    };
    for i in body..t {
        p[i] = s[i] + m[i];
        max = max.max(p[i]);
    }
    // SAFETY: p holds t values, read and written in place.
    unsafe { exp_shifted(p.as_ptr(), p.as_mut_ptr(), t, max) }
}

/// `p = exp(s − max)` over the first `p.len()` values; returns `Σ p`.
#[inline(always)]
pub(super) fn shifted_exp_row(s: &[f32], max: f32, p: &mut [f32]) -> f32 {
    let t = p.len().min(s.len());
    // SAFETY: both hold at least t values.
    unsafe { exp_shifted(s.as_ptr(), p.as_mut_ptr(), t, max) }
}

/// `dst[i] = exp(src[i] − max)` for i < t (`src` may be `dst`); returns the sum.
///
/// # Safety
/// `src` and `dst` are valid for `t` values.
#[inline(always)]
unsafe fn exp_shifted(src: *const f32, dst: *mut f32, t: usize, max: f32) -> f32 {
    let body = t / 4 * 4;
    // SAFETY: NEON is the aarch64 baseline; accesses at i < t, the caller's bounds.
    unsafe {
        let shift = vdupq_n_f32(max);
        let mut sum = vdupq_n_f32(0.0);
        for i in (0..body).step_by(4) {
            let e = exp4(vsubq_f32(vld1q_f32(src.add(i)), shift));
            vst1q_f32(dst.add(i), e);
            sum = vaddq_f32(sum, e);
        }
        let mut total = vaddvq_f32(sum);
        for i in body..t {
            let e = exp_fused(*src.add(i) - max);
            *dst.add(i) = e;
            total += e;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_lanes_round_as_the_scalar_twin() {
        let xs: Vec<f32> = (0..=40_000).map(|i| -100.0 * i as f32 / 40_000.0).collect();
        for c in xs.chunks_exact(4) {
            // SAFETY: NEON is the aarch64 baseline; c holds 4 values.
            let got = unsafe {
                let mut out = [0f32; 4];
                vst1q_f32(out.as_mut_ptr(), exp4(vld1q_f32(c.as_ptr())));
                out
            };
            for (g, &x) in got.iter().zip(c) {
                assert_eq!(g.to_bits(), exp_fused(x).to_bits(), "exp({x})");
                let want = x.max(FLOOR).exp();
                assert!((g - want).abs() <= 4.0 * f32::EPSILON * want, "exp({x}): {g} vs {want}");
            }
        }
    }

    #[test]
    fn rows_match_the_scalar_twin_at_every_tail_length() {
        for t in 0..=21 {
            let s: Vec<f32> = (0..t).map(|i| ((i * 7919) % 23) as f32 * 0.37 - 4.0).collect();
            let m: Vec<f32> = (0..t).map(|i| if i % 5 == 3 { -10_000.0 } else { 0.0 }).collect();
            let mut p = vec![f32::NAN; t];
            let sum = masked_exp_row(&s, &m, &mut p);
            let max = s.iter().zip(&m).map(|(s, m)| s + m).fold(f32::NEG_INFINITY, f32::max);
            let want: Vec<f32> = s.iter().zip(&m).map(|(s, m)| exp_fused(s + m - max)).collect();
            assert_eq!(p, want, "t = {t}");
            let total: f32 = want.iter().sum();
            assert!((sum - total).abs() <= 1e-6 * total.max(1.0), "t = {t}: {sum} vs {total}");
        }
    }
}
