//! What the aarch64 micro-kernels share: the block's epilogue constants and the tile epilogue
//! (corrections, zero point, scales and bias in registers, stores).

use std::arch::aarch64::*;

use super::{BlockConstants, NB, PackedWeights, Rescale, add_corrections};

/// Finishes a tile of `R` rows from `m0` (rows past `m` are clamped duplicates, not written):
/// adds the block's corrections, then writes
/// `y = (acc − zero · col_sum) · row_scale · channel_scale + bias` for the block's channels.
///
/// # Safety
/// Shapes as [`super::linear`] asserts them; NEON is the aarch64 baseline.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn finish_tile<const R: usize>(
    mut acc: [[int32x4_t; 4]; R],
    w: &PackedWeights,
    block: usize,
    k: &BlockConstants,
    (x, kp): (&[u8], usize),
    (m0, m, rows): (usize, usize, &[usize; R]),
    rescale: &Rescale,
    y: &mut [f32],
) {
    if w.block_fixes[block] < w.block_fixes[block + 1] {
        let mut t = [[0i32; NB]; R];
        for (t, a) in t.iter_mut().zip(&acc) {
            for (j, a) in a.iter().enumerate() {
                // SAFETY: t holds 16 lanes.
                unsafe { vst1q_s32(t.as_mut_ptr().add(4 * j), *a) };
            }
        }
        add_corrections(w, block, x, kp, rows, &mut t);
        for (a, t) in acc.iter_mut().zip(&t) {
            // SAFETY: t holds 16 lanes.
            *a = std::array::from_fn(|j| unsafe { vld1q_s32(t.as_ptr().add(4 * j)) });
        }
    }
    let n = w.n;
    for (r, acc_r) in acc.iter().enumerate() {
        let row = m0 + r;
        if row >= m {
            break;
        }
        let rs = vdupq_n_f32(rescale.rows[row]);
        let zero = vdupq_n_s32(rescale.zeros[row]);
        let out: [float32x4_t; 4] = std::array::from_fn(|j| {
            // SAFETY: each lane array holds NB = 16 values, read four at a time (j < 4).
            let (scales, sums, bias) = unsafe {
                let l = &k.lanes;
                (
                    vld1q_f32(l.scales.as_ptr().add(4 * j)),
                    vld1q_s32(l.sums.as_ptr().add(4 * j)),
                    vld1q_f32(l.bias.as_ptr().add(4 * j)),
                )
            };
            let scale = vmulq_f32(rs, scales);
            let exact = vmlsq_s32(acc_r[j], zero, sums);
            vfmaq_f32(bias, vcvtq_f32_s32(exact), scale)
        });
        let dst = &mut y[row * n + k.c0..][..k.width];
        let mut lanes = [0f32; NB];
        let full = k.width == NB;
        let p = if full { dst.as_mut_ptr() } else { lanes.as_mut_ptr() };
        for (j, v) in out.iter().enumerate() {
            // SAFETY: p points at 16 writable f32 (dst is full width, or lanes).
            unsafe { vst1q_f32(p.add(4 * j), *v) };
        }
        if !full {
            dst.copy_from_slice(&lanes[..k.width]);
        }
    }
}
