//! The x86_64 AMX micro-kernel of [`super::linear`]: tiles of 32 rows × 32 channels, each
//! `tdpbusd` summing 16 rows × 16 channels × 64 u8 × s8 products into i32 in one instruction
//! (the VNNI kernel's `vpdpbusd` does 16 channels × 4 products of one row).
//!
//! Why: where the CPU has AMX (Intel Xeon from Sapphire Rapids on), ONNX Runtime's MLAS runs
//! its u8 × s8 products on it, and the VNNI kernel's linears lose to it from 128 rows on
//! (results/performance.md, "Session 27"). The packed weights are the VNNI kernel's, which is
//! already the layout `tdpbusd` wants for its second operand: 16 quads of a block (64 k) are
//! 16 rows of 64 bytes, channel c's four weights at bytes `4c..4c + 4`, one contiguous 1 KB
//! tile. The activation rows (u8, [`super::padded_k`] apart) are the first operand as they are.
//! The sums are the same exact integers as every other kernel's, so the results are too.
//!
//! Tiles: `tmm0`–`tmm3` hold the sums of two row tiles × two blocks (32 rows × 32 channels),
//! `tmm4`–`tmm5` the two row tiles' 64 activations of the step, `tmm6`–`tmm7` the two
//! blocks' weights. The i32 sums are stored to a buffer and
//! rescaled to f32 with AVX-512, as the VNNI kernel's epilogue does (outliers included). Rows
//! past the last whole tile of 16, and any k that is not a multiple of 64, run on the VNNI
//! kernel: a padded tile would multiply zeros.
//!
//! The tile registers are not allocated by the compiler (no AMX intrinsics are stable): they
//! are named in `asm!` and nothing else in the process touches them. Linux hands AMX's
//! state to a process only after it asks (`platform::cpu` does, once).

use std::arch::asm;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::avx512::{self, Blocks, outlier_sums};
use super::{BlockConstants, NB, PackedWeights, Rescale};

/// Rows per tile (the most a tile register holds).
const TM: usize = 16;
/// Quads per step: a tile row is 64 bytes.
const TQ: usize = 16;

/// `ldtilecfg`'s 64-byte operand (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    /// Bytes per row of each tile register.
    colsb: [u16; 16],
    /// Rows of each tile register.
    rows: [u8; 16],
}

/// Whether [`linear`] runs `w` on AMX tiles (else the VNNI kernel runs all of it).
pub(super) fn fits(m: usize, w: &PackedWeights) -> bool {
    m >= TM && w.quads().is_multiple_of(TQ) && w.quads() > 0
}

/// # Safety
/// AMX-INT8 must be present and granted to the process, and AVX-512 F, BW and VNNI present
/// (`platform::cpu::Features::amx_int8` says both); shapes as [`super::linear`] asserts them.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn linear(
    x: &[u8],
    m: usize,
    w: &PackedWeights,
    rescale: &Rescale,
    y: &mut [f32],
) {
    let full = if fits(m, w) { m / TM * TM } else { 0 };
    if full > 0 {
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            config.colsb[t] = 64;
            config.rows[t] = TM as u8;
        }
        // SAFETY: AMX is present and granted (the caller's contract); the config is 64
        // aligned bytes with all eight tiles at 16 × 64 bytes, within palette 1's limits.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
        let blocks = w.n.div_ceil(NB);
        for block in (0..blocks).step_by(2) {
            // SAFETY: as this function's; blocks `block..block + 2` (or the last one) exist,
            // rows below `full` are whole tiles of 16, quads a whole number of steps.
            unsafe {
                if blocks - block >= 2 {
                    tile_rows::<2>(x, 0..full, w, rescale, y, block);
                } else {
                    tile_rows::<1>(x, 0..full, w, rescale, y, block);
                }
            }
        }
        // SAFETY: AMX is present; the tiles' state goes back to its initial one (a thread
        // switched out with it costs nothing to save).
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
    if full < m {
        let kp = w.quads() * 4;
        let rest = Rescale {
            rows: &rescale.rows[full..],
            zeros: &rescale.zeros[full..],
            channels: rescale.channels,
            bias: rescale.bias,
            outliers: rescale.outliers.map(|o| &o[full..]),
        };
        // SAFETY: AVX-512 F, BW and VNNI are present; the rows past `full` with their own
        // slices of every per-row input, shaped as `linear` asserts.
        unsafe { avx512::linear(&x[full * kp..], m - full, w, &rest, &mut y[full * w.n..]) };
    }
}

impl<const B: usize> Blocks<B> {
    /// Rows `m0..m0 + 16` of the blocks' outputs from their i32 sums `acc` (as `tilestored`
    /// wrote them): the VNNI kernel's epilogue, outliers included.
    ///
    /// # Safety
    /// AVX-512 F, BW and VNNI are present; rows `m0..m0 + 16` exist; outlier indices < k.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn store(
        &self,
        acc: &[[[i32; NB]; TM]; B],
        m0: usize,
        n: usize,
        rescale: &Rescale,
        y: &mut [f32],
    ) {
        // The rows' outlier sums, eight rows at a time (the VNNI kernel's helper), written
        // for exactly the rows that have outliers and read only for those.
        let mut extra = [[[MaybeUninit::<__m512i>::uninit(); B]; 8]; 2];
        let outliers = rescale.outliers.map(|o| &o[m0..m0 + TM]);
        if let Some(o) = outliers {
            for (half, extra) in extra.iter_mut().enumerate() {
                // SAFETY: indices < k (`super::linear` asserts it); `wp` are the blocks.
                unsafe { outlier_sums(&o[half * 8..][..8], self.wp, extra) };
            }
        }
        for r in 0..TM {
            let row = m0 + r;
            let zero = _mm512_set1_epi32(rescale.zeros[row]);
            let rs = _mm512_set1_ps(rescale.rows[row]);
            let o = outliers.map(|o| &o[r]).filter(|o| o.len > 0);
            for b in 0..B {
                // SAFETY: 16 i32 in the row of the block's stored sums.
                let sum = unsafe { _mm512_loadu_si512(acc[b][r].as_ptr().cast()) };
                let scale = _mm512_mul_ps(rs, self.cs[b]);
                let exact = _mm512_sub_epi32(sum, _mm512_mullo_epi32(zero, self.sums[b]));
                let mut out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, self.bias[b]);
                if let Some(o) = o {
                    let ch = _mm512_mul_ps(_mm512_set1_ps(o.scale), self.cs[b]);
                    // SAFETY: `outlier_sums` wrote row r (it has outliers).
                    let e = unsafe { extra[r / 8][r % 8][b].assume_init() };
                    out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(e), ch, out);
                }
                let BlockConstants { c0, width, .. } = self.consts[b];
                let dst = &mut y[row * n + c0..][..width];
                // SAFETY: the mask writes `width` floats, all inside `dst`.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), self.masks[b], out) };
            }
        }
    }
}

/// Rows `rows` (whole tiles of 16) of blocks `first..first + B`: pairs of row tiles against
/// the blocks two at a time: four chains of sums in flight, each row tile and block tile
/// loaded once for two products. `tdpbusd`'s latency is several times its issue interval,
/// and three chains (one row tile against three blocks) were slower (results/performance.md,
/// "Session 27").
///
/// # Safety
/// As [`linear`], with the tile configuration loaded; `rows` whole tiles of 16, the quads a
/// multiple of 16; blocks `first..first + B` exist.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_rows<const B: usize>(
    x: &[u8],
    rows: std::ops::Range<usize>,
    w: &PackedWeights,
    rescale: &Rescale,
    y: &mut [f32],
    first: usize,
) {
    let kq = w.quads();
    let kp = kq * 4;
    // SAFETY: the caller's contract.
    let blocks = unsafe { Blocks::<B>::new(w, rescale, first) };
    let wp = blocks.wp;
    let mut acc = [[[[0i32; NB]; TM]; B]; 2];
    let mut spare = [[0i32; NB]; TM];
    let mut m0 = rows.start;
    while m0 < rows.end {
        let pair = rows.end - m0 >= 2 * TM;
        // SAFETY (the tile loads): block b holds kq quads × 64 bytes, step s's 16 quads at
        // byte s × 1024; rows m0..m0 + 16 (+ 16 for a pair) < rows.end hold kp bytes each,
        // step s's at s × 64. AMX present, configuration loaded.
        unsafe {
            let a0 = x.as_ptr().add(m0 * kp);
            let a1 = x.as_ptr().add((m0 + if pair { TM } else { 0 }) * kp);
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for s in 0..kq / TQ {
                let (a0, a1) = (a0.add(s * 64), a1.add(s * 64));
                let step = s * TQ * NB * 4;
                let (b0, b1) = (wp[0].add(step), wp[B - 1].add(step));
                match (pair, B) {
                    (true, 2) => asm!(
                        "tileloadd tmm4, [{a0} + {kp}*1]",
                        "tileloadd tmm6, [{b0} + {w}*1]",
                        "tdpbusd tmm0, tmm4, tmm6",
                        "tileloadd tmm7, [{b1} + {w}*1]",
                        "tdpbusd tmm1, tmm4, tmm7",
                        "tileloadd tmm5, [{a1} + {kp}*1]",
                        "tdpbusd tmm2, tmm5, tmm6",
                        "tdpbusd tmm3, tmm5, tmm7",
                        a0 = in(reg) a0, a1 = in(reg) a1, kp = in(reg) kp, w = in(reg) 64usize,
                        b0 = in(reg) b0, b1 = in(reg) b1,
                        options(nostack, readonly),
                    ),
                    (true, _) => asm!(
                        "tileloadd tmm4, [{a0} + {kp}*1]",
                        "tileloadd tmm6, [{b0} + {w}*1]",
                        "tdpbusd tmm0, tmm4, tmm6",
                        "tileloadd tmm5, [{a1} + {kp}*1]",
                        "tdpbusd tmm2, tmm5, tmm6",
                        a0 = in(reg) a0, a1 = in(reg) a1, kp = in(reg) kp, w = in(reg) 64usize,
                        b0 = in(reg) b0,
                        options(nostack, readonly),
                    ),
                    (false, 2) => asm!(
                        "tileloadd tmm4, [{a0} + {kp}*1]",
                        "tileloadd tmm6, [{b0} + {w}*1]",
                        "tdpbusd tmm0, tmm4, tmm6",
                        "tileloadd tmm7, [{b1} + {w}*1]",
                        "tdpbusd tmm1, tmm4, tmm7",
                        a0 = in(reg) a0, kp = in(reg) kp, w = in(reg) 64usize,
                        b0 = in(reg) b0, b1 = in(reg) b1,
                        options(nostack, readonly),
                    ),
                    _ => asm!(
                        "tileloadd tmm4, [{a0} + {kp}*1]",
                        "tileloadd tmm6, [{b0} + {w}*1]",
                        "tdpbusd tmm0, tmm4, tmm6",
                        a0 = in(reg) a0, kp = in(reg) kp, w = in(reg) 64usize,
                        b0 = in(reg) b0,
                        options(nostack, readonly),
                    ),
                }
            }
            // Row tile t, block b: tmm(2t + b); with one block, tmm1 and tmm3 (zeros) go to
            // a spare buffer.
            let spare = spare.as_mut_ptr().cast::<i32>();
            let mut c = |t: usize, b: usize| {
                if b < B { acc[t][b].as_mut_ptr().cast::<i32>() } else { spare }
            };
            asm!(
                "tilestored [{c00} + {s}*1], tmm0",
                "tilestored [{c01} + {s}*1], tmm1",
                "tilestored [{c10} + {s}*1], tmm2",
                "tilestored [{c11} + {s}*1], tmm3",
                c00 = in(reg) c(0, 0), c01 = in(reg) c(0, 1),
                c10 = in(reg) c(1, 0), c11 = in(reg) c(1, 1),
                s = in(reg) 64usize, options(nostack),
            );
        }
        let n = w.n;
        for (t, acc) in acc.iter().enumerate().take(if pair { 2 } else { 1 }) {
            // SAFETY: rows m0 + 16t .. + 16 exist; the caller's contract.
            unsafe { blocks.store(acc, m0 + t * TM, n, rescale, y) };
        }
        m0 += if pair { 2 * TM } else { TM };
    }
}
