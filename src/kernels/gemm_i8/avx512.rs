//! The x86_64 AVX-512 VNNI micro-kernel of [`super::linear`]: 8 rows × 16 channels, one
//! `vpdpbusd` per row and quad (16 channels × 4 u8 × s8 products summed into i32 lanes).
//!
//! Why: `vpdpbusd` does in one instruction what the AVX2 kernel does in three (two
//! `vpmaddubsw`, one `vpmaddwd` per 64 products), on twice the width, and it sums into i32
//! directly: no i16 stage, so no weight lanes to fit and no corrections. ONNX Runtime's MLAS
//! uses it where the CPU has it (results/bench-int8.md). The packed layout is the AVX2 kernel's:
//! per quad, channel c's four weights are bytes `4c..4c + 4` of 64, one zmm register.
//! The sums are the same exact integers as every other kernel's, so the results are too.

use std::arch::x86_64::*;

use super::{BlockConstants, NB, PackedWeights, Rescale};

/// Rows per tile: 8 accumulators and 8 broadcast quads leave room for the epilogue.
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
    let kq = w.quads();
    let n = w.n;
    let xp = x.as_ptr();
    for block in 0..n.div_ceil(NB) {
        // SAFETY (all raw reads below): block `block` holds kq quads × 64 bytes; rows hold
        // kq × 4 bytes and their index is clamped to m − 1.
        let wp = unsafe { w.data.as_ptr().add(block * kq * NB * 4) };
        let BlockConstants { c0, width, lanes } = BlockConstants::new(w, rescale, block);
        let (cs, bias, sums) = unsafe {
            (
                _mm512_loadu_ps(lanes.scales.as_ptr()),
                _mm512_loadu_ps(lanes.bias.as_ptr()),
                _mm512_loadu_si512(lanes.sums.as_ptr() as *const __m512i),
            )
        };
        // Stores of the block's channels only (all 16 but in the last block of an odd n).
        let lanes: __mmask16 = if width == NB { !0 } else { (1 << width) - 1 };
        for m0 in (0..m).step_by(MR) {
            let rows: [*const i32; MR] = std::array::from_fn(|r| unsafe {
                xp.add((m0 + r).min(m - 1) * kq * 4) as *const i32
            });
            let mut acc = [_mm512_setzero_si512(); MR];
            for q in 0..kq {
                unsafe {
                    let wq = _mm512_loadu_si512(wp.add(q * NB * 4) as *const __m512i);
                    for r in 0..MR {
                        let xq = _mm512_set1_epi32(rows[r].add(q).read_unaligned());
                        acc[r] = _mm512_dpbusd_epi32(acc[r], xq, wq);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let row = m0 + r;
                if row >= m {
                    break;
                }
                let scale = _mm512_mul_ps(_mm512_set1_ps(rescale.rows[row]), cs);
                let zero = _mm512_set1_epi32(rescale.zeros[row]);
                let exact = _mm512_sub_epi32(*acc, _mm512_mullo_epi32(zero, sums));
                let out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, bias);
                let dst = &mut y[row * n + c0..][..width];
                // SAFETY: the mask writes `width` floats, all inside `dst`.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), lanes, out) };
            }
        }
    }
}
