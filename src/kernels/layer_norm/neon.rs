//! The aarch64 form of one [`super::layer_norm_rows`] row, for widths that are a multiple of 8
//! (BERT's 384, 768, 1024): three passes in q registers, eight values per step, the sums in
//! vector lanes and the affine step fused.
//!
//! Why by hand: LLVM kept the portable row's sums in eight scalar registers and did not fuse
//! the affine step (counts before and after: results/boards.md).

use std::arch::aarch64::*;

/// `y = LayerNorm(a + b)` for one row of `gamma.len()` values (a multiple of 8).
#[inline(always)]
pub(super) fn row(
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
    // SAFETY: NEON is the aarch64 baseline; every access is at i..i + 8 with i + 8 ≤ h.
    unsafe {
        let (ap, yp, gp, bp) = (a.as_ptr(), y.as_mut_ptr(), gamma.as_ptr(), beta.as_ptr());
        let (mut s0, mut s1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        for i in (0..h).step_by(8) {
            let (mut v0, mut v1) = (vld1q_f32(ap.add(i)), vld1q_f32(ap.add(i + 4)));
            if let Some(b) = b {
                v0 = vaddq_f32(v0, vld1q_f32(b.as_ptr().add(i)));
                v1 = vaddq_f32(v1, vld1q_f32(b.as_ptr().add(i + 4)));
            }
            vst1q_f32(yp.add(i), v0);
            vst1q_f32(yp.add(i + 4), v1);
            s0 = vaddq_f32(s0, v0);
            s1 = vaddq_f32(s1, v1);
        }
        let mean = vaddvq_f32(vaddq_f32(s0, s1)) / h as f32;
        let m = vdupq_n_f32(mean);
        let (mut q0, mut q1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        for i in (0..h).step_by(8) {
            let d0 = vsubq_f32(vld1q_f32(yp.add(i)), m);
            let d1 = vsubq_f32(vld1q_f32(yp.add(i + 4)), m);
            q0 = vfmaq_f32(q0, d0, d0);
            q1 = vfmaq_f32(q1, d1, d1);
        }
        let var = vaddvq_f32(vaddq_f32(q0, q1)) / h as f32;
        let rstd = vdupq_n_f32(1.0 / (var + eps).sqrt());
        for i in (0..h).step_by(8) {
            for i in [i, i + 4] {
                let t = vmulq_f32(vsubq_f32(vld1q_f32(yp.add(i)), m), rstd);
                vst1q_f32(yp.add(i), vfmaq_f32(vld1q_f32(bp.add(i)), t, vld1q_f32(gp.add(i))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_match_the_scalar_twin_bit_for_bit() {
        super::super::twin::check(super::row);
    }
}
