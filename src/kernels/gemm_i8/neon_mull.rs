//! The aarch64 micro-kernel of [`super::linear`] for cores without dot-product (Cortex-A72 of
//! the Pi 4, Cortex-A57 of the Jetson Nano): 2 rows × 16 channels.
//!
//! A 128-bit register holds four channels × one quad; a row's quad is broadcast to all four
//! 32-bit lanes (`ld4r` broadcasts a row's four quads of a group at once). `smull` multiplies
//! the low eight bytes (channels 0-1) into eight i16 lanes, `smull2` the high eight (channels
//! 2-3); `smlal`/`smlal2` add the group's next three quads into the same lanes, so each i16
//! lane sums four products — exact because
//! [`super::PackedWeights::pack`] keeps every lane's four weights within ±258 (the rest goes
//! to the corrections), as on AVX2. `sadalp` then adds lane pairs into i32: ten instructions
//! per 64 products, where tract's `smlal`-by-element kernel needs 16 and f32 `fmla` needs 16.
//! A final `addp` folds each channel's two i32 halves.

use std::arch::aarch64::*;
use std::arch::asm;

use super::neon::finish_tile;
use super::{BlockConstants, NB, PackedWeights, Rescale};

/// Rows per tile: 2 rows × 8 i32 accumulators (v16-v31), 8 broadcast quads (v0-v7), 4 weight
/// registers (v8-v11) and two i16 chains (v12, v13) fill 30 of the 32 vector registers.
const MR: usize = 2;

/// # Safety
/// Shapes as [`super::linear`] asserts them (NEON is always present on aarch64).
#[target_feature(enable = "neon")]
pub(super) unsafe fn linear(
    x: &[u8],
    m: usize,
    w: &PackedWeights,
    rescale: &Rescale,
    y: &mut [f32],
) {
    let kq = w.quads();
    let kp = kq * 4;
    for block in 0..w.n.div_ceil(NB) {
        // SAFETY (all raw reads below): block `block` holds kq quads × NB channels × 4 bytes,
        // rows hold kp bytes, kp is a multiple of 16.
        let wp = unsafe { w.data.as_ptr().add(block * kq * NB * 4) };
        let consts = BlockConstants::new(w, rescale, block);
        for m0 in (0..m).step_by(MR) {
            let rows: [usize; MR] = std::array::from_fn(|r| (m0 + r).min(m - 1));
            let xr: [*const u8; MR] =
                std::array::from_fn(|r| unsafe { x.as_ptr().add(rows[r] * kp) });
            let [mut x0, mut x1] = xr;
            let mut wg = wp;
            // acc[8r + 2jr] = channels 4jr, 4jr+1 of row r (two i32 halves each),
            // acc[8r + 2jr + 1] = channels 4jr+2, 4jr+3.
            let mut acc = [vdupq_n_s32(0); 16];
            for _ in 0..kq / 4 {
                // One group (four quads) of both rows: each row's four quads broadcast into
                // v0-v3 / v4-v7 (one `ld4r` per row: four `ld1r`s' work, 6 of the group's 92
                // instructions fewer), then per four channels (v8-v11, one register per quad)
                // `smull`/`smull2` and three `smlal`/`smlal2` into v12 (channels 0-1) and v13
                // (2-3), `sadalp` into the accumulators. One `asm!` with pinned registers:
                // from intrinsics LLVM rewrote `smull2` into `ext` + `smull` (the broadcast's
                // halves are equal) and spilled accumulators: more instructions per
                // group than these.
                // SAFETY: reads 16 bytes of each row and 256 of the block, all in bounds.
                unsafe {
                    asm!(
                    "ld4r {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{x0}], #16",
                    "ld4r {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{x1}], #16",
                    "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64",
                    "smull v12.8h, v8.8b, v0.8b",
                    "smull2 v13.8h, v8.16b, v0.16b",
                    "smlal v12.8h, v9.8b, v1.8b",
                    "smlal2 v13.8h, v9.16b, v1.16b",
                    "smlal v12.8h, v10.8b, v2.8b",
                    "smlal2 v13.8h, v10.16b, v2.16b",
                    "smlal v12.8h, v11.8b, v3.8b",
                    "smlal2 v13.8h, v11.16b, v3.16b",
                    "sadalp v16.4s, v12.8h",
                    "sadalp v17.4s, v13.8h",
                    "smull v12.8h, v8.8b, v4.8b",
                    "smull2 v13.8h, v8.16b, v4.16b",
                    "smlal v12.8h, v9.8b, v5.8b",
                    "smlal2 v13.8h, v9.16b, v5.16b",
                    "smlal v12.8h, v10.8b, v6.8b",
                    "smlal2 v13.8h, v10.16b, v6.16b",
                    "smlal v12.8h, v11.8b, v7.8b",
                    "smlal2 v13.8h, v11.16b, v7.16b",
                    "sadalp v24.4s, v12.8h",
                    "sadalp v25.4s, v13.8h",
                    "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64",
                    "smull v12.8h, v8.8b, v0.8b",
                    "smull2 v13.8h, v8.16b, v0.16b",
                    "smlal v12.8h, v9.8b, v1.8b",
                    "smlal2 v13.8h, v9.16b, v1.16b",
                    "smlal v12.8h, v10.8b, v2.8b",
                    "smlal2 v13.8h, v10.16b, v2.16b",
                    "smlal v12.8h, v11.8b, v3.8b",
                    "smlal2 v13.8h, v11.16b, v3.16b",
                    "sadalp v18.4s, v12.8h",
                    "sadalp v19.4s, v13.8h",
                    "smull v12.8h, v8.8b, v4.8b",
                    "smull2 v13.8h, v8.16b, v4.16b",
                    "smlal v12.8h, v9.8b, v5.8b",
                    "smlal2 v13.8h, v9.16b, v5.16b",
                    "smlal v12.8h, v10.8b, v6.8b",
                    "smlal2 v13.8h, v10.16b, v6.16b",
                    "smlal v12.8h, v11.8b, v7.8b",
                    "smlal2 v13.8h, v11.16b, v7.16b",
                    "sadalp v26.4s, v12.8h",
                    "sadalp v27.4s, v13.8h",
                    "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64",
                    "smull v12.8h, v8.8b, v0.8b",
                    "smull2 v13.8h, v8.16b, v0.16b",
                    "smlal v12.8h, v9.8b, v1.8b",
                    "smlal2 v13.8h, v9.16b, v1.16b",
                    "smlal v12.8h, v10.8b, v2.8b",
                    "smlal2 v13.8h, v10.16b, v2.16b",
                    "smlal v12.8h, v11.8b, v3.8b",
                    "smlal2 v13.8h, v11.16b, v3.16b",
                    "sadalp v20.4s, v12.8h",
                    "sadalp v21.4s, v13.8h",
                    "smull v12.8h, v8.8b, v4.8b",
                    "smull2 v13.8h, v8.16b, v4.16b",
                    "smlal v12.8h, v9.8b, v5.8b",
                    "smlal2 v13.8h, v9.16b, v5.16b",
                    "smlal v12.8h, v10.8b, v6.8b",
                    "smlal2 v13.8h, v10.16b, v6.16b",
                    "smlal v12.8h, v11.8b, v7.8b",
                    "smlal2 v13.8h, v11.16b, v7.16b",
                    "sadalp v28.4s, v12.8h",
                    "sadalp v29.4s, v13.8h",
                    "ld1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [{w}], #64",
                    "smull v12.8h, v8.8b, v0.8b",
                    "smull2 v13.8h, v8.16b, v0.16b",
                    "smlal v12.8h, v9.8b, v1.8b",
                    "smlal2 v13.8h, v9.16b, v1.16b",
                    "smlal v12.8h, v10.8b, v2.8b",
                    "smlal2 v13.8h, v10.16b, v2.16b",
                    "smlal v12.8h, v11.8b, v3.8b",
                    "smlal2 v13.8h, v11.16b, v3.16b",
                    "sadalp v22.4s, v12.8h",
                    "sadalp v23.4s, v13.8h",
                    "smull v12.8h, v8.8b, v4.8b",
                    "smull2 v13.8h, v8.16b, v4.16b",
                    "smlal v12.8h, v9.8b, v5.8b",
                    "smlal2 v13.8h, v9.16b, v5.16b",
                    "smlal v12.8h, v10.8b, v6.8b",
                    "smlal2 v13.8h, v10.16b, v6.16b",
                    "smlal v12.8h, v11.8b, v7.8b",
                    "smlal2 v13.8h, v11.16b, v7.16b",
                    "sadalp v30.4s, v12.8h",
                    "sadalp v31.4s, v13.8h",
                    x0 = inout(reg) x0,
                    x1 = inout(reg) x1,
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
                    out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _,
                    out("v11") _, out("v12") _, out("v13") _,
                    options(nostack, preserves_flags, readonly)
                        );
                }
            }
            let acc: [[int32x4_t; 4]; MR] = std::array::from_fn(|r| {
                std::array::from_fn(|jr| vpaddq_s32(acc[8 * r + 2 * jr], acc[8 * r + 2 * jr + 1]))
            });
            // SAFETY: as for this function.
            unsafe { finish_tile(acc, w, block, &consts, (x, kp), (m0, m, &rows), rescale, y) };
        }
    }
}
