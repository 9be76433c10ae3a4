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
//!
//! The rows' split-off outliers ([`super::outliers`]) are summed per tile from the packed
//! weights the tile has just read ([`outlier_sums`]) and added in the same epilogue, before
//! the store: the separate pass read every output back and each outlier's weights from the
//! transposed copy, and cost 6.6% of an int8 inference at 128 tokens (`perf record`); this
//! way they cost about 4.5%. Same i32 sums and the same fused multiply-add onto the same f32
//! result as that pass, so the outputs are the same bit for bit (results/precision.md has
//! the timings).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::{BlockConstants, NB, PackedWeights, Rescale};
use crate::kernels::quantize::{OUTLIERS, Outliers};

// Outliers are taken in pairs (`vpdpwssd`).
const _: () = assert!(OUTLIERS.is_multiple_of(2));

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

/// Blocks `first..first + B` of a tile: their weights and what the epilogue of every row
/// reads (this kernel's and the AMX kernel's).
pub(super) struct Blocks<const B: usize> {
    /// Each block's packed weights.
    pub(super) wp: [*const u8; B],
    pub(super) consts: [BlockConstants; B],
    pub(super) cs: [__m512; B],
    pub(super) bias: [__m512; B],
    pub(super) sums: [__m512i; B],
    /// Stores of each block's channels only (all 16 but in the last block of an odd n).
    pub(super) masks: [__mmask16; B],
}

impl<const B: usize> Blocks<B> {
    /// # Safety
    /// AVX-512 F is present; blocks `first..first + B` exist.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn new(w: &PackedWeights, rescale: &Rescale, first: usize) -> Blocks<B> {
        let kq = w.quads();
        // SAFETY: block b holds kq quads × 64 bytes.
        let wp = std::array::from_fn(|b| unsafe {
            w.data.as_ptr().add((first + b) * kq * NB * 4) as *const u8
        });
        let consts: [BlockConstants; B] =
            std::array::from_fn(|b| BlockConstants::new(w, rescale, first + b));
        // SAFETY: 16 lanes each.
        let (cs, bias, sums) = unsafe {
            (
                std::array::from_fn(|b| _mm512_loadu_ps(consts[b].lanes.scales.as_ptr())),
                std::array::from_fn(|b| _mm512_loadu_ps(consts[b].lanes.bias.as_ptr())),
                std::array::from_fn(|b| {
                    _mm512_loadu_si512(consts[b].lanes.sums.as_ptr() as *const __m512i)
                }),
            )
        };
        let masks = std::array::from_fn(|b| {
            let width = consts[b].width;
            if width == NB { !0 } else { (1 << width) - 1 }
        });
        Blocks { wp, consts, cs, bias, sums, masks }
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
    // SAFETY (the raw reads below): rows hold kq × 4 bytes and their index is clamped to
    // m − 1; blocks `first..first + B` exist.
    let Blocks { wp, consts, cs, bias, sums, masks } =
        unsafe { Blocks::<B>::new(w, rescale, first) };
    for m0 in (0..m).step_by(MR) {
        let rows: [*const i32; MR] =
            std::array::from_fn(|r| unsafe { xp.add((m0 + r).min(m - 1) * kq * 4) as *const i32 });
        // The first quad's products start the sums: an accumulator array initialized with
        // zeros was a 1.5 KB `memset` call per tile (2–3% of an int8 inference, `perf
        // annotate`), though the loop then keeps the sums in registers.
        let first = |r: usize, wq: &[__m512i; B]| -> [__m512i; B] {
            let xq = unsafe { _mm512_set1_epi32(rows[r].read_unaligned()) };
            std::array::from_fn(|b| _mm512_dpbusd_epi32(_mm512_setzero_si512(), xq, wq[b]))
        };
        let wq0: [__m512i; B] = std::array::from_fn(|b| unsafe {
            if kq > 0 {
                _mm512_loadu_si512(wp[b] as *const __m512i)
            } else {
                _mm512_setzero_si512()
            }
        });
        let mut acc: [[__m512i; B]; MR] = if kq > 0 {
            std::array::from_fn(|r| first(r, &wq0))
        } else {
            [[_mm512_setzero_si512(); B]; MR]
        };
        for q in 1..kq {
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
        // The rows' outlier sums, computed apart (see `outlier_sums`), added below. Left
        // uninitialized: written for exactly the rows read (those with outliers), and zeroing
        // the tile's 1.5 KB was a `memset` call per tile.
        let mut extra = [[MaybeUninit::<__m512i>::uninit(); B]; MR];
        let outliers = rescale.outliers.map(|o| &o[m0..(m0 + MR).min(m)]);
        if let Some(o) = outliers {
            // SAFETY: indices < k (`linear` asserts it), so their quads are in every block.
            unsafe { outlier_sums(o, wp, &mut extra) };
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = m0 + r;
            if row >= m {
                break;
            }
            let zero = _mm512_set1_epi32(rescale.zeros[row]);
            let rs = _mm512_set1_ps(rescale.rows[row]);
            let o = outliers.map(|o| &o[r]).filter(|o| o.len > 0);
            for b in 0..B {
                let scale = _mm512_mul_ps(rs, cs[b]);
                let exact = _mm512_sub_epi32(acc[b], _mm512_mullo_epi32(zero, sums[b]));
                let mut out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, bias[b]);
                if let Some(o) = o {
                    let ch = _mm512_mul_ps(_mm512_set1_ps(o.scale), cs[b]);
                    // SAFETY: `outlier_sums` wrote row r (it has outliers).
                    let e = unsafe { extra[r][b].assume_init() };
                    out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(e), ch, out);
                }
                let BlockConstants { c0, width, .. } = consts[b];
                let dst = &mut y[row * n + c0..][..width];
                // SAFETY: the mask writes `width` floats, all inside `dst`.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), masks[b], out) };
            }
        }
    }
}

/// The outliers' sums `Σ_o q_o · w[c, index_o]` of one tile's rows (`outliers`, blocks at
/// `wp`) written to `sums` (only the rows with outliers), for the epilogue to add with the same fused multiply-add as
/// [`super::add_outliers`]. The weights are read from the packed blocks the multiply loop
/// has just streamed through the cache: input k's weights for a block's 16 channels are byte
/// k % 4 of each 32-bit lane of quad k / 4. Read from the transposed `[k, n]` copy instead,
/// each row's four inputs were four cache misses per tile; added to the stored outputs, the
/// load waited for the masked stores just made. Out of line: inlined, its pointers took the
/// registers of the multiply loop's row pointers, which were spilled.
///
/// # Safety
/// AVX-512 F, BW and VNNI are present; every index < k; `wp[b]` is block b's packed weights.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn outlier_sums<const B: usize>(
    outliers: &[Outliers],
    wp: [*const u8; B],
    sums: &mut [[MaybeUninit<__m512i>; B]; MR],
) {
    for (o, sums) in outliers.iter().zip(sums).filter(|(o, _)| o.len > 0) {
        // Per input: its quad's offset in a block, and the left shift that puts its byte on
        // top of the lane (an arithmetic right shift then sign-extends it).
        let at: [usize; OUTLIERS] = std::array::from_fn(|j| o.index[j] as usize / 4 * NB * 4);
        let up: [__m128i; OUTLIERS] =
            std::array::from_fn(|j| _mm_cvtsi32_si128(24 - 8 * (o.index[j] % 4) as i32));
        let q: [__m512i; OUTLIERS / 2] = std::array::from_fn(|p| {
            let lo = o.q[2 * p] as u16 as u32;
            let hi = o.q[2 * p + 1] as u16 as u32;
            _mm512_set1_epi32((lo | (hi << 16)) as i32)
        });
        for (b, out) in sums.iter_mut().enumerate() {
            let mut sum = _mm512_setzero_si512();
            for (p, &q) in q.iter().enumerate() {
                let (i, j) = (2 * p, 2 * p + 1);
                // SAFETY: quads index / 4 < k / 4 rounded up, all in the block.
                let (a, c) = unsafe {
                    (
                        _mm512_loadu_si512(wp[b].add(at[i]).cast()),
                        _mm512_loadu_si512(wp[b].add(at[j]).cast()),
                    )
                };
                // Input i's weight sign-extended into each lane's low i16, input j's into
                // its high i16: one `vpdpwssd` adds both products.
                let a = _mm512_srai_epi32::<24>(_mm512_sll_epi32(a, up[i]));
                let c = _mm512_srai_epi32::<8>(_mm512_sll_epi32(c, up[j]));
                let pair = _mm512_mask_blend_epi16(0xAAAA_AAAA, a, c);
                sum = _mm512_dpwssd_epi32(sum, pair, q);
            }
            out.write(sum);
        }
    }
}
