//! The armv7 NEON form of [`super::masked_exp_row`]: the portable row's operations, four lanes
//! at a time, as `global_asm!` functions (for the reasons `gemm_i8/armv7_neon.rs` gives):
//! `p = s + m` and the maximum, then `p = exp(p − max)` and the sum. The exp is
//! [`super::exp_nonpositive`] operation for operation (separate multiplies and adds, as
//! Rust's are), so each `p` is the portable one's bit for bit; only the sum's order differs
//! (four lanes, then across). The remainder of a row (len % 4) is the portable loop.

use std::arch::global_asm;

use super::exp_nonpositive;

const MAGIC: f32 = 12_582_912.0;

/// The exp's constants in the order the assembly loads them: four scalars (log₂e, ln 2 in two
/// parts, the polynomial's first coefficient), then 1.5·2²³, the floor, the coefficients,
/// 1, and `127 − bits(1.5·2²³)` (an integer), then the row's maximum.
#[repr(C)]
struct ExpConstants {
    scalars: [f32; 4],
    magic: f32,
    floor: f32,
    poly: [f32; 5],
    one: f32,
    exponent: i32,
    max: f32,
}

unsafe extern "C" {
    /// `p = s + m` over `groups` × 4 values; returns their maximum (−∞ for none).
    fn bertlite_armv7_add_max_4(s: *const f32, m: *const f32, p: *mut f32, groups: usize) -> f32;
    /// `p = exp(p − max)` over `groups` × 4 values; returns their sum.
    fn bertlite_armv7_exp_sum_4(p: *mut f32, groups: usize, constants: *const ExpConstants) -> f32;
    /// `p = p · inv` over `groups` × 4 values.
    fn bertlite_armv7_scale_4(p: *mut f32, groups: usize, inv: f32);
}

global_asm!(
    ".text",
    ".arm",
    ".fpu neon",
    ".p2align 2",
    ".globl bertlite_armv7_add_max_4",
    ".hidden bertlite_armv7_add_max_4",
    ".type bertlite_armv7_add_max_4, %function",
    "bertlite_armv7_add_max_4:",
    "movw r12, #0x0000",
    "movt r12, #0xff80",
    "vdup.32 q12, r12",
    "cmp r3, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d16-d17}}, [r0]!",
    "vld1.32 {{d18-d19}}, [r1]!",
    "vadd.f32 q8, q8, q9",
    "vst1.32 {{d16-d17}}, [r2]!",
    "vmax.f32 q12, q12, q8",
    "subs r3, r3, #1",
    "bne 1b",
    "2:",
    "vpmax.f32 d24, d24, d25",
    "vpmax.f32 d24, d24, d24",
    "vmov.32 r0, d24[0]",
    "vmov s0, r0",
    "bx lr",
    ".size bertlite_armv7_add_max_4, . - bertlite_armv7_add_max_4",
    "",
    ".p2align 2",
    ".globl bertlite_armv7_exp_sum_4",
    ".hidden bertlite_armv7_exp_sum_4",
    ".type bertlite_armv7_exp_sum_4, %function",
    // d0 = (log₂e, ln2 high), d1 = (ln2 low, c₀) by lane; q1 1.5·2²³, q2 the floor, q3-q7
    // c₁ … c₅, q15 one, q14 the exponent offset, q13 the maximum; q8 x then r, q9 x·log₂e +
    // 1.5·2²³ (n in its low bits), q10 n then the polynomial, q11 the floor's mask, q12 the sum.
    "bertlite_armv7_exp_sum_4:",
    "vpush {{d8-d15}}",
    "vld1.32 {{d0-d1}}, [r2]!",
    "vld1.32 {{d2[], d3[]}}, [r2]!",
    "vld1.32 {{d4[], d5[]}}, [r2]!",
    "vld1.32 {{d6[], d7[]}}, [r2]!",
    "vld1.32 {{d8[], d9[]}}, [r2]!",
    "vld1.32 {{d10[], d11[]}}, [r2]!",
    "vld1.32 {{d12[], d13[]}}, [r2]!",
    "vld1.32 {{d14[], d15[]}}, [r2]!",
    "vld1.32 {{d30[], d31[]}}, [r2]!",
    "vld1.32 {{d28[], d29[]}}, [r2]!",
    "vld1.32 {{d26[], d27[]}}, [r2]",
    "vmov.i32 q12, #0",
    "cmp r1, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d16-d17}}, [r0]",
    "vsub.f32 q8, q8, q13",
    // x = x > floor ? x : floor
    "vcgt.f32 q11, q8, q2",
    "vbsl q11, q8, q2",
    "vmul.f32 q9, q11, d0[0]",
    "vadd.f32 q9, q9, q1",
    "vsub.f32 q10, q9, q1",
    // r = x − n · ln2_hi + n · ln2_lo
    "vmls.f32 q11, q10, d0[1]",
    "vmla.f32 q11, q10, d1[0]",
    // p = ((((c₀r + c₁)r + c₂)r + c₃)r + c₄)r + c₅
    "vmul.f32 q10, q11, d1[1]",
    "vadd.f32 q10, q10, q3",
    "vmul.f32 q10, q10, q11",
    "vadd.f32 q10, q10, q4",
    "vmul.f32 q10, q10, q11",
    "vadd.f32 q10, q10, q5",
    "vmul.f32 q10, q10, q11",
    "vadd.f32 q10, q10, q6",
    "vmul.f32 q10, q10, q11",
    "vadd.f32 q10, q10, q7",
    // e = p · r · r + r + 1, times 2ⁿ from n's bits
    "vmul.f32 q10, q10, q11",
    "vmul.f32 q10, q10, q11",
    "vadd.f32 q10, q10, q11",
    "vadd.f32 q10, q10, q15",
    "vadd.i32 q9, q9, q14",
    "vshl.i32 q9, q9, #23",
    "vmul.f32 q10, q10, q9",
    "vst1.32 {{d20-d21}}, [r0]!",
    "vadd.f32 q12, q12, q10",
    "subs r1, r1, #1",
    "bne 1b",
    "2:",
    "vadd.f32 d24, d24, d25",
    "vpadd.f32 d24, d24, d24",
    "vmov.32 r0, d24[0]",
    "vmov s0, r0",
    "vpop {{d8-d15}}",
    "bx lr",
    ".size bertlite_armv7_exp_sum_4, . - bertlite_armv7_exp_sum_4",
    "",
    ".p2align 2",
    ".globl bertlite_armv7_scale_4",
    ".hidden bertlite_armv7_scale_4",
    ".type bertlite_armv7_scale_4, %function",
    "bertlite_armv7_scale_4:",
    "vdup.32 q9, d0[0]",
    "cmp r1, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d16-d17}}, [r0]",
    "vmul.f32 q8, q8, q9",
    "vst1.32 {{d16-d17}}, [r0]!",
    "subs r1, r1, #1",
    "bne 1b",
    "2:",
    "bx lr",
    ".size bertlite_armv7_scale_4, . - bertlite_armv7_scale_4",
);

/// `p = p · inv`, the softmax's normalization: the portable loop's multiply, but a probability
/// below 2⁻¹²⁶ becomes 0 (NEON flushes subnormals), where the portable one keeps it subnormal.
///
/// # Safety
/// NEON present.
pub(super) unsafe fn scale_row(p: &mut [f32], inv: f32) {
    let groups = p.len() / 4;
    // SAFETY: reads and writes groups × 4 ≤ len values of p.
    unsafe { bertlite_armv7_scale_4(p.as_mut_ptr(), groups, inv) };
    p[groups * 4..].iter_mut().for_each(|p| *p *= inv);
}

/// [`super::masked_exp_row`] with NEON.
///
/// # Safety
/// NEON present.
pub(super) unsafe fn masked_exp_row(s: &[f32], m: &[f32], p: &mut [f32]) -> f32 {
    let len = p.len().min(s.len()).min(m.len());
    let groups = len / 4;
    // SAFETY: reads groups × 4 ≤ len values of s and m, writes as many of p.
    let mut max =
        unsafe { bertlite_armv7_add_max_4(s.as_ptr(), m.as_ptr(), p.as_mut_ptr(), groups) };
    for i in groups * 4..len {
        p[i] = s[i] + m[i];
        max = max.max(p[i]);
    }
    let constants = ExpConstants {
        scalars: [std::f32::consts::LOG2_E, 0.693_359_4, 2.121_944_4e-4, 1.987_569_1e-4],
        magic: MAGIC,
        floor: -87.0,
        poly: [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5],
        one: 1.0,
        exponent: 127i32.wrapping_sub(MAGIC.to_bits() as i32),
        max,
    };
    // SAFETY: reads and writes groups × 4 ≤ len values of p.
    let mut sum = unsafe { bertlite_armv7_exp_sum_4(p.as_mut_ptr(), groups, &constants) };
    for v in &mut p[groups * 4..len] {
        *v = exp_nonpositive(*v - max);
        sum += *v;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each value bit for bit against the portable exp; the sum within the reordering of
    /// `len` additions of values ≤ 1 (len · ε of the sum); the normalization bit for bit but
    /// for subnormal probabilities, which NEON flushes to zero.
    #[test]
    fn rows_match_the_portable_exp() {
        if !crate::platform::cpu::features().arm_neon {
            return;
        }
        for len in [1, 3, 4, 5, 16, 17, 128, 131] {
            let s: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21).collect();
            let m: Vec<f32> = (0..len).map(|i| if i % 7 == 3 { -10_000.0 } else { 0.0 }).collect();
            let mut p = vec![0f32; len];
            // SAFETY: checked above.
            let sum = unsafe { masked_exp_row(&s, &m, &mut p) };
            let max = s.iter().zip(&m).map(|(s, m)| s + m).fold(f32::NEG_INFINITY, f32::max);
            let mut want_sum = 0f32;
            for i in 0..len {
                let want = exp_nonpositive(s[i] + m[i] - max);
                assert_eq!(p[i].to_bits(), want.to_bits(), "len {len} at {i}");
                want_sum += want;
            }
            assert!((sum - want_sum).abs() <= len as f32 * f32::EPSILON * want_sum, "len {len}");
            let mut scaled = p.clone();
            // SAFETY: checked above.
            unsafe { scale_row(&mut scaled, 1.0 / sum) };
            for (i, (g, &v)) in scaled.iter().zip(&p).enumerate() {
                // NEON (all but the last len % 4) flushes a subnormal product to zero.
                let want = v * (1.0 / sum);
                let want = if want.is_subnormal() && i < len / 4 * 4 { 0.0 } else { want };
                assert_eq!(g.to_bits(), want.to_bits(), "len {len}");
            }
        }
    }
}
