//! BERT's exact GELU, `x · ½(1 + erf(x/√2))`, in place over a row of FFN activations: run by
//! the int8 FFN-in linear on its own output while it is in cache (`ops::int8`), instead of
//! tract's `GeluExact`, which reads and writes the activations twice more.
//!
//! erf is Abramowitz & Stegun 7.1.28 (|error| ≤ 3·10⁻⁷), the approximation tract's kernels
//! use, so the values are those of the f32 path up to the rounding of fused multiply-adds.

#[cfg(target_arch = "arm")]
mod armv7;
#[cfg(target_arch = "aarch64")]
mod neon;

/// A&S 7.1.28's coefficients, a₆ first: erf(a) ≈ 1 − (1 + a₁a + … + a₆a⁶)⁻¹⁶ for a ≥ 0.
#[allow(clippy::excessive_precision)]
const ERF: [f32; 6] = [
    0.000_043_063_8,
    0.000_276_567_2,
    0.000_152_014_3,
    0.009_270_527_2,
    0.042_282_012_3,
    0.070_523_078_4,
];

/// GELU of one value: the definition the vector forms compute, operation for operation.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    let c = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = c.abs();
    // q = 1 + a₁a + … + a₆a⁶ in Estrin's form: (1 + a₁a) + a²(a₂ + a₃a) + a⁴((a₄ + a₅a) + a²a₆).
    let a2 = a * a;
    let lo = ERF[5].mul_add(a, 1.0);
    let mid = ERF[3].mul_add(a, ERF[4]);
    let hi = ERF[1].mul_add(a, ERF[2]);
    let hi = ERF[0].mul_add(a2, hi);
    let q = hi.mul_add(a2 * a2, mid.mul_add(a2, lo));
    let q2 = q * q;
    let q4 = q2 * q2;
    let q8 = q4 * q4;
    let q16 = q8 * q8;
    let e = (1.0 - 1.0 / q16).copysign(c);
    let h = 0.5 * x;
    e.mul_add(h, h)
}

simd_dispatch!(pub(crate) gelu_in_place(x: &mut [f32]) -> () {
    #[cfg(target_arch = "aarch64")]
    let done = neon::gelu_in_place(x);
    #[cfg(target_arch = "arm")]
    // SAFETY: NEON and VFPv4 are present (checked).
    let done = if crate::platform::cpu::features().arm_neon {
        unsafe { armv7::gelu_in_place(x) }
    } else {
        0
    };
    #[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
    let done = 0;
    x[done..].iter_mut().for_each(|v| *v = gelu(*v));
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition in float64 (std has no erf: its series below 3, erfc's continued
    /// fraction above, both good to ~1e-15 here).
    #[test]
    fn close_to_the_definition() {
        fn erf64(x: f64) -> f64 {
            // erf by its Maclaurin series below 3, erfc's continued fraction above.
            let a = x.abs();
            let r = if a < 3.0 {
                let (mut term, mut sum, mut n) = (a, a, 0.0);
                while term.abs() > 1e-17 * sum.abs() {
                    n += 1.0;
                    term *= -a * a / n;
                    sum += term / (2.0 * n + 1.0);
                }
                sum * 2.0 / std::f64::consts::PI.sqrt()
            } else {
                let mut f = 0.0;
                for k in (1..60).rev() {
                    f = (k as f64 / 2.0) / (a + f);
                }
                1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
            };
            r.copysign(x)
        }
        for i in -4000..=4000 {
            let x = i as f32 * 0.0025;
            let want = 0.5 * f64::from(x) * (1.0 + erf64(f64::from(x) / std::f64::consts::SQRT_2));
            let got = f64::from(gelu(x));
            // erf: A&S's 3e-7, plus f32's: q rounded ≤ 4 times (each magnified 16 times by
            // q¹⁶), then four squarings: ≤ 68 roundings of ε/2 on 1/q¹⁶ ≤ 1; times |x|/2;
            // plus two roundings of the result.
            let erf_error = 3e-7 + 68.0 * f64::from(f32::EPSILON) / 2.0;
            let tol =
                erf_error * f64::from(x.abs()) / 2.0 + 2.0 * f64::from(f32::EPSILON) * want.abs();
            assert!((got - want).abs() <= tol + 1e-12, "gelu({x}) = {got}, want {want}");
        }
        assert_eq!(gelu(-30.0), 0.0);
        assert_eq!(gelu(30.0), 30.0);
        assert!(gelu(f32::NAN).is_nan());
    }
}
