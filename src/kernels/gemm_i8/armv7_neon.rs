//! The armv7 micro-kernel of [`super::linear`] (32-bit Raspberry Pi OS on any Pi from the 2 on:
//! Cortex-A7/A53/A72/A76 in AArch32, all with NEON): 1 row × 16 channels.
//!
//! The products are the aarch64 SMULL kernel's ([`super::neon_mull`]), on the same packing: a
//! d register holds two channels × one quad of weights, a row's quad is broadcast to both
//! 32-bit lanes of another (`vld1.32 {d[]}`); `vmull.s8` and three `vmlal.s8` sum four quads
//! into each i16 lane (exact within ±258 per lane's four weights, the rest in the
//! corrections), `vpadal.s16` adds lane pairs into i32. One row per tile: sixteen channels'
//! accumulators fill half of the sixteen q registers, the weights a quarter.
//!
//! Why assembly in `global_asm!` functions, not intrinsics or `asm!` blocks: Rust's arm NEON
//! intrinsics and `#[target_feature(enable = "neon")]` are unstable, and the default armv7
//! target compiles without NEON or d16-d31. A real function under the AAPCS is correct
//! whatever the compiler does with those registers: it saves d8-d15 itself and the caller
//! treats d16-d31 as clobbered. It runs only where tract found NEON ([`super::Kernel::native`]).

use std::arch::global_asm;

use super::{BlockConstants, BlockLanes, NB, PackedWeights, Rescale};

/// A row's scale and zero point, as the rescale function reads them.
#[repr(C)]
struct RowParams {
    scale: f32,
    zero: i32,
}

unsafe extern "C" {
    /// `acc[c] = Σ x[k] · w[c][k]` for the block's 16 channels, `groups` groups of four quads
    /// (x: 16 bytes per group; w: the block's packed weights, 256 bytes per group).
    fn bertlite_armv7_u8s8_dot_1x16(x: *const u8, w: *const i8, groups: usize, acc: *mut i32);
    /// `y[c] = (acc[c] − zero · sums[c]) · (scale · scales[c]) + bias[c]` for 16 channels.
    fn bertlite_armv7_rescale_16(
        acc: *const i32,
        lanes: *const BlockLanes,
        row: *const RowParams,
        y: *mut f32,
    );
}

/// Four channels of one group: their weights (d8-d15, quads 0-3, each as channels 0-1 | 2-3),
/// `vmull.s8` and three `vmlal.s8` into q2 (channels 0-1) and q3 (2-3), `vpadal.s16` into the
/// accumulator pair `$a`, `$b`.
macro_rules! dot_channels {
    ($a:literal, $b:literal) => {
        concat!(
            "vld1.8 {{d8-d11}}, [r1]!\n",
            "vld1.8 {{d12-d15}}, [r1]!\n",
            "vmull.s8 q2, d8, d0\n",
            "vmull.s8 q3, d9, d0\n",
            "vmlal.s8 q2, d10, d1\n",
            "vmlal.s8 q3, d11, d1\n",
            "vmlal.s8 q2, d12, d2\n",
            "vmlal.s8 q3, d13, d2\n",
            "vmlal.s8 q2, d14, d3\n",
            "vmlal.s8 q3, d15, d3\n",
            "vpadal.s16 ",
            $a,
            ", q2\n",
            "vpadal.s16 ",
            $b,
            ", q3\n",
        )
    };
}

/// One group (four quads) of the row against the block's 16 channels: the row's quads
/// broadcast into d0-d3, then channels 0-3, 4-7, 8-11, 12-15 into their accumulator pairs.
macro_rules! dot_group {
    () => {
        concat!(
            "vld1.32 {{d0[]}}, [r0]!\n",
            "vld1.32 {{d1[]}}, [r0]!\n",
            "vld1.32 {{d2[]}}, [r0]!\n",
            "vld1.32 {{d3[]}}, [r0]!\n",
            dot_channels!("q8", "q9"),
            dot_channels!("q10", "q11"),
            dot_channels!("q12", "q13"),
            dot_channels!("q14", "q15"),
        )
    };
}

// Register use, dot: d0-d3 the row's four quads of a group; d8-d15 one group of weights for
// four channels (quads 0-3, each as channels 0-1 | 2-3); q2, q3 the i16 chains of channels
// 0-1 and 2-3; q8-q15 the i32 accumulators, two per four channels (each channel's two
// halves, folded by `vpadd` at the end). Rescale: BlockLanes is scales @0, bias @64, sums
// @128 (`#[repr(C)]`); scalar operands must sit in d0-d15.
global_asm!(
    ".text",
    ".arm",
    ".fpu neon",
    ".p2align 2",
    ".globl bertlite_armv7_u8s8_dot_1x16",
    ".hidden bertlite_armv7_u8s8_dot_1x16",
    ".type bertlite_armv7_u8s8_dot_1x16, %function",
    "bertlite_armv7_u8s8_dot_1x16:",
    "vpush {{d8-d15}}",
    "vmov.i32 q8, #0",
    "vmov.i32 q9, #0",
    "vmov.i32 q10, #0",
    "vmov.i32 q11, #0",
    "vmov.i32 q12, #0",
    "vmov.i32 q13, #0",
    "vmov.i32 q14, #0",
    "vmov.i32 q15, #0",
    // Two groups per iteration (the loop's own two instructions were 4% of it); an odd
    // count does one first.
    "tst r2, #1",
    "beq 3f",
    dot_group!(),
    "3:",
    "lsrs r2, r2, #1",
    "beq 2f",
    "1:",
    dot_group!(),
    dot_group!(),
    "subs r2, r2, #1",
    "bne 1b",
    "2:",
    "vpadd.i32 d0, d16, d17",
    "vpadd.i32 d1, d18, d19",
    "vpadd.i32 d2, d20, d21",
    "vpadd.i32 d3, d22, d23",
    "vpadd.i32 d4, d24, d25",
    "vpadd.i32 d5, d26, d27",
    "vpadd.i32 d6, d28, d29",
    "vpadd.i32 d7, d30, d31",
    "vst1.32 {{d0-d3}}, [r3]!",
    "vst1.32 {{d4-d7}}, [r3]",
    "vpop {{d8-d15}}",
    "bx lr",
    ".size bertlite_armv7_u8s8_dot_1x16, . - bertlite_armv7_u8s8_dot_1x16",
    "",
    ".p2align 2",
    ".globl bertlite_armv7_rescale_16",
    ".hidden bertlite_armv7_rescale_16",
    ".type bertlite_armv7_rescale_16, %function",
    "bertlite_armv7_rescale_16:",
    "vld1.32 {{d0[]}}, [r2]!",
    "vld1.32 {{d1[]}}, [r2]",
    "vld1.32 {{d16-d19}}, [r0]!",
    "vld1.32 {{d20-d23}}, [r0]",
    "add r12, r1, #128",
    "vld1.32 {{d24-d27}}, [r12]!",
    "vld1.32 {{d28-d31}}, [r12]",
    "vmls.i32 q8, q12, d1[0]",
    "vmls.i32 q9, q13, d1[0]",
    "vmls.i32 q10, q14, d1[0]",
    "vmls.i32 q11, q15, d1[0]",
    "vcvt.f32.s32 q8, q8",
    "vcvt.f32.s32 q9, q9",
    "vcvt.f32.s32 q10, q10",
    "vcvt.f32.s32 q11, q11",
    "vld1.32 {{d24-d27}}, [r1]!",
    "vld1.32 {{d28-d31}}, [r1]!",
    "vmul.f32 q12, q12, d0[0]",
    "vmul.f32 q13, q13, d0[0]",
    "vmul.f32 q14, q14, d0[0]",
    "vmul.f32 q15, q15, d0[0]",
    "vld1.32 {{d4-d7}}, [r1]!",
    "vld1.32 {{d0-d3}}, [r1]",
    "vmla.f32 q2, q8, q12",
    "vmla.f32 q3, q9, q13",
    "vmla.f32 q0, q10, q14",
    "vmla.f32 q1, q11, q15",
    "vst1.32 {{d4-d7}}, [r3]!",
    "vst1.32 {{d0-d3}}, [r3]",
    "bx lr",
    ".size bertlite_armv7_rescale_16, . - bertlite_armv7_rescale_16",
);

/// # Safety
/// Shapes as [`super::linear`] asserts them; NEON present (tract detected it).
pub(super) unsafe fn linear(
    x: &[u8],
    m: usize,
    w: &PackedWeights,
    rescale: &Rescale,
    y: &mut [f32],
) {
    let kq = w.quads();
    let kp = kq * 4;
    let n = w.n;
    // One block's accumulators for every row: its corrections are then applied fix by fix
    // over the rows (each fix read once), not row by row.
    let mut accs = vec![[0i32; NB]; m];
    for block in 0..n.div_ceil(NB) {
        // SAFETY: block `block` holds kq quads × NB channels × 4 bytes.
        let wp = unsafe { w.data.as_ptr().add(block * kq * NB * 4) };
        let consts = BlockConstants::new(w, rescale, block);
        for (row, acc) in accs.iter_mut().enumerate() {
            // SAFETY: the row holds kp = 16 · (kq / 4) bytes, the block 256 bytes per group,
            // acc 16 i32, all written.
            unsafe {
                bertlite_armv7_u8s8_dot_1x16(x.as_ptr().add(row * kp), wp, kq / 4, acc.as_mut_ptr())
            };
        }
        for fix in &w.corrections[w.block_fixes[block]..w.block_fixes[block + 1]] {
            let (j, k) = (fix.channel as usize - consts.c0, fix.k as usize);
            for (acc, x) in accs.iter_mut().zip(x.chunks_exact(kp)) {
                acc[j] += fix.delta * i32::from(x[k]);
            }
        }
        for (row, acc) in accs.iter().enumerate() {
            let params = RowParams { scale: rescale.rows[row], zero: rescale.zeros[row] };
            let dst = &mut y[row * n + consts.c0..][..consts.width];
            if consts.width == NB {
                // SAFETY: 16 i32 in, the block's lanes, 16 writable f32 out.
                unsafe {
                    bertlite_armv7_rescale_16(
                        acc.as_ptr(),
                        &consts.lanes,
                        &params,
                        dst.as_mut_ptr(),
                    )
                };
            } else {
                let mut lanes = [0f32; NB];
                // SAFETY: as above, into a 16-lane buffer.
                unsafe {
                    bertlite_armv7_rescale_16(
                        acc.as_ptr(),
                        &consts.lanes,
                        &params,
                        lanes.as_mut_ptr(),
                    )
                };
                dst.copy_from_slice(&lanes[..consts.width]);
            }
        }
    }
}
