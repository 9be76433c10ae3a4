//! [`super::gelu`] on four lanes for armv7 NEON: the same polynomial with `vfma.f32` (VFPv4)
//! for each `mul_add`, in the same order; armv7 NEON has no vector divide, so `1/q¹⁶` is
//! `vrecpe` and two Newton steps (`vrecps`): within a few units in the last place of the
//! division, far below the erf approximation's own 3·10⁻⁷ (the test bounds it). NEON flushes
//! subnormals to zero (|x| < 2⁻¹²⁶ gives 0). A `global_asm!` function for the reasons
//! `gemm_i8/armv7_neon.rs` gives; the remainder of a row (len % 4) is the scalar form.

use std::arch::global_asm;

use super::ERF;

/// The constants the assembly loads, in its order: a₆ … a₁ (each replicated to a q
/// register), then 1/√2 and ½ (one d register, read by lane).
static CONSTANTS: [f32; 8] =
    [ERF[0], ERF[1], ERF[2], ERF[3], ERF[4], ERF[5], std::f32::consts::FRAC_1_SQRT_2, 0.5];

unsafe extern "C" {
    /// GELU in place over `groups` × 4 values.
    fn bertlite_armv7_gelu_4(x: *mut f32, groups: usize, constants: *const f32);
}

// q0-q5 a₆ … a₁, q6 one, d14 (1/√2, ½), q15 the sign mask; q8 v then h, q9 c, q10 a then
// a⁴, q11 a², q12 lo then q and its powers, q13 mid then e, q14 hi then 1/q¹⁶ then out.
global_asm!(
    ".text",
    ".arm",
    ".fpu neon-vfpv4",
    ".p2align 2",
    ".globl bertlite_armv7_gelu_4",
    ".hidden bertlite_armv7_gelu_4",
    ".type bertlite_armv7_gelu_4, %function",
    "bertlite_armv7_gelu_4:",
    "vpush {{d8-d15}}",
    "vld1.32 {{d0[], d1[]}}, [r2]!",
    "vld1.32 {{d2[], d3[]}}, [r2]!",
    "vld1.32 {{d4[], d5[]}}, [r2]!",
    "vld1.32 {{d6[], d7[]}}, [r2]!",
    "vld1.32 {{d8[], d9[]}}, [r2]!",
    "vld1.32 {{d10[], d11[]}}, [r2]!",
    "vld1.32 {{d14}}, [r2]",
    "vmov.f32 q6, #1.0",
    "vmov.i32 q15, #0x80000000",
    "cmp r1, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d16-d17}}, [r0]",
    "vmul.f32 q9, q8, d14[0]",
    "vabs.f32 q10, q9",
    "vmul.f32 q11, q10, q10",
    // lo = a₁a + 1, mid = a₃a + a₂, hi = a₅a + a₄, hi = a₆a² + hi
    "vmov q12, q6",
    "vfma.f32 q12, q5, q10",
    "vmov q13, q4",
    "vfma.f32 q13, q3, q10",
    "vmov q14, q2",
    "vfma.f32 q14, q1, q10",
    "vfma.f32 q14, q0, q11",
    // q = hi · a⁴ + (mid · a² + lo)
    "vmul.f32 q10, q11, q11",
    "vfma.f32 q12, q13, q11",
    "vfma.f32 q12, q14, q10",
    "vmul.f32 q12, q12, q12",
    "vmul.f32 q12, q12, q12",
    "vmul.f32 q12, q12, q12",
    "vmul.f32 q12, q12, q12",
    // 1/q¹⁶: estimate, two Newton steps r · (2 − q¹⁶ · r)
    "vrecpe.f32 q14, q12",
    "vrecps.f32 q13, q12, q14",
    "vmul.f32 q14, q14, q13",
    "vrecps.f32 q13, q12, q14",
    "vmul.f32 q14, q14, q13",
    // e = (1 − 1/q¹⁶) with c's sign; out = e · h + h
    "vsub.f32 q14, q6, q14",
    "vmov q13, q15",
    "vbsl q13, q9, q14",
    "vmul.f32 q8, q8, d14[1]",
    "vmov q14, q8",
    "vfma.f32 q14, q13, q8",
    "vst1.32 {{d28-d29}}, [r0]!",
    "subs r1, r1, #1",
    "bne 1b",
    "2:",
    "vpop {{d8-d15}}",
    "bx lr",
    ".size bertlite_armv7_gelu_4, . - bertlite_armv7_gelu_4",
);

/// GELU in place over the whole groups of four of `x`; returns how many values it did.
///
/// # Safety
/// NEON and VFPv4 present.
pub(super) unsafe fn gelu_in_place(x: &mut [f32]) -> usize {
    let groups = x.len() / 4;
    // SAFETY: reads and writes groups × 4 ≤ len values of x.
    unsafe { bertlite_armv7_gelu_4(x.as_mut_ptr(), groups, CONSTANTS.as_ptr()) };
    groups * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the scalar definition: the division's few ulp on `1/q¹⁶ ≤ 1` (bounded at 8
    /// ulp of 1, times |h| = |x|/2), two roundings of the result, and subnormals flushed.
    #[test]
    fn lanes_match_the_scalar_definition_within_the_reciprocal() {
        if !crate::platform::cpu::features().arm_neon {
            return;
        }
        let xs: Vec<f32> = (-6000..=6000)
            .map(|i| i as f32 * 0.0021)
            .chain([-1e30, 1e30, -0.0, 0.0, f32::MIN_POSITIVE, 88.0, -88.0, 1e-40, 3.0])
            .collect();
        for len in [xs.len(), 1, 2, 3, 5, 7] {
            let mut got = xs[..len].to_vec();
            // SAFETY: checked above.
            let done = unsafe { gelu_in_place(&mut got) };
            assert_eq!(done, len / 4 * 4);
            for (g, &x) in got[..done].iter().zip(&xs) {
                let want = super::super::gelu(x);
                let tol = 8.0 * f32::EPSILON * x.abs() / 2.0
                    + 2.0 * f32::EPSILON * want.abs()
                    + f32::MIN_POSITIVE;
                assert!((g - want).abs() <= tol, "gelu({x}) = {g}, want {want}");
            }
        }
    }
}
