//! Our own int8 matrix multiply for x86_64 AVX2, used by [`crate::int8`] instead of tract's.
//!
//! Why hand-written: tract 0.23.9's only AVX2 int8 kernel (`avx2_mmm_i32_8x8`) measured ~80×
//! slower than its own f32 kernel on this machine kind (results/precision.md), and no
//! well-kept crate does int8 GEMM.
//!
//! The products: activations are unsigned (quantized per row with a zero point into
//! `0..=ACTIVATION_MAX`), weights signed int8, multiplied by `vpmaddubsw`, which sums pairs of
//! u8 × i8 products into i16 lanes. Two such results (eight k) are added in i16, then widened
//! and summed into i32 by `vpmaddwd` against ones: three multiply instructions per 64
//! products, where `vpmaddwd` on i16 values needs eight. Measured on this machine kind: 124 G
//! products/s at peak against 82 (results/performance.md).
//!
//! Exactness: `vpmaddubsw` saturates its i16 lanes, so ONNX Runtime's u8 × s8 AVX2 path
//! (activations up to 255) can clip. Here activations stay ≤ 127, and a lane after the i16 add
//! holds four products `a·w` with a in 0..=127: it cannot overflow while the four weights'
//! positive sum and negative sum each stay ≤ 258 (127 · 258 = 32766). Weights are static, so
//! [`PackedWeights::pack`] checks every lane's four weights at load; the rare lanes over the
//! bound (about 0.1% in MiniLM) keep only what fits, and the rest goes to a short list of
//! corrections, added to each tile's i32 accumulators before its epilogue. Every sum is exact.
//!
//! Layout: weights `[n, k]` are packed once at load in blocks of 16 output channels, k in
//! quads: for each quad, channel c's four int8 weights are bytes `4c..4c+4` (channels 0-7 in
//! one ymm register, 8-15 in the next). A quantized activation row is u8 with k padded to a
//! multiple of 8 (whole quad pairs), so one 32-bit broadcast is a quad. The micro-kernel
//! computes 4 rows × 16 channels (8 accumulators).

/// Output channels per packed block.
const NB: usize = 16;
/// Rows per micro-kernel call (only the AVX2 kernel has a micro-kernel).
#[cfg(target_arch = "x86_64")]
const MR: usize = 4;
/// Largest quantized activation: keeps `vpmaddubsw`'s pair sums exact (see the module doc).
pub const ACTIVATION_MAX: u8 = 127;

/// A weight the kernel lanes leave out (see the module doc): `acc[.., channel] += delta ·
/// x[.., k]`, added to the tile's i32 accumulators before the epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Correction {
    channel: u32,
    k: u32,
    delta: i32,
}

/// Int8 weights `[n, k]` packed for [`matmul`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedWeights {
    pub n: usize,
    pub k: usize,
    /// The weights the kernel multiplies: the original ones, less `corrections`.
    data: Vec<i8>,
    /// Sorted by channel; block b's are `corrections[block_fixes[b]..block_fixes[b + 1]]`.
    corrections: Vec<Correction>,
    block_fixes: Vec<usize>,
    /// Σₖ w[c][k] per channel (of the original weights): the zero-point correction
    /// `acc − zero · col_sum`.
    col_sums: Vec<i32>,
}

/// Row length of a quantized activation row for a given `k`: padded to whole quad pairs.
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(8) * 8
}

/// The largest positive (and negative) sum of the four weights in one i16 lane.
const LANE_WEIGHT_SUM: i32 = i16::MAX as i32 / ACTIVATION_MAX as i32;

impl PackedWeights {
    fn quads(&self) -> usize {
        padded_k(self.k) / 4
    }

    pub fn pack(w: &[i8], n: usize, k: usize) -> PackedWeights {
        let kq = padded_k(k) / 4;
        let blocks = n.div_ceil(NB);
        let mut data = vec![0i8; blocks * kq * NB * 4];
        let mut corrections = Vec::new();
        for c in 0..n {
            let (block, j) = (c / NB, c % NB);
            let row = &w[c * k..][..k];
            // One i16 lane sums k = 8p + 2l, +1 (quad 2p) and 8p + 4 + 2l, +1 (quad 2p + 1).
            for p in 0..kq / 2 {
                for l in 0..2 {
                    let ks = [0, 1, 4, 5].map(|d| 8 * p + 2 * l + d);
                    let mut lane = ks.map(|kk| row.get(kk).map_or(0, |&v| i32::from(v)));
                    fit_lane(&mut lane, |i, delta| {
                        corrections.push(Correction { channel: c as u32, k: ks[i] as u32, delta })
                    });
                    for (kk, v) in ks.into_iter().zip(lane) {
                        if kk < k {
                            let (q, t) = (kk / 4, kk % 4);
                            data[((block * kq + q) * NB + j) * 4 + t] = v as i8;
                        }
                    }
                }
            }
        }
        let block_fixes = (0..=blocks)
            .map(|b| corrections.partition_point(|fix| (fix.channel as usize) < b * NB))
            .collect();
        PackedWeights { n, k, data, corrections, block_fixes, col_sums: col_sums(w, n, k) }
    }

    /// How many weights the kernel's lanes leave to the corrections.
    pub fn corrections(&self) -> usize {
        self.corrections.len()
    }
}

/// Σₖ w[c][k] for each row c of int8 weights `[n, k]`: what the zero-point correction
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

/// Whether this CPU can run [`linear`]'s fast kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
/// second pass).
pub fn linear(x: &[u8], m: usize, w: &PackedWeights, rescale: &Rescale, y: &mut [f32]) {
    // ok: LinearI8 sizes every buffer from m, k, n; input cannot reach it.
    assert!(
        y.len() == m * w.n
            && x.len() == m * padded_k(w.k)
            && rescale.rows.len() == m
            && rescale.zeros.len() == m
            && rescale.channels.len() == w.n
            && rescale.bias.is_none_or(|b| b.len() == w.n),
        "linear: shapes"
    );
    if m == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX2 is present (checked above); all reads stay inside `x`, `w.data` and the
        // rescale slices (the row index is clamped to m-1, the packed blocks cover every quad,
        // full-width stores only where c0 + 16 ≤ n), writes inside `y`.
        unsafe { linear_avx2(x, m, w, rescale, y) };
        return;
    }
    let mut acc = vec![0i32; m * w.n];
    matmul_scalar(x, m, w, &mut acc);
    self::rescale(&acc, rescale, &w.col_sums, y);
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

/// Reference: the same sum, portable (packed weights plus their corrections).
fn matmul_scalar(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    let kq = w.quads();
    for row in 0..m {
        for c in 0..w.n {
            let (block, j) = (c / NB, c % NB);
            let mut s = 0i32;
            for q in 0..kq {
                for t in 0..4 {
                    let wv = w.data[((block * kq + q) * NB + j) * 4 + t];
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

/// `src[c0..c0 + width]` in 16 lanes, zero past `width`. The full-width copy has a fixed
/// size, so it compiles to two vector moves (a `[..width]` copy was a memcpy call per block).
#[cfg(target_arch = "x86_64")]
fn block_lanes<T: Copy + Default>(src: &[T], c0: usize, width: usize) -> [T; NB] {
    let mut lanes = [T::default(); NB];
    if width == NB {
        lanes.copy_from_slice(&src[c0..c0 + NB]);
    } else {
        lanes[..width].copy_from_slice(&src[c0..c0 + width]);
    }
    lanes
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn linear_avx2(x: &[u8], m: usize, w: &PackedWeights, rescale: &Rescale, y: &mut [f32]) {
    use std::arch::x86_64::*;
    let kq = w.quads();
    let n = w.n;
    let xp = x.as_ptr();
    let ones = _mm256_set1_epi16(1);
    for block in 0..n.div_ceil(NB) {
        let wp = unsafe { w.data.as_ptr().add(block * kq * NB * 4) };
        let c0 = block * NB;
        let width = NB.min(n - c0);
        // The block's channel scales, bias and weight sums, in 16 lanes (zero past n).
        let cs = block_lanes(rescale.channels, c0, width);
        let bias = rescale.bias.map_or([0.0; NB], |b| block_lanes(b, c0, width));
        let sums = block_lanes(&w.col_sums, c0, width);
        let (cs, bias, sums) = unsafe {
            (
                [_mm256_loadu_ps(cs.as_ptr()), _mm256_loadu_ps(cs.as_ptr().add(8))],
                [_mm256_loadu_ps(bias.as_ptr()), _mm256_loadu_ps(bias.as_ptr().add(8))],
                [
                    _mm256_loadu_si256(sums.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(sums.as_ptr().add(8) as *const __m256i),
                ],
            )
        };
        for m0 in (0..m).step_by(MR) {
            let rows: [usize; MR] = std::array::from_fn(|r| (m0 + r).min(m - 1));
            let mut a = [[_mm256_setzero_si256(); 2]; MR];
            // The first row tile streams the block's weights from L3 or memory (the model's
            // 10.6 MB do not stay in L2); it also prefetches the next block, two lines per
            // step, so the next block's first tile finds it in L2 (into L1 it would evict the
            // current block at k = 1536). Measured with linear_i8_6_layers (tools/benches):
            // −10 to −20% at 16 tokens, no change at 128.
            let next = if m0 == 0 && block + 1 < n.div_ceil(NB) { NB * 4 * kq } else { 0 };
            for q in (0..kq).step_by(2) {
                unsafe {
                    if next > 0 {
                        let p = wp.add(next + q * NB * 4);
                        _mm_prefetch::<_MM_HINT_T1>(p);
                        _mm_prefetch::<_MM_HINT_T1>(p.add(64));
                    }
                    let w = |q: usize, h: usize| {
                        _mm256_loadu_si256(wp.add(q * NB * 4 + 32 * h) as *const __m256i)
                    };
                    let (w0, w1, v0, v1) = (w(q, 0), w(q, 1), w(q + 1, 0), w(q + 1, 1));
                    for r in 0..MR {
                        let x = xp.add(rows[r] * kq * 4 + 4 * q) as *const i32;
                        let xa = _mm256_set1_epi32(x.read_unaligned());
                        let xb = _mm256_set1_epi32(x.add(1).read_unaligned());
                        // i16 lanes: four products each, within range by construction.
                        let s0 = _mm256_add_epi16(
                            _mm256_maddubs_epi16(xa, w0),
                            _mm256_maddubs_epi16(xb, v0),
                        );
                        let s1 = _mm256_add_epi16(
                            _mm256_maddubs_epi16(xa, w1),
                            _mm256_maddubs_epi16(xb, v1),
                        );
                        a[r][0] = _mm256_add_epi32(a[r][0], _mm256_madd_epi16(s0, ones));
                        a[r][1] = _mm256_add_epi32(a[r][1], _mm256_madd_epi16(s1, ones));
                    }
                }
            }
            // The block's left-out weights (a few per block), added in i32 while the rows' x
            // are still in L1: exact, and no scattered pass over y afterwards.
            let fixes = &w.corrections[w.block_fixes[block]..w.block_fixes[block + 1]];
            if !fixes.is_empty() {
                let mut t = [[0i32; NB]; MR];
                for (t, a) in t.iter_mut().zip(&a) {
                    let p = t.as_mut_ptr() as *mut __m256i;
                    unsafe {
                        _mm256_storeu_si256(p, a[0]);
                        _mm256_storeu_si256(p.add(1), a[1]);
                    }
                }
                for fix in fixes {
                    let (j, k) = (fix.channel as usize - c0, fix.k as usize);
                    for (t, &row) in t.iter_mut().zip(&rows) {
                        t[j] += fix.delta * i32::from(x[row * kq * 4 + k]);
                    }
                }
                for (a, t) in a.iter_mut().zip(&t) {
                    let p = t.as_ptr() as *const __m256i;
                    unsafe { *a = [_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1))] };
                }
            }
            for (r, acc_r) in a.iter().enumerate() {
                let row = m0 + r;
                if row >= m {
                    break;
                }
                let rs = _mm256_set1_ps(rescale.rows[row]);
                let zero = _mm256_set1_epi32(rescale.zeros[row]);
                let out: [__m256; 2] = std::array::from_fn(|h| {
                    let scale = _mm256_mul_ps(rs, cs[h]);
                    let exact = _mm256_sub_epi32(acc_r[h], _mm256_mullo_epi32(zero, sums[h]));
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), scale, bias[h])
                });
                let dst = &mut y[row * n + c0..][..width];
                if width == NB {
                    unsafe {
                        _mm256_storeu_ps(dst.as_mut_ptr(), out[0]);
                        _mm256_storeu_ps(dst.as_mut_ptr().add(8), out[1]);
                    }
                } else {
                    let mut lanes = [0f32; NB];
                    unsafe {
                        _mm256_storeu_ps(lanes.as_mut_ptr(), out[0]);
                        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), out[1]);
                    }
                    dst.copy_from_slice(&lanes[..width]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_triple_loop_on_awkward_shapes() {
        for &(m, n, k) in
            &[(1, 1, 1), (5, 17, 3), (4, 16, 8), (9, 33, 31), (3, 40, 384), (530, 20, 384)]
        {
            // Extremes included: weights −128..=127, activations 0..=ACTIVATION_MAX; 530 rows
            // run many row tiles against each weight block.
            // Odd channels step slowly, so a lane's four weights share a sign and overflow.
            let step = |i: usize| if (i / k).is_multiple_of(2) { i * 97 + 13 } else { i * 7 };
            let w: Vec<i8> = (0..n * k).map(|i| (step(i) % 256) as u8 as i8).collect();
            let x: Vec<u8> =
                (0..m * k).map(|i| ((i * 31 + 7) % (ACTIVATION_MAX as usize + 1)) as u8).collect();
            let kp = padded_k(k);
            let mut xp = vec![0u8; m * kp];
            for (dst, src) in xp.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
                dst[..k].copy_from_slice(src);
            }
            let packed = PackedWeights::pack(&w, n, k);
            if k == 384 {
                // These weights overflow some i16 lanes: the corrections are exercised.
                assert!(!packed.corrections.is_empty());
            }
            let mut acc = vec![0i32; m * n];
            matmul(&xp, m, &packed, &mut acc);
            // Scales and bias chosen so every f32 result is exact: |acc| < 2²⁴, powers of two.
            let rows: Vec<f32> = (0..m).map(|r| [1.0, 0.5, 2.0][r % 3]).collect();
            let zeros: Vec<i32> = (0..m).map(|r| [0, 64, 127][r % 3]).collect();
            let channels: Vec<f32> = (0..n).map(|c| [0.25, 1.0][c % 2]).collect();
            let bias: Vec<f32> = (0..n).map(|c| c as f32 - 3.0).collect();
            let mut y = vec![f32::NAN; m * n];
            let rescale =
                Rescale { rows: &rows, zeros: &zeros, channels: &channels, bias: Some(&bias) };
            linear(&xp, m, &packed, &rescale, &mut y);
            for row in 0..m {
                for c in 0..n {
                    let want: i32 = (0..k)
                        .map(|kk| i32::from(x[row * k + kk]) * i32::from(w[c * k + kk]))
                        .sum();
                    assert_eq!(acc[row * n + c], want, "{m}x{n}x{k} at {row},{c}");
                    let sum: i32 = (0..k).map(|kk| i32::from(w[c * k + kk])).sum();
                    let want_y =
                        (want - zeros[row] * sum) as f32 * rows[row] * channels[c] + bias[c];
                    assert_eq!(y[row * n + c], want_y, "{m}x{n}x{k} at {row},{c}");
                }
            }
        }
    }
}
