//! [`super::gelu`] on four lanes: the same operations in the same order (`fmla` for each
//! `mul_add`, one `fdiv`, the sign put back with a bit select).

use std::arch::aarch64::*;

use super::ERF;

/// GELU in place over the whole groups of four of `x`; returns how many values it did.
#[inline(always)]
pub(super) fn gelu_in_place(x: &mut [f32]) -> usize {
    let body = x.len() / 4 * 4;
    // SAFETY: NEON is the aarch64 baseline; every access is at i..i + 4 with i + 4 ≤ body.
    unsafe {
        let sign = vdupq_n_u32(0x8000_0000);
        let one = vdupq_n_f32(1.0);
        for i in (0..body).step_by(4) {
            let p = x.as_mut_ptr().add(i);
            let v = vld1q_f32(p);
            let c = vmulq_n_f32(v, std::f32::consts::FRAC_1_SQRT_2);
            let a = vabsq_f32(c);
            let a2 = vmulq_f32(a, a);
            let k = |i: usize| vdupq_n_f32(ERF[i]);
            let lo = vfmaq_f32(one, k(5), a);
            let mid = vfmaq_f32(k(4), k(3), a);
            let hi = vfmaq_f32(k(2), k(1), a);
            let hi = vfmaq_f32(hi, k(0), a2);
            let q = vfmaq_f32(vfmaq_f32(lo, mid, a2), hi, vmulq_f32(a2, a2));
            let q2 = vmulq_f32(q, q);
            let q4 = vmulq_f32(q2, q2);
            let q8 = vmulq_f32(q4, q4);
            let q16 = vmulq_f32(q8, q8);
            let e = vsubq_f32(one, vdivq_f32(one, q16));
            let e = vbslq_f32(sign, c, e);
            let h = vmulq_n_f32(v, 0.5);
            vst1q_f32(p, vfmaq_f32(h, e, h));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_match_the_scalar_definition_bit_for_bit() {
        let xs: Vec<f32> = (-6000..=6000)
            .map(|i| i as f32 * 0.0021)
            .chain([-1e30, 1e30, -0.0, 0.0, f32::MIN_POSITIVE, 88.0, -88.0, 1e-40])
            .collect();
        for len in [xs.len(), 1, 2, 3, 5, 7] {
            let mut got = xs[..len].to_vec();
            let done = gelu_in_place(&mut got);
            assert_eq!(done, len / 4 * 4);
            for (g, &x) in got[..done].iter().zip(&xs) {
                assert_eq!(g.to_bits(), super::super::gelu(x).to_bits(), "gelu({x})");
            }
        }
    }
}
