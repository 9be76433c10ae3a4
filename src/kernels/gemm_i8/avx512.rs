//! The x86_64 AVX-512 VNNI micro-kernel of [`super::linear`]: 8 rows × 48 channels (three
//! packed blocks), one `vpdpbusd` per row, quad and block (16 channels × 4 u8 × s8 products
//! summed into i32 lanes).
//!
//! Why: `vpdpbusd` does in one instruction what the AVX2 kernel does in three (two
//! `vpmaddubsw`, one `vpmaddwd` per 64 products), on twice the width, and it sums into i32
//! directly: no i16 stage, so no weight lanes to fit and no corrections. ONNX Runtime's MLAS
//! uses it where the CPU has it (results/bench-int8.md). The packed layout is the AVX2 kernel's:
//! per quad, channel c's four weights are bytes `4c..4c + 4` of 64, one zmm register.
//! The sums are the same exact integers as every other kernel's, so the results are too.
//!
//! Three blocks per tile: 24 independent accumulators cover `vpdpbusd`'s latency where one
//! block's 8 did not, and each broadcast activation quad feeds three products instead of one
//! (`cargo bench -p bertlite-tool --bench runtime -- linear_i8_6_layers`, session 19: 6.20 →
//! 4.43 ms at 128 rows, 0.91 → 0.71 ms at 16; two blocks per tile gave 4.99 and 0.79). The last
//! one or two blocks of a width that is not a multiple of 48 run as a tile of their own.

use std::arch::x86_64::*;

use super::{BlockConstants, NB, PackedWeights, Rescale};

/// Rows per tile: with three blocks, 24 accumulators, 3 weight registers and a broadcast quad
/// fit the 32 zmm registers.
const MR: usize = 8;

/// # Safety
/// AVX-512 F, BW and VNNI must be present; shapes as [`super::linear`] asserts them.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn linear(
    x: &[u8],
    m: usize,
    w: &PackedWeights,
    rescale: &Rescale,
    y: &mut [f32],
) {
    let blocks = w.n.div_ceil(NB);
    let mut block = 0;
    while block < blocks {
        let tile = (blocks - block).min(3);
        // SAFETY: as this function's; blocks `block..block + tile` exist.
        unsafe {
            match tile {
                3 => tile_rows::<3>(x, m, w, rescale, y, block),
                2 => tile_rows::<2>(x, m, w, rescale, y, block),
                _ => tile_rows::<1>(x, m, w, rescale, y, block),
            }
        }
        block += tile;
    }
}

/// Every row tile of blocks `first..first + B`.
///
/// # Safety
/// As [`linear`]; blocks `first..first + B` exist.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_rows<const B: usize>(
    x: &[u8],
    m: usize,
    w: &PackedWeights,
    rescale: &Rescale,
    y: &mut [f32],
    first: usize,
) {
    let kq = w.quads();
    let n = w.n;
    let xp = x.as_ptr();
    // SAFETY (all raw reads below): block b holds kq quads × 64 bytes; rows hold kq × 4 bytes
    // and their index is clamped to m − 1.
    let wp: [*const u8; B] =
        std::array::from_fn(|b| unsafe { w.data.as_ptr().add((first + b) * kq * NB * 4) as _ });
    let consts: [BlockConstants; B] =
        std::array::from_fn(|b| BlockConstants::new(w, rescale, first + b));
    let (cs, bias, sums): ([__m512; B], [__m512; B], [__m512i; B]) = unsafe {
        (
            std::array::from_fn(|b| _mm512_loadu_ps(consts[b].lanes.scales.as_ptr())),
            std::array::from_fn(|b| _mm512_loadu_ps(consts[b].lanes.bias.as_ptr())),
            std::array::from_fn(|b| {
                _mm512_loadu_si512(consts[b].lanes.sums.as_ptr() as *const __m512i)
            }),
        )
    };
    // Stores of each block's channels only (all 16 but in the last block of an odd n).
    let masks: [__mmask16; B] = std::array::from_fn(|b| {
        let width = consts[b].width;
        if width == NB { !0 } else { (1 << width) - 1 }
    });
    for m0 in (0..m).step_by(MR) {
        let rows: [*const i32; MR] =
            std::array::from_fn(|r| unsafe { xp.add((m0 + r).min(m - 1) * kq * 4) as *const i32 });
        let mut acc = [[_mm512_setzero_si512(); B]; MR];
        for q in 0..kq {
            unsafe {
                let wq: [__m512i; B] = std::array::from_fn(|b| {
                    _mm512_loadu_si512(wp[b].add(q * NB * 4) as *const __m512i)
                });
                for r in 0..MR {
                    let xq = _mm512_set1_epi32(rows[r].add(q).read_unaligned());
                    for b in 0..B {
                        acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], xq, wq[b]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = m0 + r;
            if row >= m {
                break;
            }
            let zero = _mm512_set1_epi32(rescale.zeros[row]);
            let rs = _mm512_set1_ps(rescale.rows[row]);
            for b in 0..B {
                let scale = _mm512_mul_ps(rs, cs[b]);
                let exact = _mm512_sub_epi32(acc[b], _mm512_mullo_epi32(zero, sums[b]));
                let out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, bias[b]);
                let BlockConstants { c0, width, .. } = consts[b];
                let dst = &mut y[row * n + c0..][..width];
                // SAFETY: the mask writes `width` floats, all inside `dst`.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), masks[b], out) };
            }
        }
    }
}
