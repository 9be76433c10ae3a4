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

use super::neon::finish_tile;
use super::{BlockConstants, MR, NB, PackedWeights, Rescale};

/// One group (four quads, 16 k) of a tile: the four rows' quads into v0-v3 (row r's in vr, one
/// quad per lane), then per quad the block's 16 channels into v4-v7 and 16 `sdot`s by element
/// into v16-v31 (`acc[4r + j]` = channels 4j..4j+4 of row r). `{x}` and `{w}` advance.
macro_rules! sdot_group {
    () => {
        concat!(
            "ld1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [{x}], #64\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            "sdot v16.4s, v4.16b, v0.4b[0]\n",
            "sdot v17.4s, v5.16b, v0.4b[0]\n",
            "sdot v18.4s, v6.16b, v0.4b[0]\n",
            "sdot v19.4s, v7.16b, v0.4b[0]\n",
            "sdot v20.4s, v4.16b, v1.4b[0]\n",
            "sdot v21.4s, v5.16b, v1.4b[0]\n",
            "sdot v22.4s, v6.16b, v1.4b[0]\n",
            "sdot v23.4s, v7.16b, v1.4b[0]\n",
            "sdot v24.4s, v4.16b, v2.4b[0]\n",
            "sdot v25.4s, v5.16b, v2.4b[0]\n",
            "sdot v26.4s, v6.16b, v2.4b[0]\n",
            "sdot v27.4s, v7.16b, v2.4b[0]\n",
            "sdot v28.4s, v4.16b, v3.4b[0]\n",
            "sdot v29.4s, v5.16b, v3.4b[0]\n",
            "sdot v30.4s, v6.16b, v3.4b[0]\n",
            "sdot v31.4s, v7.16b, v3.4b[0]\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            "sdot v16.4s, v4.16b, v0.4b[1]\n",
            "sdot v17.4s, v5.16b, v0.4b[1]\n",
            "sdot v18.4s, v6.16b, v0.4b[1]\n",
            "sdot v19.4s, v7.16b, v0.4b[1]\n",
            "sdot v20.4s, v4.16b, v1.4b[1]\n",
            "sdot v21.4s, v5.16b, v1.4b[1]\n",
            "sdot v22.4s, v6.16b, v1.4b[1]\n",
            "sdot v23.4s, v7.16b, v1.4b[1]\n",
            "sdot v24.4s, v4.16b, v2.4b[1]\n",
            "sdot v25.4s, v5.16b, v2.4b[1]\n",
            "sdot v26.4s, v6.16b, v2.4b[1]\n",
            "sdot v27.4s, v7.16b, v2.4b[1]\n",
            "sdot v28.4s, v4.16b, v3.4b[1]\n",
            "sdot v29.4s, v5.16b, v3.4b[1]\n",
            "sdot v30.4s, v6.16b, v3.4b[1]\n",
            "sdot v31.4s, v7.16b, v3.4b[1]\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            "sdot v16.4s, v4.16b, v0.4b[2]\n",
            "sdot v17.4s, v5.16b, v0.4b[2]\n",
            "sdot v18.4s, v6.16b, v0.4b[2]\n",
            "sdot v19.4s, v7.16b, v0.4b[2]\n",
            "sdot v20.4s, v4.16b, v1.4b[2]\n",
            "sdot v21.4s, v5.16b, v1.4b[2]\n",
            "sdot v22.4s, v6.16b, v1.4b[2]\n",
            "sdot v23.4s, v7.16b, v1.4b[2]\n",
            "sdot v24.4s, v4.16b, v2.4b[2]\n",
            "sdot v25.4s, v5.16b, v2.4b[2]\n",
            "sdot v26.4s, v6.16b, v2.4b[2]\n",
            "sdot v27.4s, v7.16b, v2.4b[2]\n",
            "sdot v28.4s, v4.16b, v3.4b[2]\n",
            "sdot v29.4s, v5.16b, v3.4b[2]\n",
            "sdot v30.4s, v6.16b, v3.4b[2]\n",
            "sdot v31.4s, v7.16b, v3.4b[2]\n",
            "ld1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [{w}], #64\n",
            "sdot v16.4s, v4.16b, v0.4b[3]\n",
            "sdot v17.4s, v5.16b, v0.4b[3]\n",
            "sdot v18.4s, v6.16b, v0.4b[3]\n",
            "sdot v19.4s, v7.16b, v0.4b[3]\n",
            "sdot v20.4s, v4.16b, v1.4b[3]\n",
            "sdot v21.4s, v5.16b, v1.4b[3]\n",
            "sdot v22.4s, v6.16b, v1.4b[3]\n",
            "sdot v23.4s, v7.16b, v1.4b[3]\n",
            "sdot v24.4s, v4.16b, v2.4b[3]\n",
            "sdot v25.4s, v5.16b, v2.4b[3]\n",
            "sdot v26.4s, v6.16b, v2.4b[3]\n",
            "sdot v27.4s, v7.16b, v2.4b[3]\n",
            "sdot v28.4s, v4.16b, v3.4b[3]\n",
            "sdot v29.4s, v5.16b, v3.4b[3]\n",
            "sdot v30.4s, v6.16b, v3.4b[3]\n",
            "sdot v31.4s, v7.16b, v3.4b[3]\n",
        )
    };
}
/// Also the attention's int8 score tiles (`attention/neon.rs`): 4 query rows × 16 keys.
pub(crate) use sdot_group;

/// One row of [`whole_tile`]'s epilogue, its accumulators `$a0`-`$a3`: `rs` from `{rs}`
/// (advances), the row written at `{y}` (advances by `{stride}`).
macro_rules! row_epilogue {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal) => {
        concat!(
            "ld1r {{v0.4s}}, [{rs}], #4\n",
            "fmul v1.4s, v0.4s, v5.4s\n",
            "fmul v2.4s, v0.4s, v6.4s\n",
            "fmul v3.4s, v0.4s, v7.4s\n",
            "fmul v0.4s, v0.4s, v4.4s\n",
            "scvtf ",
            $a0,
            ".4s, ",
            $a0,
            ".4s\n",
            "scvtf ",
            $a1,
            ".4s, ",
            $a1,
            ".4s\n",
            "scvtf ",
            $a2,
            ".4s, ",
            $a2,
            ".4s\n",
            "scvtf ",
            $a3,
            ".4s, ",
            $a3,
            ".4s\n",
            "mov v12.16b, v8.16b\n",
            "mov v13.16b, v9.16b\n",
            "mov v14.16b, v10.16b\n",
            "mov v15.16b, v11.16b\n",
            "fmla v12.4s, ",
            $a0,
            ".4s, v0.4s\n",
            "fmla v13.4s, ",
            $a1,
            ".4s, v1.4s\n",
            "fmla v14.4s, ",
            $a2,
            ".4s, v2.4s\n",
            "fmla v15.4s, ",
            $a3,
            ".4s, v3.4s\n",
            "st1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{y}], {stride}\n",
        )
    };
}

/// One whole tile, start to finish, in one `asm!`: the accumulators start from
/// `−zero[r] · col_sum[c]`, `groups` groups of products follow, and the epilogue writes
/// `acc · (row_scale · channel_scale) + bias` for four rows of 16 channels — the operations of
/// [`finish_tile`] on the same values, so the same results.
///
/// # Safety
/// The CPU must have dot-product; `x` holds `groups` × 64 bytes, `w` `groups` × 256; `zeros`
/// and `row_scales` four values; `y` four rows of 16 floats at a stride of `n`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn whole_tile(
    x: *const u8,
    w: *const i8,
    groups: usize,
    k: &BlockConstants,
    (zeros, row_scales): (*const i32, *const f32),
    (y, n): (*mut f32, usize),
) {
    // SAFETY: the caller's bounds; every register is declared clobbered.
    unsafe {
        asm!(
            // The start: −zero[r] (v0-v3) times the weight sums (v4-v7).
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{sums}]",
            "ld1r {{v0.4s}}, [{z}], #4",
            "ld1r {{v1.4s}}, [{z}], #4",
            "ld1r {{v2.4s}}, [{z}], #4",
            "ld1r {{v3.4s}}, [{z}]",
            "neg v0.4s, v0.4s",
            "neg v1.4s, v1.4s",
            "neg v2.4s, v2.4s",
            "neg v3.4s, v3.4s",
            "mul v16.4s, v4.4s, v0.4s",
            "mul v17.4s, v5.4s, v0.4s",
            "mul v18.4s, v6.4s, v0.4s",
            "mul v19.4s, v7.4s, v0.4s",
            "mul v20.4s, v4.4s, v1.4s",
            "mul v21.4s, v5.4s, v1.4s",
            "mul v22.4s, v6.4s, v1.4s",
            "mul v23.4s, v7.4s, v1.4s",
            "mul v24.4s, v4.4s, v2.4s",
            "mul v25.4s, v5.4s, v2.4s",
            "mul v26.4s, v6.4s, v2.4s",
            "mul v27.4s, v7.4s, v2.4s",
            "mul v28.4s, v4.4s, v3.4s",
            "mul v29.4s, v5.4s, v3.4s",
            "mul v30.4s, v6.4s, v3.4s",
            "mul v31.4s, v7.4s, v3.4s",
            // Groups two per loop step (one loop branch per 128 `sdot`s), an odd one first.
            "tbz {g}, #0, 3f",
            sdot_group!(),
            "3:",
            "lsr {g}, {g}, #1",
            "cbz {g}, 4f",
            "2:",
            sdot_group!(),
            sdot_group!(),
            "subs {g}, {g}, #1",
            "b.ne 2b",
            "4:",
            // The epilogue: channel scales v4-v7, bias v8-v11; per row, scale = rs · cs
            // (v0-v3), out = bias + f32(acc) · scale (v12-v15), one 64-byte store.
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{scales}]",
            "ld1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{bias}]",
            row_epilogue!("v16", "v17", "v18", "v19"),
            row_epilogue!("v20", "v21", "v22", "v23"),
            row_epilogue!("v24", "v25", "v26", "v27"),
            row_epilogue!("v28", "v29", "v30", "v31"),
            x = inout(reg) x => _,
            w = inout(reg) w => _,
            g = inout(reg) groups => _,
            z = inout(reg) zeros => _,
            rs = inout(reg) row_scales => _,
            y = inout(reg) y => _,
            stride = in(reg) n * 4,
            sums = in(reg) k.lanes.sums.as_ptr(),
            scales = in(reg) k.lanes.scales.as_ptr(),
            bias = in(reg) k.lanes.bias.as_ptr(),
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
            out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _, out("v16") _, out("v17") _,
            out("v18") _, out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _,
            out("v30") _, out("v31") _,
            options(nostack)
        );
    }
}

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
        // Whole tiles (four rows, 16 channels, no corrections: nearly all of them) in one
        // `asm!` each; the rest through the general epilogue.
        let whole = if consts.width == NB && !w.has_corrections(block) { m / MR } else { 0 };
        for t in 0..whole {
            // SAFETY: tile t of `xt`, block `block` of the weights, rows 4t..4t + 4 < m of the
            // rescale and of y (n per row, channels c0..c0 + 16 ≤ n).
            unsafe {
                whole_tile(
                    xt.as_ptr().add(t * groups * MR * 16),
                    wp,
                    groups,
                    &consts,
                    (rescale.zeros.as_ptr().add(t * MR), rescale.rows.as_ptr().add(t * MR)),
                    (y.as_mut_ptr().add(t * MR * w.n + consts.c0), w.n),
                )
            };
        }
        for (t, m0) in (0..m).step_by(MR).enumerate().skip(whole) {
            let rows: [usize; MR] = std::array::from_fn(|r| (m0 + r).min(m - 1));
            let mut xg = unsafe { xt.as_ptr().add(t * groups * MR * 16) };
            let mut wg = wp;
            // acc[4r + j] = channels 4j..4j+4 of row r.
            let mut acc = [vdupq_n_s32(0); 16];
            for _ in 0..groups {
                // One group (four quads): each row's four quads into v0-v3 (one per lane),
                // then per quad the block's 16 channels into v4-v7 and 16 `sdot`s by element.
                // One `asm!` with pinned registers (accumulators v16-v31): from per-instruction
                // `asm!` LLVM shuffled the accumulators with ~10 `mov`s per group.
                // SAFETY: reads 64 bytes of the tile and 256 of the block, all in bounds.
                unsafe {
                    asm!(
                    sdot_group!(),
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
            let acc: [[int32x4_t; 4]; MR] =
                std::array::from_fn(|r| std::array::from_fn(|j| acc[4 * r + j]));
            // SAFETY: as for this function.
            unsafe { finish_tile(acc, w, block, &consts, (x, kp), (m0, m, &rows), rescale, y) };
        }
    }
}
