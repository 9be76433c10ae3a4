//! The armv7 NEON form of [`super::quantize_row_split`], the aarch64 form's two passes
//! (`neon.rs`) as `global_asm!` functions (for the reasons `gemm_i8/armv7_neon.rs` gives).
//!
//! Pass 1 (`bertlite_armv7_chunk_stats`) keeps each chunk of 16's peak magnitude, minimum and
//! maximum; pass 2 (`bertlite_armv7_quantize_16`) rounds half to even as the portable form
//! does (adding 1.5·2²³: armv7 NEON has no rounding conversion) and narrows with saturation.
//! NEON flushes subnormals to zero, which changes neither pass for a row whose range is at
//! least 2⁻¹⁰⁰: a subnormal minimum or maximum is then below half an ulp of the range (which
//! stays the same) and of the zero point, and a subnormal times the scale rounds to 0 either
//! way. Other rows go to the portable form, so results are identical to it (the tests in
//! `mod.rs` hold them to it).

use std::arch::global_asm;
use std::mem::MaybeUninit;

use super::{ACTIVATION_MAX, Largest, MAX_CHUNKS, RowQuant, outliers_and_rest_range};

/// Where pass 1 writes: one value per chunk in each array, and the lane peaks.
#[repr(C)]
struct Stats {
    peaks: *mut u32,
    lows: *mut f32,
    highs: *mut f32,
    lane_peaks: *mut [u32; 4],
}

/// Pass 2's scale and zero point.
#[repr(C)]
struct Grid {
    inv: f32,
    zero: i32,
}

unsafe extern "C" {
    fn bertlite_armv7_chunk_stats(x: *const f32, chunks: usize, stats: *const Stats);
    fn bertlite_armv7_quantize_16(x: *const f32, out: *mut u8, chunks: usize, grid: *const Grid);
}

global_asm!(
    ".text",
    ".arm",
    ".fpu neon",
    ".p2align 2",
    ".globl bertlite_armv7_chunk_stats",
    ".hidden bertlite_armv7_chunk_stats",
    ".type bertlite_armv7_chunk_stats, %function",
    // q0-q3 a chunk, q14 the magnitude mask, q15 the lane peaks, q8-q11 work.
    "bertlite_armv7_chunk_stats:",
    "push {{r4-r7}}",
    "ldm r2, {{r4-r7}}",
    "vmov.i32 q15, #0",
    "vmvn.i32 q14, #0x80000000",
    "cmp r1, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d0-d3}}, [r0]!",
    "vld1.32 {{d4-d7}}, [r0]!",
    "vand q8, q0, q14",
    "vand q9, q1, q14",
    "vand q10, q2, q14",
    "vand q11, q3, q14",
    "vmax.u32 q8, q8, q9",
    "vmax.u32 q10, q10, q11",
    "vmax.u32 q8, q8, q10",
    "vmax.u32 q15, q15, q8",
    "vpmax.u32 d16, d16, d17",
    "vpmax.u32 d16, d16, d16",
    "vst1.32 {{d16[0]}}, [r4]!",
    "vmin.f32 q8, q0, q1",
    "vmin.f32 q9, q2, q3",
    "vmin.f32 q8, q8, q9",
    "vpmin.f32 d16, d16, d17",
    "vpmin.f32 d16, d16, d16",
    "vst1.32 {{d16[0]}}, [r5]!",
    "vmax.f32 q8, q0, q1",
    "vmax.f32 q9, q2, q3",
    "vmax.f32 q8, q8, q9",
    "vpmax.f32 d16, d16, d17",
    "vpmax.f32 d16, d16, d16",
    "vst1.32 {{d16[0]}}, [r6]!",
    "subs r1, r1, #1",
    "bne 1b",
    "2:",
    "vst1.32 {{d30-d31}}, [r7]",
    "pop {{r4-r7}}",
    "bx lr",
    ".size bertlite_armv7_chunk_stats, . - bertlite_armv7_chunk_stats",
    "",
    ".p2align 2",
    ".globl bertlite_armv7_quantize_16",
    ".hidden bertlite_armv7_quantize_16",
    ".type bertlite_armv7_quantize_16, %function",
    // q0 the scale, q2 1.5·2²³, q3 the zero point less 1.5·2²³'s bits, q15 the top (127).
    "bertlite_armv7_quantize_16:",
    "vld1.32 {{d0[], d1[]}}, [r3]!",
    "vld1.32 {{d2[], d3[]}}, [r3]",
    "movw r12, #0x0000",
    "movt r12, #0x4b40",
    "vdup.32 q2, r12",
    "vsub.i32 q3, q1, q2",
    "vmov.i8 q15, #127",
    "cmp r2, #0",
    "beq 2f",
    "1:",
    "vld1.32 {{d16-d19}}, [r0]!",
    "vld1.32 {{d20-d23}}, [r0]!",
    "vmul.f32 q8, q8, q0",
    "vmul.f32 q9, q9, q0",
    "vmul.f32 q10, q10, q0",
    "vmul.f32 q11, q11, q0",
    "vadd.f32 q8, q8, q2",
    "vadd.f32 q9, q9, q2",
    "vadd.f32 q10, q10, q2",
    "vadd.f32 q11, q11, q2",
    "vadd.i32 q8, q8, q3",
    "vadd.i32 q9, q9, q3",
    "vadd.i32 q10, q10, q3",
    "vadd.i32 q11, q11, q3",
    "vqmovun.s32 d16, q8",
    "vqmovun.s32 d17, q9",
    "vqmovun.s32 d18, q10",
    "vqmovun.s32 d19, q11",
    "vqmovn.u16 d16, q8",
    "vqmovn.u16 d17, q9",
    "vmin.u8 q8, q8, q15",
    "vst1.8 {{d16-d17}}, [r1]!",
    "subs r2, r2, #1",
    "bne 1b",
    "2:",
    "bx lr",
    ".size bertlite_armv7_quantize_16, . - bertlite_armv7_quantize_16",
);

/// `None` where the portable form must decide (see the module doc and `neon.rs`).
///
/// # Safety
/// NEON present.
pub(super) unsafe fn quantize_row_split(x: &[f32], out: &mut [u8]) -> Option<(RowQuant, Largest)> {
    let k = x.len();
    let chunks = k / 16;
    if k == 0 || !k.is_multiple_of(16) || chunks > MAX_CHUNKS || out.len() != k {
        return None;
    }
    // Uninitialized: pass 1 writes the first `chunks` of each, and only those are read (zeroing
    // three 1 KB arrays per row was a visible memset in cross/insn-profile.sh).
    let mut peaks = MaybeUninit::<[u32; MAX_CHUNKS]>::uninit();
    let mut lows = MaybeUninit::<[f32; MAX_CHUNKS]>::uninit();
    let mut highs = MaybeUninit::<[f32; MAX_CHUNKS]>::uninit();
    let mut lane_peaks = [0u32; 4];
    let stats = Stats {
        peaks: peaks.as_mut_ptr().cast(),
        lows: lows.as_mut_ptr().cast(),
        highs: highs.as_mut_ptr().cast(),
        lane_peaks: &mut lane_peaks,
    };
    // SAFETY: reads 16 floats per chunk (chunks · 16 = k), writes one value per chunk into
    // arrays of MAX_CHUNKS ≥ chunks; the slices below cover exactly those written values.
    let (peaks, lows, highs) = unsafe {
        bertlite_armv7_chunk_stats(x.as_ptr(), chunks, &stats);
        (
            std::slice::from_raw_parts(stats.peaks.cast_const(), chunks),
            std::slice::from_raw_parts_mut(stats.lows, chunks),
            std::slice::from_raw_parts_mut(stats.highs, chunks),
        )
    };
    let worst = lane_peaks.iter().copied().fold(0, u32::max);
    let bound = lane_peaks.iter().copied().fold(u32::MAX, u32::min);
    if worst >= f32::INFINITY.to_bits() {
        return None;
    }
    // The lane peaks bound the 4th largest from below, as in `neon.rs`.
    const _: () = assert!(super::OUTLIERS == 4);
    let (largest, lo, range) = outliers_and_rest_range(x, peaks, lows, highs, bound)?;
    if range < 2f32.powi(-100) {
        return None;
    }
    let inv = f32::from(ACTIVATION_MAX) / range;
    let zero = super::round_even(-lo * inv);
    // SAFETY: reads 16 floats and writes 16 bytes per chunk; out.len() = k.
    unsafe {
        bertlite_armv7_quantize_16(x.as_ptr(), out.as_mut_ptr(), chunks, &Grid { inv, zero })
    };
    for (i, _) in largest.iter() {
        out[i] = zero as u8;
    }
    Some((RowQuant { scale: range / f32::from(ACTIVATION_MAX), zero }, largest))
}
