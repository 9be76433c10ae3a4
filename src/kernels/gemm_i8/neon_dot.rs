//! The aarch64 dot-product micro-kernel of [`super::linear`] (Cortex-A76/A78: Pi 5, Jetson
//! Orin): 4 rows × 16 channels, `sdot` by element, the rescale in registers.
//!
//! Per group of four quads (16 k): one 64-byte load of the tile's four rows (each row's four
//! quads in one register, one per lane; the rows are interleaved so once per call), then per
//! quad one four-register load of the block's weights (16 channels × 4 bytes) and
//! 16 `sdot`s (4 rows × 4 registers of 4 channels). Four products per i32 lane, so nothing
//! can overflow and no corrections are needed. Against tract's `arm64simd_mmm_i32_8x8_dot`
//! (the path before this kernel) it also drops the separate quantize, packing and dequantize
//! passes: rows arrive quantized, and leave as f32 with zero point, scales and bias applied.
//!
//! `sdot` is written with `asm!`: its intrinsics (`vdotq_laneq_s32`) are not stable in Rust
//! 1.95.

use std::arch::aarch64::*;
use std::arch::asm;

use super::neon::{BlockConstants, finish_tile};
use super::{MR, NB, PackedWeights, Rescale};

/// # Safety
/// The CPU must have dot-product; shapes as [`super::linear`] asserts them.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn linear(
    x: &[u8],
    m: usize,
    w: &PackedWeights,
    rescale: &Rescale,
    y: &mut [f32],
) {
    let kq = w.quads();
    let kp = kq * 4;
    let groups = kq / 4;
    // The rows tile by tile and group by group, `[tile][group][row][16 bytes]` (rows past `m`
    // repeat the last): each group's four rows are one 64-byte load instead of four. Written
    // once here, read once per block of channels.
    let tiles = m.div_ceil(MR);
    let mut xt = vec![0u8; tiles * groups * MR * 16];
    for (t, tile) in xt.chunks_exact_mut(groups * MR * 16).enumerate() {
        for (g, group) in tile.chunks_exact_mut(MR * 16).enumerate() {
            for (r, dst) in group.chunks_exact_mut(16).enumerate() {
                let row = (t * MR + r).min(m - 1);
                dst.copy_from_slice(&x[row * kp + 16 * g..][..16]);
            }
        }
    }
    for block in 0..w.n.div_ceil(NB) {
        // SAFETY (all raw reads below): block `block` holds kq quads × NB channels × 4 bytes,
        // a tile of `xt` holds `groups` × 64 bytes.
        let wp = unsafe { w.data.as_ptr().add(block * kq * NB * 4) };
        let consts = BlockConstants::new(w, rescale, block);
        for (t, m0) in (0..m).step_by(MR).enumerate() {
            let rows: [usize; MR] = std::array::from_fn(|r| (m0 + r).min(m - 1));
            let mut xg = unsafe { xt.as_ptr().add(t * groups * MR * 16) };
            let mut wg = wp;
            // A whole tile (four rows, 16 channels, no corrections: nearly all of them) starts
            // from −zero · col_sum, so its epilogue only scales; the others start from 0.
            let whole = m0 + MR <= m && consts.width == NB && !w.has_corrections(block);
            // acc[4r + j] = channels 4j..4j+4 of row r.
            let mut acc = [vdupq_n_s32(0); 16];
            if whole {
                acc = consts.zero_point_start(&rescale.zeros[m0..m0 + MR]);
            }
            for _ in 0..groups {
                // One group (four quads): each row's four quads into v0-v3 (one per lane),
                // then per quad the block's 16 channels into v4-v7 and 16 `sdot`s by element.
                // One `asm!` with pinned registers (accumulators v16-v31): from per-instruction
                // `asm!` LLVM shuffled the accumulators with ~10 `mov`s per group.
                // SAFETY: reads 64 bytes of the tile and 256 of the block, all in bounds.
                unsafe {
                    asm!(
                    "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{x}], #64",
                    "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
                    "sdot v16.4s, v4.16b, v0.4b[0]",
                    "sdot v17.4s, v5.16b, v0.4b[0]",
                    "sdot v18.4s, v6.16b, v0.4b[0]",
                    "sdot v19.4s, v7.16b, v0.4b[0]",
                    "sdot v20.4s, v4.16b, v1.4b[0]",
                    "sdot v21.4s, v5.16b, v1.4b[0]",
                    "sdot v22.4s, v6.16b, v1.4b[0]",
                    "sdot v23.4s, v7.16b, v1.4b[0]",
                    "sdot v24.4s, v4.16b, v2.4b[0]",
                    "sdot v25.4s, v5.16b, v2.4b[0]",
                    "sdot v26.4s, v6.16b, v2.4b[0]",
                    "sdot v27.4s, v7.16b, v2.4b[0]",
                    "sdot v28.4s, v4.16b, v3.4b[0]",
                    "sdot v29.4s, v5.16b, v3.4b[0]",
                    "sdot v30.4s, v6.16b, v3.4b[0]",
                    "sdot v31.4s, v7.16b, v3.4b[0]",
                    "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
                    "sdot v16.4s, v4.16b, v0.4b[1]",
                    "sdot v17.4s, v5.16b, v0.4b[1]",
                    "sdot v18.4s, v6.16b, v0.4b[1]",
                    "sdot v19.4s, v7.16b, v0.4b[1]",
                    "sdot v20.4s, v4.16b, v1.4b[1]",
                    "sdot v21.4s, v5.16b, v1.4b[1]",
                    "sdot v22.4s, v6.16b, v1.4b[1]",
                    "sdot v23.4s, v7.16b, v1.4b[1]",
                    "sdot v24.4s, v4.16b, v2.4b[1]",
                    "sdot v25.4s, v5.16b, v2.4b[1]",
                    "sdot v26.4s, v6.16b, v2.4b[1]",
                    "sdot v27.4s, v7.16b, v2.4b[1]",
                    "sdot v28.4s, v4.16b, v3.4b[1]",
                    "sdot v29.4s, v5.16b, v3.4b[1]",
                    "sdot v30.4s, v6.16b, v3.4b[1]",
                    "sdot v31.4s, v7.16b, v3.4b[1]",
                    "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
                    "sdot v16.4s, v4.16b, v0.4b[2]",
                    "sdot v17.4s, v5.16b, v0.4b[2]",
                    "sdot v18.4s, v6.16b, v0.4b[2]",
                    "sdot v19.4s, v7.16b, v0.4b[2]",
                    "sdot v20.4s, v4.16b, v1.4b[2]",
                    "sdot v21.4s, v5.16b, v1.4b[2]",
                    "sdot v22.4s, v6.16b, v1.4b[2]",
                    "sdot v23.4s, v7.16b, v1.4b[2]",
                    "sdot v24.4s, v4.16b, v2.4b[2]",
                    "sdot v25.4s, v5.16b, v2.4b[2]",
                    "sdot v26.4s, v6.16b, v2.4b[2]",
                    "sdot v27.4s, v7.16b, v2.4b[2]",
                    "sdot v28.4s, v4.16b, v3.4b[2]",
                    "sdot v29.4s, v5.16b, v3.4b[2]",
                    "sdot v30.4s, v6.16b, v3.4b[2]",
                    "sdot v31.4s, v7.16b, v3.4b[2]",
                    "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64",
                    "sdot v16.4s, v4.16b, v0.4b[3]",
                    "sdot v17.4s, v5.16b, v0.4b[3]",
                    "sdot v18.4s, v6.16b, v0.4b[3]",
                    "sdot v19.4s, v7.16b, v0.4b[3]",
                    "sdot v20.4s, v4.16b, v1.4b[3]",
                    "sdot v21.4s, v5.16b, v1.4b[3]",
                    "sdot v22.4s, v6.16b, v1.4b[3]",
                    "sdot v23.4s, v7.16b, v1.4b[3]",
                    "sdot v24.4s, v4.16b, v2.4b[3]",
                    "sdot v25.4s, v5.16b, v2.4b[3]",
                    "sdot v26.4s, v6.16b, v2.4b[3]",
                    "sdot v27.4s, v7.16b, v2.4b[3]",
                    "sdot v28.4s, v4.16b, v3.4b[3]",
                    "sdot v29.4s, v5.16b, v3.4b[3]",
                    "sdot v30.4s, v6.16b, v3.4b[3]",
                    "sdot v31.4s, v7.16b, v3.4b[3]",
                    x = inout(reg) xg,
                    w = inout(reg) wg,
                    inout("v16") acc[0],
                    inout("v17") acc[1],
                    inout("v18") acc[2],
                    inout("v19") acc[3],
                    inout("v20") acc[4],
                    inout("v21") acc[5],
                    inout("v22") acc[6],
                    inout("v23") acc[7],
                    inout("v24") acc[8],
                    inout("v25") acc[9],
                    inout("v26") acc[10],
                    inout("v27") acc[11],
                    inout("v28") acc[12],
                    inout("v29") acc[13],
                    inout("v30") acc[14],
                    inout("v31") acc[15],
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
                    out("v6") _, out("v7") _,
                    options(nostack, preserves_flags, readonly)
                        );
                }
            }
            if whole {
                let y = &mut y[m0 * w.n + consts.c0..][..(MR - 1) * w.n + NB];
                consts.finish_whole_tile(&acc, &rescale.rows[m0..m0 + MR], w.n, y);
                continue;
            }
            let acc: [[int32x4_t; 4]; MR] =
                std::array::from_fn(|r| std::array::from_fn(|j| acc[4 * r + j]));
            // SAFETY: as for this function.
            unsafe { finish_tile(acc, w, block, &consts, (x, kp), (m0, m, &rows), rescale, y) };
        }
    }
}
