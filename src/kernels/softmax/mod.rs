//! Softmax rows with the attention mask added, in one pass while the row sits in L1.

#[cfg(not(target_arch = "aarch64"))]
use super::sum_of;

#[cfg(target_arch = "arm")]
mod armv7;
#[cfg(target_arch = "aarch64")]
mod neon;

/// e^x for x ≤ 0 to ~2 ulp (Cephes' expf polynomial), in a form that vectorizes: range
/// reduction by n = round(x·log₂e), a degree-5 polynomial, 2ⁿ built in the exponent bits.
/// Inputs below −87 give e^−87 ≈ 1.6e-38 instead of a denormal: nothing in a softmax sum.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    // Adding 1.5·2²³ rounds to an integer and leaves it in the low mantissa bits, so n needs no
    // float → int conversion (Rust's saturating `as` does not vectorize well).
    const MAGIC: f32 = 12_582_912.0;
    let x = if x > -87.0 { x } else { -87.0 };
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let n_bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    e * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `p = exp(s + m − max)` for one row; returns `Σ p`, so `p / Σ p = softmax(s + m)`.
/// Inlined into the AVX2-compiled callers on x86; on aarch64 a function of its own, where
/// the exp's constants stay in registers (inlined into the attention, LLVM re-created nine of
/// them per four values).
#[cfg_attr(target_arch = "aarch64", inline(never))]
#[cfg_attr(not(target_arch = "aarch64"), inline(always))]
pub(crate) fn masked_exp_row(s: &[f32], m: &[f32], p: &mut [f32]) -> f32 {
    #[cfg(target_arch = "aarch64")]
    {
        neon::masked_exp_row(s, m, p)
    }
    #[cfg(target_arch = "arm")]
    if crate::platform::cpu::features().arm_neon {
        // SAFETY: NEON is present (checked).
        return unsafe { armv7::masked_exp_row(s, m, p) };
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        p.iter_mut().zip(s).zip(m).for_each(|((p, s), m)| *p = s + m);
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = p.chunks_exact(8);
        for c in &mut chunks {
            lanes.iter_mut().zip(c).for_each(|(l, &v)| *l = if v > *l { v } else { *l });
        }
        let max = chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        p.iter_mut().for_each(|p| *p = exp_nonpositive(*p - max));
        sum_of(p, |v| v)
    }
}

/// `p = exp(s − max)` for one row whose mask is already in `s` and whose maximum is `max`;
/// returns `Σ p`. The second half of [`masked_exp_row`], for callers that added the mask and
/// took the maximum while the scores were in registers (the aarch64 attention).
#[cfg(target_arch = "aarch64")]
#[inline(never)]
pub(crate) fn shifted_exp_row(s: &[f32], max: f32, p: &mut [f32]) -> f32 {
    neon::shifted_exp_row(s, max, p)
}

/// `p = softmax(s + m)` for one row.
#[inline(always)]
fn masked_softmax_row(s: &[f32], m: &[f32], p: &mut [f32]) {
    let inv = 1.0 / masked_exp_row(s, m, p);
    #[cfg(target_arch = "arm")]
    if crate::platform::cpu::features().arm_neon {
        // SAFETY: NEON is present (checked).
        unsafe { armv7::scale_row(p, inv) };
        return;
    }
    p.iter_mut().for_each(|p| *p *= inv);
}

simd_dispatch!(pub(crate) masked_softmax_rows(
    scores: &[f32],
    mask: &[f32],
    width: usize,
    rows_per_mask: usize,
    p: &mut [f32]
) -> () {
    for (row, (s, p)) in scores.chunks_exact(width).zip(p.chunks_exact_mut(width)).enumerate() {
        masked_softmax_row(s, &mask[(row / rows_per_mask) * width..][..width], p);
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        for i in 0..=100_000 {
            let x = -87.0 * i as f32 / 100_000.0;
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!((got - want).abs() <= 4.0 * f32::EPSILON * want, "exp({x}): {got} vs {want}");
        }
        assert!(exp_nonpositive(-10_000.0) < 1e-37);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }
}
