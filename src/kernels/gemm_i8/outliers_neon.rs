//! aarch64 kernel for [`super::outliers`]: 16 channels per step, the row's four 16-bit values
//! in one register, each input's 16 weights widened to i16 and multiplied into four i32
//! accumulators by `smlal`/`smlal2` by lane: 7 instructions per 16 × 1 products (the f32 form,
//! widening to i32 and converting every weight, took 15).

use std::arch::aarch64::*;

use super::NB;
use crate::kernels::quantize::{OUTLIERS, Outliers};

// The lanes below are written out for four values.
const _: () = assert!(OUTLIERS == 4);

/// Channels `0..full` (a multiple of 16) of one row.
///
/// # Safety
/// Every `o.index[j] · n + full ≤ columns.len()`; `channels` and `y` hold `full` values.
#[target_feature(enable = "neon")]
pub(super) unsafe fn add_row(
    o: &Outliers,
    columns: &[i8],
    n: usize,
    full: usize,
    channels: &[f32],
    y: &mut [f32],
) {
    // SAFETY: the caller's bounds; loads of 16 bytes / 4 floats at c0 + 16 ≤ full.
    unsafe {
        let q = vld1_s16(o.q.as_ptr());
        let cols = o.index.map(|k| columns.as_ptr().add(k as usize * n));
        let scale = vdupq_n_f32(o.scale);
        let mut c0 = 0;
        while c0 < full {
            let mut acc = [vdupq_n_s32(0); 4];
            macro_rules! input {
                ($j:literal) => {{
                    let w = vld1q_s8(cols[$j].add(c0));
                    let lo = vmovl_s8(vget_low_s8(w));
                    let hi = vmovl_high_s8(w);
                    acc[0] = vmlal_lane_s16::<$j>(acc[0], vget_low_s16(lo), q);
                    acc[1] = vmlal_high_lane_s16::<$j>(acc[1], lo, q);
                    acc[2] = vmlal_lane_s16::<$j>(acc[2], vget_low_s16(hi), q);
                    acc[3] = vmlal_high_lane_s16::<$j>(acc[3], hi, q);
                }};
            }
            input!(0);
            input!(1);
            input!(2);
            input!(3);
            // 16 channels' scales and outputs in one load each, one store.
            let ch = vld1q_f32_x4(channels.as_ptr().add(c0));
            let yv = vld1q_f32_x4(y.as_ptr().add(c0));
            let out = |acc: int32x4_t, ch: float32x4_t, y: float32x4_t| {
                vfmaq_f32(y, vcvtq_f32_s32(acc), vmulq_f32(scale, ch))
            };
            let out = float32x4x4_t(
                out(acc[0], ch.0, yv.0),
                out(acc[1], ch.1, yv.1),
                out(acc[2], ch.2, yv.2),
                out(acc[3], ch.3, yv.3),
            );
            vst1q_f32_x4(y.as_mut_ptr().add(c0), out);
            c0 += NB;
        }
    }
}
