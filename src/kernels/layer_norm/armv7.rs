//! The armv7 NEON form of one [`super::layer_norm_rows`] row, for widths that are a multiple of
//! 8: the aarch64 form's three passes (`neon.rs`) as `global_asm!` functions (for the reasons
//! `gemm_i8/armv7_neon.rs` gives), with the same lanes, the same order of the sums across them
//! and `vfma.f32` (VFPv4) where it fuses, so rows match its scalar twin bit for bit (NEON
//! flushes subnormals to zero; LayerNorm inputs and outputs are not subnormal in practice).

use std::arch::global_asm;

unsafe extern "C" {
    /// `y = a + b` (`b` null: `y = a`) over `groups` × 8 values; returns `Σ y`.
    fn bertlite_armv7_ln_sum(a: *const f32, b: *const f32, y: *mut f32, groups: usize) -> f32;
    /// `Σ (y − mean)²` over `groups` × 8 values.
    fn bertlite_armv7_ln_squares(y: *const f32, groups: usize, mean: f32) -> f32;
    /// `y = (y − mean) · rstd · gamma + beta` over `groups` × 8 values.
    fn bertlite_armv7_ln_affine(
        y: *mut f32,
        gamma: *const f32,
        beta: *const f32,
        groups: usize,
        mean: f32,
        rstd: f32,
    );
}

// Sums in q8 (lanes i ≡ 0-3 mod 8) and q9 (4-7), then across as aarch64's `faddp`:
// ((l0 + l1) + (l2 + l3)) of l = q8 + q9. Float arguments and results in s0, s1 (hard float).
global_asm!(
    ".text",
    ".arm",
    ".fpu neon-vfpv4",
    ".p2align 2",
    ".globl bertlite_armv7_ln_sum",
    ".hidden bertlite_armv7_ln_sum",
    ".type bertlite_armv7_ln_sum, %function",
    "bertlite_armv7_ln_sum:",
    "vmov.i32 q8, #0",
    "vmov.i32 q9, #0",
    "cmp r3, #0",
    "beq 3f",
    "cmp r1, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d0-d3}}, [r0]!",
    "vld1.32 {{d4-d7}}, [r1]!",
    "vadd.f32 q0, q0, q2",
    "vadd.f32 q1, q1, q3",
    "vst1.32 {{d0-d3}}, [r2]!",
    "vadd.f32 q8, q8, q0",
    "vadd.f32 q9, q9, q1",
    "subs r3, r3, #1",
    "bne 1b",
    "b 3f",
    "2:",
    "vld1.32 {{d0-d3}}, [r0]!",
    "vst1.32 {{d0-d3}}, [r2]!",
    "vadd.f32 q8, q8, q0",
    "vadd.f32 q9, q9, q1",
    "subs r3, r3, #1",
    "bne 2b",
    "3:",
    "vadd.f32 q8, q8, q9",
    "vpadd.f32 d16, d16, d17",
    "vpadd.f32 d16, d16, d16",
    "vmov.32 r0, d16[0]",
    "vmov s0, r0",
    "bx lr",
    ".size bertlite_armv7_ln_sum, . - bertlite_armv7_ln_sum",
    "",
    ".p2align 2",
    ".globl bertlite_armv7_ln_squares",
    ".hidden bertlite_armv7_ln_squares",
    ".type bertlite_armv7_ln_squares, %function",
    "bertlite_armv7_ln_squares:",
    "vdup.32 q10, d0[0]",
    "vmov.i32 q8, #0",
    "vmov.i32 q9, #0",
    "cmp r1, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d0-d3}}, [r0]!",
    "vsub.f32 q0, q0, q10",
    "vsub.f32 q1, q1, q10",
    "vfma.f32 q8, q0, q0",
    "vfma.f32 q9, q1, q1",
    "subs r1, r1, #1",
    "bne 1b",
    "2:",
    "vadd.f32 q8, q8, q9",
    "vpadd.f32 d16, d16, d17",
    "vpadd.f32 d16, d16, d16",
    "vmov.32 r0, d16[0]",
    "vmov s0, r0",
    "bx lr",
    ".size bertlite_armv7_ln_squares, . - bertlite_armv7_ln_squares",
    "",
    ".p2align 2",
    ".globl bertlite_armv7_ln_affine",
    ".hidden bertlite_armv7_ln_affine",
    ".type bertlite_armv7_ln_affine, %function",
    "bertlite_armv7_ln_affine:",
    "vdup.32 q10, d0[0]",
    "vdup.32 q11, d0[1]",
    "cmp r3, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d0-d3}}, [r0]",
    "vld1.32 {{d4-d7}}, [r1]!",
    "vld1.32 {{d16-d19}}, [r2]!",
    "vsub.f32 q0, q0, q10",
    "vsub.f32 q1, q1, q10",
    "vmul.f32 q0, q0, q11",
    "vmul.f32 q1, q1, q11",
    "vfma.f32 q8, q0, q2",
    "vfma.f32 q9, q1, q3",
    "vst1.32 {{d16-d19}}, [r0]!",
    "subs r3, r3, #1",
    "bne 1b",
    "2:",
    "bx lr",
    ".size bertlite_armv7_ln_affine, . - bertlite_armv7_ln_affine",
);

/// `y = LayerNorm(a + b)` for one row of `gamma.len()` values (a multiple of 8).
///
/// # Safety
/// NEON and VFPv4 present.
pub(super) unsafe fn row(
    a: &[f32],
    b: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
) {
    let h = gamma.len();
    // ok: the caller slices every row to h = gamma.len(), a multiple of 8.
    assert!(h.is_multiple_of(8) && a.len() == h && y.len() == h && beta.len() >= h);
    assert!(b.is_none_or(|b| b.len() == h));
    let groups = h / 8;
    let bp = b.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY: every pass reads and writes groups × 8 = h values of slices that hold h.
    unsafe {
        let mean = bertlite_armv7_ln_sum(a.as_ptr(), bp, y.as_mut_ptr(), groups) / h as f32;
        let var = bertlite_armv7_ln_squares(y.as_ptr(), groups, mean) / h as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        bertlite_armv7_ln_affine(y.as_mut_ptr(), gamma.as_ptr(), beta.as_ptr(), groups, mean, rstd);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_match_the_scalar_twin_bit_for_bit() {
        if !crate::platform::cpu::features().arm_neon {
            return;
        }
        // SAFETY: checked above.
        super::super::twin::check(|a, b, g, be, eps, y| unsafe { super::row(a, b, g, be, eps, y) });
    }
}
