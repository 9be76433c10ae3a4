//! armv7 kernel for [`super::outliers`]: 16 channels per step, as the aarch64 one
//! (`outliers_neon.rs`): each input's 16 weights widened to i16 (`vmovl.s8`) and multiplied
//! into four i32 accumulators by the row's 16-bit values, by lane (`vmlal.s16`); then one
//! conversion and one fused multiply-add (`vfma.f32`, VFPv4) per output, the reference's
//! operations in its order. A `global_asm!` function for the reasons `armv7_neon.rs` gives.

use std::arch::global_asm;

use super::NB;
use crate::kernels::quantize::{OUTLIERS, Outliers};

// The lanes below are written out for four values.
const _: () = assert!(OUTLIERS == 4);

/// What the assembly reads: the four inputs' weight columns (at channel 0), their 16-bit
/// values and the row's scale.
#[repr(C)]
struct Row {
    columns: [*const i8; OUTLIERS],
    q: [i16; OUTLIERS],
    scale: f32,
}

unsafe extern "C" {
    /// `y[c] += (Σⱼ q[j] · columns[j][c]) · (scale · channels[c])` for `blocks` × 16 channels.
    fn bertlite_armv7_outliers_16(
        row: *const Row,
        channels: *const f32,
        y: *mut f32,
        blocks: usize,
    );
}

// r4-r7 the four column pointers; d0 the four values, d1[0] the scale; q8-q11 the inputs'
// weights, q12-q13 one input's widened to i16, q1-q3 and q15 the accumulators of channels
// 0-3, 4-7, 8-11, 12-15 (d8-d15 untouched: callee-saved).
global_asm!(
    ".text",
    ".arm",
    ".fpu neon-vfpv4",
    ".p2align 2",
    ".globl bertlite_armv7_outliers_16",
    ".hidden bertlite_armv7_outliers_16",
    ".type bertlite_armv7_outliers_16, %function",
    "bertlite_armv7_outliers_16:",
    "push {{r4-r7}}",
    "ldm r0, {{r4-r7}}",
    "add r12, r0, #16",
    "vld1.16 {{d0}}, [r12]!",
    "vld1.32 {{d1[]}}, [r12]",
    "cmp r3, #0",
    "beq 2f",
    "1:",
    "vld1.8 {{d16-d17}}, [r4]!",
    "vld1.8 {{d18-d19}}, [r5]!",
    "vld1.8 {{d20-d21}}, [r6]!",
    "vld1.8 {{d22-d23}}, [r7]!",
    "vmovl.s8 q12, d16",
    "vmovl.s8 q13, d17",
    "vmull.s16 q1, d24, d0[0]",
    "vmull.s16 q2, d25, d0[0]",
    "vmull.s16 q3, d26, d0[0]",
    "vmull.s16 q15, d27, d0[0]",
    "vmovl.s8 q12, d18",
    "vmovl.s8 q13, d19",
    "vmlal.s16 q1, d24, d0[1]",
    "vmlal.s16 q2, d25, d0[1]",
    "vmlal.s16 q3, d26, d0[1]",
    "vmlal.s16 q15, d27, d0[1]",
    "vmovl.s8 q12, d20",
    "vmovl.s8 q13, d21",
    "vmlal.s16 q1, d24, d0[2]",
    "vmlal.s16 q2, d25, d0[2]",
    "vmlal.s16 q3, d26, d0[2]",
    "vmlal.s16 q15, d27, d0[2]",
    "vmovl.s8 q12, d22",
    "vmovl.s8 q13, d23",
    "vmlal.s16 q1, d24, d0[3]",
    "vmlal.s16 q2, d25, d0[3]",
    "vmlal.s16 q3, d26, d0[3]",
    "vmlal.s16 q15, d27, d0[3]",
    "vcvt.f32.s32 q1, q1",
    "vcvt.f32.s32 q2, q2",
    "vcvt.f32.s32 q3, q3",
    "vcvt.f32.s32 q15, q15",
    "vld1.32 {{d16-d19}}, [r1]!",
    "vld1.32 {{d20-d23}}, [r1]!",
    "vmul.f32 q8, q8, d1[0]",
    "vmul.f32 q9, q9, d1[0]",
    "vmul.f32 q10, q10, d1[0]",
    "vmul.f32 q11, q11, d1[0]",
    "vld1.32 {{d24-d27}}, [r2]",
    "vfma.f32 q12, q1, q8",
    "vfma.f32 q13, q2, q9",
    "vst1.32 {{d24-d27}}, [r2]!",
    "vld1.32 {{d24-d27}}, [r2]",
    "vfma.f32 q12, q3, q10",
    "vfma.f32 q13, q15, q11",
    "vst1.32 {{d24-d27}}, [r2]!",
    "subs r3, r3, #1",
    "bne 1b",
    "2:",
    "pop {{r4-r7}}",
    "bx lr",
    ".size bertlite_armv7_outliers_16, . - bertlite_armv7_outliers_16",
);

/// Channels `0..full` (a multiple of 16) of one row.
///
/// # Safety
/// NEON and VFPv4 present; every `o.index[j] · n + full ≤ columns.len()`; `channels` and `y`
/// hold `full` values.
pub(super) unsafe fn add_row(
    o: &Outliers,
    columns: &[i8],
    n: usize,
    full: usize,
    channels: &[f32],
    y: &mut [f32],
) {
    // SAFETY: the caller's bounds: each column pointer starts inside `columns`.
    let row = Row {
        columns: o.index.map(|k| unsafe { columns.as_ptr().add(k as usize * n) }),
        q: o.q,
        scale: o.scale,
    };
    // SAFETY: reads 16 bytes per block from each column, 16 f32 of `channels` and `y` per
    // block, writes the same 16 of `y`: `full / 16` blocks stay inside all three.
    unsafe { bertlite_armv7_outliers_16(&row, channels.as_ptr(), y.as_mut_ptr(), full / NB) };
}
