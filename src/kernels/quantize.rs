//! Per-row activation quantization: f32 → 0..=127 with the row's own scale and zero point.

use super::gemm_i8::ACTIVATION_MAX;

/// An integer type quantized values are stored as: i8 for tract's matmul, u8 for
/// [`super::gemm_i8`]'s.
pub trait QuantizedInt: Copy {
    const ZERO: Self;
    /// `v` in 0..=127; plain `as` (truncating int → int casts vectorize, float → int
    /// saturating ones do not).
    fn from_i32(v: i32) -> Self;
}

impl QuantizedInt for i8 {
    const ZERO: i8 = 0;
    #[inline(always)]
    fn from_i32(v: i32) -> i8 {
        v as i8
    }
}

impl QuantizedInt for u8 {
    const ZERO: u8 = 0;
    #[inline(always)]
    fn from_i32(v: i32) -> u8 {
        v as u8
    }
}

/// `v` rounded to nearest-even as an integer, for |v| < 2²²: adding 1.5·2²³ pushes the
/// fraction out of the mantissa and leaves the integer in the low bits. Unlike `f32::round`
/// plus `as i32`, it vectorizes on every target (no SSE4.1, no saturating conversion).
#[inline(always)]
fn round_even(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    ((v + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// A quantized row's scale and zero point: `x ≈ (q − zero) · scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowQuant {
    pub scale: f32,
    pub zero: i32,
}

/// Quantizes one row into `out` (0..=ACTIVATION_MAX, as i8 or u8); returns its scale and
/// zero point (scale 0 for an all-zero row, NaN for a row with a non-finite value).
pub fn quantize_row<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    // The default x86_64 target is SSE2 only; with AVX2 the same loops run 8 wide.
    #[cfg(target_arch = "x86_64")]
    if crate::platform::cpu::features().avx2_fma {
        // SAFETY: AVX2 is present.
        return unsafe { quantize_row_avx2(x, out) };
    }
    quantize_row_body(x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    quantize_row_body(x, out)
}

/// `(min(x ∪ {0}), max(x ∪ {0}), whether every value is finite)`. Both bounds start at 0:
/// zero is always in range, and maps to the zero point exactly.
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32, bool) {
    #[cfg(target_arch = "aarch64")]
    {
        // NEON `fmin`/`fmax` propagate NaN (and ±inf reach the bounds), so non-finite rows
        // show in the bounds themselves. The portable form below compiles to scalar
        // `fcmp`/`fcsel` here, several instructions per value, a visible share of an int8
        // inference on a Cortex-A76 (cross/insn-profile.sh); this is 3 per four values.
        use std::arch::aarch64::*;
        let mut chunks = x.chunks_exact(8);
        // SAFETY: NEON is the aarch64 baseline; each chunk holds 8 values.
        let (lo, hi) = unsafe {
            let (mut lo, mut hi) = ([vdupq_n_f32(0.0); 2], [vdupq_n_f32(0.0); 2]);
            for c in &mut chunks {
                let v = [vld1q_f32(c.as_ptr()), vld1q_f32(c.as_ptr().add(4))];
                for i in 0..2 {
                    lo[i] = vminq_f32(lo[i], v[i]);
                    hi[i] = vmaxq_f32(hi[i], v[i]);
                }
            }
            (vminvq_f32(vminq_f32(lo[0], lo[1])), vmaxvq_f32(vmaxq_f32(hi[0], hi[1])))
        };
        let nan = |a: f32, b: f32| a.is_nan() || b.is_nan();
        let lo =
            chunks.remainder().iter().fold(lo, |m, &v| if nan(m, v) { f32::NAN } else { m.min(v) });
        let hi =
            chunks.remainder().iter().fold(hi, |m, &v| if nan(m, v) { f32::NAN } else { m.max(v) });
        (lo, hi, lo.is_finite() && hi.is_finite())
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        // Eight independent minima and maxima so the loop vectorizes (a single fold is a
        // serial chain). `v · 0` is 0 unless v is NaN or infinite: the comparisons skip NaN,
        // this does not.
        let (mut lo, mut hi, mut poison) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for (((lo, hi), p), &v) in lo.iter_mut().zip(&mut hi).zip(&mut poison).zip(c) {
                *lo = if v < *lo { v } else { *lo };
                *hi = if v > *hi { v } else { *hi };
                *p += v * 0.0;
            }
        }
        let rest = chunks.remainder();
        let min = lo.iter().chain(rest).fold(0f32, |m, &v| m.min(v));
        let max = hi.iter().chain(rest).fold(0f32, |m, &v| m.max(v));
        let finite = poison.iter().chain(rest).fold(0f32, |p, &v| p + v * 0.0) == 0.0;
        (min, max, finite)
    }
}

#[inline(always)]
fn quantize_row_body<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    let (min, max, finite) = min_max(x);
    let range = max - min;
    if !(range > 0.0 && range.is_finite() && finite) {
        out.fill(T::ZERO);
        let scale = if range == 0.0 && finite { 0.0 } else { f32::NAN };
        return RowQuant { scale, zero: 0 };
    }
    let top = f32::from(ACTIVATION_MAX);
    let inv = top / range;
    let zero = round_even(-min * inv);
    let top = i32::from(ACTIVATION_MAX);
    for (q, &v) in out.iter_mut().zip(x) {
        *q = T::from_i32((round_even(v * inv) + zero).clamp(0, top));
    }
    RowQuant { scale: range / f32::from(ACTIVATION_MAX), zero }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_quantize_to_their_own_range_with_an_exact_zero() {
        // min −0.5, max 0.77: 127 steps of 0.01, zero point 50.
        let x = [0.5f32, -0.5, 0.25, 0.0, 0.01, 0.77, -0.25, 0.1, 0.2, 0.004, 0.006];
        let mut q = [0u8; 11];
        let RowQuant { scale, zero } = quantize_row(&x, &mut q);
        assert!((scale - 0.01).abs() < 1e-7, "{scale}");
        assert_eq!(zero, 50);
        assert_eq!(q, [100, 0, 75, 50, 51, 127, 25, 60, 70, 50, 51]);
        // Positive-only rows use the full range from zero; a row over 8 long takes the
        // vectorized path.
        let x: Vec<f32> = (0..20).map(|i| i as f32 * 0.1).collect();
        let mut q = [0u8; 20];
        let RowQuant { scale, zero } = quantize_row(&x, &mut q);
        assert_eq!((zero, q[0], q[19]), (0, 0, 127));
        for (&v, &q) in x.iter().zip(&q) {
            assert!((v - (i32::from(q) - zero) as f32 * scale).abs() <= scale / 2.0 + 1e-6);
        }
    }

    #[test]
    fn zero_and_non_finite_rows_are_not_divided_by_zero() {
        let mut q = [5i8; 3];
        assert_eq!(quantize_row(&[0.0; 3], &mut q), RowQuant { scale: 0.0, zero: 0 });
        assert_eq!(q, [0; 3]);
        assert!(quantize_row(&[1.0, f32::INFINITY, 0.0], &mut q).scale.is_nan());
        let mut q = [5i8; 9];
        assert!(
            quantize_row(&[1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, f32::NAN], &mut q)
                .scale
                .is_nan()
        );
        assert!(
            quantize_row(&[f32::NAN, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &mut q)
                .scale
                .is_nan()
        );
    }
}
