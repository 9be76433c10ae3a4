//! Our own int8 matrix multiply, used by the int8 ops (`ops::int8`) instead of tract's: one micro-kernel
//! per instruction set (`avx2.rs`, `avx512.rs`, `neon_dot.rs`, `neon_mull.rs`), the packing, the portable reference they are
//! tested against and the choice between them here.
//!
//! Why hand-written: tract 0.23.9's only AVX2 int8 kernel (`avx2_mmm_i32_8x8`) is much slower
//! than its own f32 kernel (results/precision.md), and on aarch64 its SDOT kernel needs
//! a quantize pass, an i32 result tensor and a dequantize pass around it, where ours reads the
//! quantized rows and writes f32 in one go (results/precision.md). No well-kept crate does int8
//! GEMM with a fused per-row/per-channel rescale.
//!
//! The products: activations are quantized per row with a zero point into
//! `0..=ACTIVATION_MAX` (seven bits), weights are signed int8.
//! - x86_64 AVX2 ([`Kernel::Avx2`]): `vpmaddubsw` sums pairs of u8 × i8 products into i16
//!   lanes; two such results (eight k) are added in i16, then widened and summed into i32 by
//!   `vpmaddwd` against ones: three multiply instructions per 64 products.
//! - x86_64 with AVX-512 VNNI ([`Kernel::Avx512Vnni`]): `vpdpbusd` sums four u8 × i8 products
//!   into each i32 lane of a zmm register (16 channels): one instruction per 64 products,
//!   nothing to widen, always exact.
//! - x86_64 with AMX-INT8 ([`Kernel::Avx512Amx`]): `tdpbusd` multiplies a tile of 16 rows × 64
//!   u8 by one of 64 × 16 channels into 16 × 16 i32 sums: one instruction per 16 384
//!   products, always exact; the VNNI kernel's packing (a block's 16 quads are one tile).
//! - aarch64 with dot-product ([`Kernel::NeonDot`]): `sdot` sums four i8 × i8 products into
//!   each i32 lane (activations ≤ 127 are the same bytes as u8 or i8), by element: one
//!   instruction per 16 products, nothing to widen, always exact.
//!
//! Exactness of the i16 stage (AVX2): `vpmaddubsw` saturates its i16 lanes, so ONNX Runtime's
//! u8 × s8 AVX2 path (activations up to 255) can clip. Here activations stay ≤ 127, and a lane
//! after the i16 add holds four products `a·w` with a in 0..=127: it cannot overflow while the
//! four weights' positive sum and negative sum each stay ≤ 258 (127 · 258 = 32766). Weights are
//! static, so [`PackedWeights::pack`] checks every lane's four weights at load; the rare lanes
//! over the bound (about 0.1% in MiniLM) keep only what fits, and the rest goes to a short list
//! of corrections, added to each tile's i32 accumulators before its epilogue. Every sum is exact.
//!
//! Layout (all kernels): weights `[n, k]` are packed once at load in blocks of 16 output
//! channels, k in quads: for each quad, channel c's four int8 weights are bytes `4c..4c+4`
//! (AVX2: channels 0-7 in one ymm register, 8-15 in the next; AVX-512: all 16 in one zmm;
//! NEON: four channels per q register, which is exactly what `sdot` by element wants). A
//! quantized activation row is u8 with k padded to a multiple of 16 (whole groups of four
//! quads), so a 32-bit broadcast (x86) or a lane of a q register (NEON) is a quad. The
//! micro-kernels compute 4 rows × 16 channels (AVX-512: 8 rows × 48, AMX: 32 × 32, SMULL: 2 rows).

mod outliers;
#[cfg(target_arch = "arm")]
mod outliers_armv7;
#[cfg(target_arch = "x86_64")]
mod outliers_avx2;
#[cfg(target_arch = "aarch64")]
mod outliers_neon;

pub use outliers::add_outliers;

use crate::kernels::quantize::Outliers;

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "arm")]
mod armv7_neon;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon_dot;
#[cfg(target_arch = "aarch64")]
mod neon_mull;

/// Output channels per packed block.
const NB: usize = 16;
/// Rows per micro-kernel call (AVX2 and SDOT; the SMULL kernel's own is 2).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const MR: usize = 4;
/// Largest quantized activation: keeps `vpmaddubsw`'s pair sums exact (see the module doc).
pub const ACTIVATION_MAX: u8 = 127;

/// The micro-kernel [`linear`] runs, chosen once for this CPU ([`Kernel::native`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// x86_64 AVX2 + FMA: u8 × s8 `vpmaddubsw`, four products per i16 lane.
    Avx2,
    /// x86_64 AVX-512 VNNI: u8 × s8 `vpdpbusd`, four products per i32 lane, no i16 stage.
    Avx512Vnni,
    /// x86_64 AMX-INT8 (Intel Xeon from Sapphire Rapids on): `tdpbusd` on 16-row tiles, 64
    /// products per i32 lane; [`Kernel::Avx512Vnni`]'s packing, and that kernel for the rows
    /// and shapes that do not fill a tile.
    Avx512Amx,
    /// aarch64 with dot-product (Cortex-A76/A78): `sdot` by element.
    NeonDot,
    /// aarch64 without dot-product (Cortex-A72/A57: Pi 4, Jetson Nano): `smull`/`smlal`,
    /// four products per i16 lane, pairwise-accumulated into i32 by `sadalp`.
    NeonMull,
    /// armv7 with NEON (32-bit Pi OS): `vmull.s8`/`vmlal.s8`, four products per i16 lane,
    /// `vpadal.s16` into i32; [`Kernel::NeonMull`]'s packing.
    Armv7Neon,
    /// Plain loops: the reference, and the fallback where no kernel above runs.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn native() -> Kernel {
        let cpu = crate::platform::cpu::features();
        if cfg!(target_arch = "x86_64") && cpu.amx_int8 {
            Kernel::Avx512Amx
        } else if cfg!(target_arch = "x86_64") && cpu.avx512_vnni {
            Kernel::Avx512Vnni
        } else if cfg!(target_arch = "x86_64") && cpu.avx2_fma {
            Kernel::Avx2
        } else if cfg!(target_arch = "aarch64") && cpu.dotprod {
            Kernel::NeonDot
        } else if cfg!(target_arch = "aarch64") && cpu.aarch64 {
            Kernel::NeonMull
        } else if cfg!(target_arch = "arm") && cpu.arm_neon {
            Kernel::Armv7Neon
        } else {
            Kernel::Portable
        }
    }

    /// The name `info` reports (as tract's kernels are reported: `Mult: ... with [name]`).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx2 => "bertlite_avx2_u8s8_4x16",
            Kernel::Avx512Vnni => "bertlite_avx512vnni_u8s8_8x48",
            Kernel::Avx512Amx => "bertlite_amx_u8s8_32x32",
            Kernel::NeonDot => "bertlite_neon_sdot_4x16",
            Kernel::NeonMull => "bertlite_neon_smull_2x16",
            Kernel::Armv7Neon => "bertlite_armv7_neon_vmull_1x16",
            Kernel::Portable => "bertlite_portable_i8",
        }
    }

    /// For kernels with an i16 stage, the k of the four weights that share one i16 lane,
    /// for every lane of one channel (`kp` = [`padded_k`]); none for exact-in-i32 kernels.
    fn i16_lanes(self, kp: usize) -> Vec<[usize; 4]> {
        match self {
            // One i16 lane sums k = 8p + 2l, +1 (quad 2p) and 8p + 4 + 2l, +1 (quad 2p + 1).
            Kernel::Avx2 => (0..kp / 8)
                .flat_map(|p| (0..2).map(move |l| [0, 1, 4, 5].map(|d| 8 * p + 2 * l + d)))
                .collect(),
            // One i16 lane sums k = 16g + t over the group's four quads (16g + 4s + t).
            Kernel::NeonMull | Kernel::Armv7Neon => (0..kp / 16)
                .flat_map(|g| (0..4).map(move |t| [0, 4, 8, 12].map(|d| 16 * g + t + d)))
                .collect(),
            Kernel::Avx512Vnni | Kernel::Avx512Amx | Kernel::NeonDot | Kernel::Portable => {
                Vec::new()
            }
        }
    }

    /// Where weight `t` of quad `q` of channel `j` of block `block` sits in the packed data
    /// (`kq` quads per channel). Quad-major for the kernels that read one quad of all 16
    /// channels per step; for [`Kernel::NeonMull`], which runs four quads of four channels
    /// through one i16 chain, the four quads of each group of four channels are adjacent.
    fn offset(self, block: usize, kq: usize, q: usize, j: usize, t: usize) -> usize {
        match self {
            Kernel::NeonMull | Kernel::Armv7Neon => {
                let (g, s, jr, c) = (q / 4, q % 4, j / 4, j % 4);
                ((((block * kq / 4 + g) * 4 + jr) * 4 + s) * 4 + c) * 4 + t
            }
            _ => ((block * kq + q) * NB + j) * 4 + t,
        }
    }
}

/// A weight the kernel lanes leave out (see the module doc): `acc[.., channel] += delta ·
/// x[.., k]`, added to the tile's i32 accumulators before the epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Correction {
    channel: u32,
    k: u32,
    delta: i32,
}

/// Int8 weights `[n, k]` packed for one [`Kernel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedWeights {
    pub n: usize,
    pub k: usize,
    pub kernel: Kernel,
    /// The weights the kernel multiplies: the original ones, less `corrections`.
    data: Vec<i8>,
    /// In channel order (pushed channel by channel); block b's are
    /// `corrections[block_fixes[b]..block_fixes[b + 1]]`.
    corrections: Vec<Correction>,
    block_fixes: Vec<usize>,
    /// `Σₖ w[c][k]` per channel (of the original weights): the zero-point correction
    /// `acc − zero · col_sum`.
    col_sums: Vec<i32>,
    /// The original weights transposed, `[k, n]`: input `k`'s weight for every channel in a
    /// row, what [`add_outliers`] reads for the few inputs it multiplies apart.
    columns: Vec<i8>,
}

/// Row length of a quantized activation row for a given `k`: padded to whole groups of four
/// quads (what the NEON kernel reads per step; AVX2 reads pairs of quads).
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(16) * 16
}

/// The largest positive (and negative) sum of the four weights in one i16 lane.
const LANE_WEIGHT_SUM: i32 = i16::MAX as i32 / ACTIVATION_MAX as i32;

impl PackedWeights {
    fn quads(&self) -> usize {
        padded_k(self.k) / 4
    }

    /// Whether block `block` has weights left out of the kernel lanes.
    #[cfg(target_arch = "aarch64")]
    fn has_corrections(&self, block: usize) -> bool {
        self.block_fixes[block] < self.block_fixes[block + 1]
    }

    /// Packs `w` (`[n, k]`, row-major) for `kernel`.
    pub fn pack(w: &[i8], n: usize, k: usize, kernel: Kernel) -> PackedWeights {
        let kq = padded_k(k) / 4;
        let blocks = n.div_ceil(NB);
        let lanes = kernel.i16_lanes(padded_k(k));
        let mut data = vec![0i8; blocks * kq * NB * 4];
        let mut corrections = Vec::new();
        for c in 0..n {
            let (block, j) = (c / NB, c % NB);
            let row = &w[c * k..][..k];
            let mut kept: Vec<i32> = row.iter().map(|&v| i32::from(v)).collect();
            for ks in &lanes {
                let mut lane = ks.map(|kk| kept.get(kk).copied().unwrap_or(0));
                fit_lane(&mut lane, |i, delta| {
                    corrections.push(Correction { channel: c as u32, k: ks[i] as u32, delta })
                });
                for (&kk, v) in ks.iter().zip(lane) {
                    if let Some(slot) = kept.get_mut(kk) {
                        *slot = v;
                    }
                }
            }
            for (kk, &v) in kept.iter().enumerate() {
                data[kernel.offset(block, kq, kk / 4, j, kk % 4)] = v as i8;
            }
        }
        let block_fixes = (0..=blocks)
            .map(|b| corrections.partition_point(|fix| (fix.channel as usize) < b * NB))
            .collect();
        let mut columns = vec![0i8; k * n];
        for (c, row) in w.chunks_exact(k).enumerate() {
            for (kk, &v) in row.iter().enumerate() {
                columns[kk * n + c] = v;
            }
        }
        let col_sums = col_sums(w, n, k);
        PackedWeights { n, k, kernel, data, corrections, block_fixes, col_sums, columns }
    }

    /// How many weights the kernel's lanes leave to the corrections.
    pub fn corrections(&self) -> usize {
        self.corrections.len()
    }
}

/// `Σₖ w[c][k]` for each row c of int8 weights `[n, k]`: what the zero-point correction
/// `acc − zero · col_sum` needs.
pub fn col_sums(w: &[i8], n: usize, k: usize) -> Vec<i32> {
    (0..n).map(|c| w[c * k..][..k].iter().map(|&v| i32::from(v)).sum()).collect()
}

/// Shrinks the largest same-sign weights of one lane until its positive and negative sums are
/// within [`LANE_WEIGHT_SUM`], reporting what it takes off as `(index, delta)`.
fn fit_lane(lane: &mut [i32; 4], mut take: impl FnMut(usize, i32)) {
    for sign in [1, -1] {
        let mut excess = lane.iter().map(|&v| (v * sign).max(0)).sum::<i32>() - LANE_WEIGHT_SUM;
        while excess > 0 {
            let i = (0..4).max_by_key(|&i| lane[i] * sign).unwrap_or(0);
            let cut = excess.min(lane[i] * sign);
            lane[i] -= cut * sign;
            take(i, cut * sign);
            excess -= cut;
        }
    }
}

/// Whether this CPU has one of our int8 kernels (else tract's int8 matmul runs).
pub fn available() -> bool {
    Kernel::native() != Kernel::Portable
}

/// The epilogue of a quantized linear:
/// `y = (acc − zero[row] · col_sum[c]) · row_scale · channel_scale (+ bias)`.
pub struct Rescale<'a> {
    /// One per row of `x`.
    pub rows: &'a [f32],
    /// The rows' zero points, one per row.
    pub zeros: &'a [i32],
    /// One per output channel.
    pub channels: &'a [f32],
    pub bias: Option<&'a [f32]>,
    /// Each row's split-off largest inputs, their product added to the row's outputs
    /// ([`add_outliers`]; in the kernel's own epilogue where it has one).
    pub outliers: Option<&'a [Outliers]>,
}

/// `acc[m, n] = x[m, :] · w[n, :]` exactly, in i32, portably: the reference [`linear`] is
/// tested against. `x` holds `m` rows of [`padded_k`] u8; `acc` holds `m × n` values.
pub fn matmul(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    // ok: callers size both buffers from m, k, n; input cannot reach it.
    assert!(acc.len() == m * w.n && x.len() == m * padded_k(w.k), "matmul: shapes");
    matmul_scalar(x, m, w, acc);
}

/// `y[m, n] = (x[m, :] · w[n, :] − zero[m] · col_sum[n]) · rows[m] · channels[n] + bias[n]`:
/// the products exact in i32, converted to f32 in the kernel's registers (no i32 buffer, no
/// second pass), on the kernel `w` was packed for; plus each row's outliers' product
/// (`rescale.outliers`, [`add_outliers`]).
pub fn linear(x: &[u8], m: usize, w: &PackedWeights, rescale: &Rescale, y: &mut [f32]) {
    // ok: LinearI8 sizes every buffer from m, k, n; input cannot reach it.
    assert!(
        y.len() == m * w.n
            && x.len() == m * padded_k(w.k)
            && rescale.rows.len() == m
            && rescale.zeros.len() == m
            && rescale.channels.len() == w.n
            && rescale.bias.is_none_or(|b| b.len() == w.n)
            && rescale.outliers.is_none_or(|o| o.len() == m
                && o.iter().all(|o| o.index.iter().all(|&k| (k as usize) < w.k.max(1)))),
        "linear: shapes"
    );
    if m == 0 {
        return;
    }
    // Whether the kernel added the outliers in its own epilogue.
    let fused = match w.kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if crate::platform::cpu::features().avx2_fma => {
            // SAFETY: AVX2 and FMA are present (checked); all reads stay inside `x`, `w.data`
            // and the rescale slices (the row index is clamped to m-1, the packed blocks cover
            // every quad, full-width stores only where c0 + 16 ≤ n), writes inside `y`.
            unsafe { avx2::linear(x, m, w, rescale, y) };
            false
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni if crate::platform::cpu::features().avx512_vnni => {
            // SAFETY: AVX-512 F, BW and VNNI are present (checked); bounds as for AVX2 above,
            // stores masked to the block's channels below n; the outliers' indices are < k
            // (asserted above).
            unsafe { avx512::linear(x, m, w, rescale, y) };
            true
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Amx if crate::platform::cpu::features().amx_int8 => {
            // SAFETY: AMX-INT8 is present and granted to the process, AVX-512 F, BW and VNNI
            // present (`amx_int8` says both); shapes asserted above, the outliers' indices < k.
            unsafe { amx::linear(x, m, w, rescale, y) };
            true
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::NeonDot if crate::platform::cpu::features().dotprod => {
            // SAFETY: dot-product is present (checked); bounds as for AVX2 above: rows
            // clamped to m-1, rows of padded_k bytes read in whole 16-byte groups, packed
            // blocks cover every quad, full-width stores only where c0 + 16 ≤ n.
            unsafe { neon_dot::linear(x, m, w, rescale, y) };
            false
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::NeonMull => {
            // SAFETY: NEON is the aarch64 baseline; bounds as for the dot-product kernel.
            unsafe { neon_mull::linear(x, m, w, rescale, y) };
            false
        }
        #[cfg(target_arch = "arm")]
        Kernel::Armv7Neon if crate::platform::cpu::features().arm_neon => {
            // SAFETY: NEON is present (checked); each row is read in whole 16-byte groups,
            // the packed blocks cover every quad, full-width stores only where c0 + 16 ≤ n.
            unsafe { armv7_neon::linear(x, m, w, rescale, y) };
            false
        }
        _ => {
            let mut acc = vec![0i32; m * w.n];
            matmul_scalar(x, m, w, &mut acc);
            self::rescale(&acc, rescale, &w.col_sums, y);
            false
        }
    };
    if let Some(outliers) = rescale.outliers.filter(|_| !fused) {
        add_outliers(outliers, w, rescale.channels, y);
    }
}

/// `y = (acc − zero · col_sum) · row_scale · channel_scale (+ bias)`, rows of `n`: the pass
/// back to f32 where the kernel does not fuse it.
pub fn rescale(acc: &[i32], rescale: &Rescale, col_sums: &[i32], y: &mut [f32]) {
    let n = rescale.channels.len();
    let rows = y.chunks_exact_mut(n).zip(acc.chunks_exact(n));
    for (((y, acc), &r), &z) in rows.zip(rescale.rows).zip(rescale.zeros) {
        for (((y, &a), &c), &sum) in y.iter_mut().zip(acc).zip(rescale.channels).zip(col_sums) {
            *y = a.wrapping_sub(z.wrapping_mul(sum)) as f32 * (r * c);
        }
        if let Some(bias) = rescale.bias {
            y.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
        }
    }
}

/// One 16-channel block's channel scales, bias and weight sums (zero past the last channel),
/// what every micro-kernel's epilogue reads.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
struct BlockConstants {
    c0: usize,
    width: usize,
    /// In memory: the kernels load them as vectors (the whole-tile `asm!` of `neon_dot` itself).
    lanes: BlockLanes,
}

/// A block's channel scales, bias and weight sums, 16 lanes each (in this order: the armv7
/// kernel reads them by offset).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
#[repr(C)]
struct BlockLanes {
    scales: [f32; NB],
    bias: [f32; NB],
    sums: [i32; NB],
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
impl BlockConstants {
    fn new(w: &PackedWeights, rescale: &Rescale, block: usize) -> BlockConstants {
        let c0 = block * NB;
        let width = NB.min(w.n - c0);
        let scales = block_lanes(rescale.channels, c0, width);
        let bias = rescale.bias.map_or([0.0; NB], |b| block_lanes(b, c0, width));
        let sums = block_lanes(&w.col_sums, c0, width);
        BlockConstants { c0, width, lanes: BlockLanes { scales, bias, sums } }
    }
}

/// `src[c0..c0 + width]` in 16 lanes, zero past `width`. The full-width copy has a fixed
/// size, so it compiles to vector moves (a `[..width]` copy was a memcpy call per block).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
fn block_lanes<T: Copy + Default>(src: &[T], c0: usize, width: usize) -> [T; NB] {
    let mut lanes = [T::default(); NB];
    if width == NB {
        lanes.copy_from_slice(&src[c0..c0 + NB]);
    } else {
        lanes[..width].copy_from_slice(&src[c0..c0 + width]);
    }
    lanes
}

/// Adds block `block`'s corrections to a tile's i32 accumulators (`acc[r][j]` for row
/// `rows[r]`, channel `block · NB + j`), reading the rows' quantized `x` (rows of `kp`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn add_corrections<const R: usize>(
    w: &PackedWeights,
    block: usize,
    x: &[u8],
    kp: usize,
    rows: &[usize; R],
    acc: &mut [[i32; NB]; R],
) {
    let fixes = &w.corrections[w.block_fixes[block]..w.block_fixes[block + 1]];
    for fix in fixes {
        let (j, k) = (fix.channel as usize - block * NB, fix.k as usize);
        for (t, &row) in acc.iter_mut().zip(rows) {
            t[j] += fix.delta * i32::from(x[row * kp + k]);
        }
    }
}

/// Reference: the same sum, portable (packed weights plus their corrections).
fn matmul_scalar(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    let kq = w.quads();
    for row in 0..m {
        for c in 0..w.n {
            let (block, j) = (c / NB, c % NB);
            let mut s = 0i32;
            for q in 0..kq {
                for t in 0..4 {
                    let wv = w.data[w.kernel.offset(block, kq, q, j, t)];
                    s += i32::from(wv) * i32::from(x[row * kq * 4 + 4 * q + t]);
                }
            }
            acc[row * w.n + c] = s;
        }
    }
    for fix in &w.corrections {
        for row in 0..m {
            acc[row * w.n + fix.channel as usize] +=
                fix.delta * i32::from(x[row * kq * 4 + fix.k as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel, whichever this CPU runs: those it cannot run fall back to the portable
    /// loops, which must agree too.
    const KERNELS: [Kernel; 7] = [
        Kernel::Avx2,
        Kernel::Avx512Vnni,
        Kernel::Avx512Amx,
        Kernel::NeonDot,
        Kernel::NeonMull,
        Kernel::Armv7Neon,
        Kernel::Portable,
    ];

    /// Every kernel packing, run through [`linear`] on this CPU (its own micro-kernel where it
    /// has one, the portable loops otherwise), against a plain triple loop: exact integers,
    /// and an epilogue whose f32 results are exact too. Shapes at every tile edge: rows around
    /// the 4-row tile, channels around the 16-channel block, k around the 16-byte group.
    #[test]
    fn matches_a_plain_triple_loop_at_every_tile_edge() {
        let mut shapes = vec![(530, 20, 384), (3, 40, 1536)];
        // The AMX kernel's 16-row tiles over k in whole steps of 64 (and one that is not).
        for m in [15, 16, 17, 31, 32, 33, 48] {
            for n in [1, 16, 17, 33, 49, 65] {
                for k in [64, 128, 192, 100] {
                    shapes.push((m, n, k));
                }
            }
        }
        for m in [1, 3, 4, 5, 8, 9] {
            // n = 33, 49, 65: the AVX-512 kernel's 3-block tiles, alone and followed by 1 or 2.
            for n in [1, 15, 16, 17, 33, 49, 65] {
                for k in [1, 3, 8, 15, 16, 17, 31, 33, 64] {
                    shapes.push((m, n, k));
                }
            }
        }
        for kernel in std::iter::once(Kernel::native()).chain(KERNELS) {
            for &(m, n, k) in &shapes {
                check_shape(kernel, m, n, k);
            }
        }
    }

    /// Outliers through `linear` (in the kernel's epilogue where it fuses them) against
    /// `linear` without them followed by the reference loops, bit for bit: every kernel of
    /// this architecture, widths at the 16-channel and 48-channel tile edges, row counts at the
    /// 8-row tile edges, indices up to k − 1 (the transposed table's last row), rows with
    /// fewer outliers or none.
    #[test]
    fn outliers_in_the_epilogue_match_a_second_pass() {
        use crate::kernels::quantize::OUTLIERS;
        // k = 128 runs the AMX kernel's tiles (whole steps of 64), 40 its VNNI fallback.
        for (kernel, k) in KERNELS.into_iter().flat_map(|kernel| [(kernel, 40), (kernel, 128)]) {
            for n in [1, 15, 16, 17, 33, 48, 50, 64, 97, 384] {
                for m in [1, 8, 9, 17, 33] {
                    let w: Vec<i8> =
                        (0..n * k).map(|i| ((i * 97 + 13) % 256) as u8 as i8).collect();
                    let packed = PackedWeights::pack(&w, n, k, kernel);
                    let kp = padded_k(k);
                    let x: Vec<u8> = (0..m * kp).map(|i| ((i * 31 + 7) % 128) as u8).collect();
                    let outliers: Vec<Outliers> = (0..m)
                        .map(|r| {
                            let len = [OUTLIERS, OUTLIERS - 1, 0, 1][r % 4];
                            let mut o =
                                Outliers { len, scale: 0.5 / (r + 1) as f32, ..Default::default() };
                            for j in 0..len {
                                o.index[j] = if j == 0 {
                                    (k - 1) as u32
                                } else {
                                    ((r * 7 + j * 5) % k) as u32
                                };
                                o.q[j] = [32767, -32767, 12345, -1, 777, -20000][(r + j) % 6];
                            }
                            o
                        })
                        .collect();
                    let rows: Vec<f32> = (0..m).map(|r| 0.01 * (r + 1) as f32).collect();
                    let zeros: Vec<i32> = (0..m).map(|r| [0, 64, 127][r % 3]).collect();
                    let channels: Vec<f32> = (0..n).map(|c| 0.001 * (c as f32 + 1.0)).collect();
                    let bias: Vec<f32> = (0..n).map(|c| (c as f32 * 0.37).sin()).collect();
                    let plain = Rescale {
                        rows: &rows,
                        zeros: &zeros,
                        channels: &channels,
                        bias: Some(&bias),
                        outliers: None,
                    };
                    let mut want = vec![0f32; m * n];
                    linear(&x, m, &packed, &plain, &mut want);
                    for (o, y) in outliers.iter().zip(want.chunks_exact_mut(n)) {
                        if o.len > 0 {
                            outliers::add_channels(o, &packed.columns, n, 0..n, &channels, y);
                        }
                    }
                    let mut got = vec![f32::NAN; m * n];
                    let with = Rescale { outliers: Some(&outliers), ..plain };
                    linear(&x, m, &packed, &with, &mut got);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            w.to_bits(),
                            "{kernel:?} {m}x{n} at {i}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    fn check_shape(kernel: Kernel, m: usize, n: usize, k: usize) {
        // Extremes included: weights −128..=127, activations 0..=ACTIVATION_MAX; 530 rows run
        // many row tiles against each weight block. Odd channels step slowly, so a lane's four
        // weights share a sign and overflow an i16 lane (the corrections are exercised).
        let step = |i: usize| if (i / k).is_multiple_of(2) { i * 97 + 13 } else { i * 7 };
        let w: Vec<i8> = (0..n * k).map(|i| (step(i) % 256) as u8 as i8).collect();
        let x: Vec<u8> =
            (0..m * k).map(|i| ((i * 31 + 7) % (ACTIVATION_MAX as usize + 1)) as u8).collect();
        let kp = padded_k(k);
        let mut xp = vec![0u8; m * kp];
        for (dst, src) in xp.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
            dst[..k].copy_from_slice(src);
        }
        let packed = PackedWeights::pack(&w, n, k, kernel);
        if matches!(kernel, Kernel::Avx2 | Kernel::NeonMull | Kernel::Armv7Neon) && k >= 384 {
            assert!(!packed.corrections.is_empty(), "the test should exercise corrections");
        }
        let mut acc = vec![0i32; m * n];
        matmul(&xp, m, &packed, &mut acc);
        // Scales and bias chosen so every f32 result is exact: |acc| < 2²⁴, powers of two.
        let rows: Vec<f32> = (0..m).map(|r| [1.0, 0.5, 2.0][r % 3]).collect();
        let zeros: Vec<i32> = (0..m).map(|r| [0, 64, 127][r % 3]).collect();
        let channels: Vec<f32> = (0..n).map(|c| [0.25, 1.0][c % 2]).collect();
        let bias: Vec<f32> = (0..n).map(|c| c as f32 - 3.0).collect();
        for with_bias in [true, false] {
            let mut y = vec![f32::NAN; m * n];
            let bias = with_bias.then_some(&bias[..]);
            let rescale =
                Rescale { rows: &rows, zeros: &zeros, channels: &channels, bias, outliers: None };
            linear(&xp, m, &packed, &rescale, &mut y);
            for row in 0..m {
                for c in 0..n {
                    let at = format!("{kernel:?} {m}x{n}x{k} at {row},{c}");
                    let want: i32 = (0..k)
                        .map(|kk| i32::from(x[row * k + kk]) * i32::from(w[c * k + kk]))
                        .sum();
                    assert_eq!(acc[row * n + c], want, "{at}");
                    let sum: i32 = (0..k).map(|kk| i32::from(w[c * k + kk])).sum();
                    let want_y = (want - zeros[row] * sum) as f32 * rows[row] * channels[c]
                        + bias.map_or(0.0, |b| b[c]);
                    assert_eq!(y[row * n + c], want_y, "{at}");
                }
            }
        }
    }
}
