//! Our own int8 matrix multiply for x86_64 AVX2, used by [`crate::int8`] instead of tract's.
//!
//! Why hand-written: tract 0.23.9's only AVX2 int8 kernel (`avx2_mmm_i32_8x8`) measured ~80×
//! slower than its own f32 kernel on this machine kind (results/precision.md), and no
//! well-kept crate does int8 GEMM. This one is deliberately simple: exact i16 products with
//! `vpmaddwd` (int8 values widened to i16, pairs of k summed into i32), no saturation — unlike
//! the `vpmaddubsw` u8×s8 trick ONNX Runtime uses on AVX2, which can saturate.
//!
//! Layout: weights `[n, k]` are packed once at load in blocks of 16 output channels, k in
//! pairs: for each pair p, 16 × (w[c][2p], w[c][2p+1]) as i8, widened to i16 (two ymm registers)
//! as they are loaded: half the memory of an i16 copy, which matters because short inputs are
//! bound by streaming the weights. Activation rows are quantized to i16 with k padded to even,
//! so one 32-bit broadcast is a k pair. The micro-kernel computes 4 rows × 16 channels
//! (8 accumulators).

/// Output channels per packed block.
const NB: usize = 16;
/// Rows per micro-kernel call (only the AVX2 kernel has a micro-kernel).
#[cfg(target_arch = "x86_64")]
const MR: usize = 4;

/// Int8 weights `[n, k]` packed for [`matmul`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedWeights {
    pub n: usize,
    pub k: usize,
    /// Pair-interleaved int8, widened to i16 in the kernel: half the bytes of an i16 copy, and
    /// at short inputs the linears stream their weights from memory.
    data: Vec<i8>,
}

impl PackedWeights {
    /// `k` pairs, rounded up.
    fn pairs(&self) -> usize {
        self.k.div_ceil(2)
    }

    pub fn pack(w: &[i8], n: usize, k: usize) -> PackedWeights {
        let kp = k.div_ceil(2);
        let blocks = n.div_ceil(NB);
        let mut data = vec![0i8; blocks * kp * NB * 2];
        for c in 0..n {
            let (block, j) = (c / NB, c % NB);
            for kk in 0..k {
                let (p, t) = (kk / 2, kk % 2);
                data[((block * kp + p) * NB + j) * 2 + t] = w[c * k + kk];
            }
        }
        PackedWeights { n, k, data }
    }
}

/// Whether this CPU can run [`matmul`].
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

/// Widens int8 rows `[m, k]` into the i16 layout [`matmul`] reads (k padded to even).
pub fn widen_rows(xq: &[i8], m: usize, k: usize) -> Vec<i16> {
    let kp2 = k.div_ceil(2) * 2;
    let mut out = vec![0i16; m * kp2];
    for (dst, src) in out.chunks_exact_mut(kp2).zip(xq.chunks_exact(k)) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = i16::from(s));
    }
    out
}

/// The epilogue of a quantized linear: `y = acc · row_scale · channel_scale (+ bias)`.
pub struct Rescale<'a> {
    /// One per row of `x`.
    pub rows: &'a [f32],
    /// One per output channel.
    pub channels: &'a [f32],
    pub bias: Option<&'a [f32]>,
}

/// `acc[m, n] = x[m, :] · w[n, :]` exactly, in i32, portably: the reference [`linear`] is
/// tested against. `x` from [`widen_rows`]; `acc` holds `m × n` values.
pub fn matmul(x: &[i16], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    // ok: callers size both buffers from m, k, n; input cannot reach it.
    assert!(acc.len() == m * w.n && x.len() == m * w.pairs() * 2, "matmul: shapes");
    matmul_scalar(x, m, w, acc);
}

/// `y[m, n] = (x[m, :] · w[n, :]) · rows[m] · channels[n] + bias[n]`: the int8 products exact
/// in i32, converted to f32 in the kernel's registers (no i32 buffer, no second pass).
pub fn linear(x: &[i16], m: usize, w: &PackedWeights, rescale: &Rescale, y: &mut [f32]) {
    // ok: LinearI8 sizes every buffer from m, k, n; input cannot reach it.
    assert!(
        y.len() == m * w.n
            && x.len() == m * w.pairs() * 2
            && rescale.rows.len() == m
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
        // rescale slices (the row index is clamped to m-1, the packed blocks cover every pair,
        // full-width stores only where c0 + 16 ≤ n), writes inside `y`.
        unsafe { linear_avx2(x, m, w, rescale, y) };
        return;
    }
    let mut acc = vec![0i32; m * w.n];
    matmul_scalar(x, m, w, &mut acc);
    self::rescale(&acc, rescale, y);
}

/// `y = acc · row_scale · channel_scale (+ bias)`, rows of `n`: the pass back to f32 where the
/// kernel does not fuse it.
pub fn rescale(acc: &[i32], rescale: &Rescale, y: &mut [f32]) {
    let n = rescale.channels.len();
    for ((y, acc), &r) in y.chunks_exact_mut(n).zip(acc.chunks_exact(n)).zip(rescale.rows) {
        for ((y, &a), &c) in y.iter_mut().zip(acc).zip(rescale.channels) {
            *y = a as f32 * (r * c);
        }
        if let Some(bias) = rescale.bias {
            y.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
        }
    }
}

/// Reference: the same sum, portable.
fn matmul_scalar(x: &[i16], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    let kp = w.pairs();
    for row in 0..m {
        for c in 0..w.n {
            let (block, j) = (c / NB, c % NB);
            let mut s = 0i32;
            for p in 0..kp {
                for t in 0..2 {
                    let wv = w.data[((block * kp + p) * NB + j) * 2 + t];
                    s += i32::from(wv) * i32::from(x[row * kp * 2 + 2 * p + t]);
                }
            }
            acc[row * w.n + c] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn linear_avx2(x: &[i16], m: usize, w: &PackedWeights, rescale: &Rescale, y: &mut [f32]) {
    use std::arch::x86_64::*;
    let kp = w.pairs();
    let n = w.n;
    let xp = x.as_ptr();
    for block in 0..n.div_ceil(NB) {
        let wp = unsafe { w.data.as_ptr().add(block * kp * NB * 2) };
        let c0 = block * NB;
        let width = NB.min(n - c0);
        // The block's channel scales and bias, padded to 16 lanes.
        let mut cs = [0f32; NB];
        let mut bias = [0f32; NB];
        cs[..width].copy_from_slice(&rescale.channels[c0..c0 + width]);
        if let Some(b) = rescale.bias {
            bias[..width].copy_from_slice(&b[c0..c0 + width]);
        }
        let (cs, bias) = unsafe {
            (
                [_mm256_loadu_ps(cs.as_ptr()), _mm256_loadu_ps(cs.as_ptr().add(8))],
                [_mm256_loadu_ps(bias.as_ptr()), _mm256_loadu_ps(bias.as_ptr().add(8))],
            )
        };
        for m0 in (0..m).step_by(MR) {
            let rows: [usize; MR] = std::array::from_fn(|r| (m0 + r).min(m - 1));
            let mut a = [[_mm256_setzero_si256(); 2]; MR];
            for p in 0..kp {
                unsafe {
                    let w0 = _mm_loadu_si128(wp.add(p * NB * 2) as *const __m128i);
                    let w1 = _mm_loadu_si128(wp.add(p * NB * 2 + 16) as *const __m128i);
                    let (w0, w1) = (_mm256_cvtepi8_epi16(w0), _mm256_cvtepi8_epi16(w1));
                    for r in 0..MR {
                        let pair =
                            (xp.add(rows[r] * kp * 2 + 2 * p) as *const i32).read_unaligned();
                        let xr = _mm256_set1_epi32(pair);
                        a[r][0] = _mm256_add_epi32(a[r][0], _mm256_madd_epi16(w0, xr));
                        a[r][1] = _mm256_add_epi32(a[r][1], _mm256_madd_epi16(w1, xr));
                    }
                }
            }
            for (r, acc_r) in a.iter().enumerate() {
                let row = m0 + r;
                if row >= m {
                    break;
                }
                let rs = _mm256_set1_ps(rescale.rows[row]);
                let out: [__m256; 2] = std::array::from_fn(|h| {
                    let scale = _mm256_mul_ps(rs, cs[h]);
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc_r[h]), scale, bias[h])
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
        for &(m, n, k) in &[(1, 1, 1), (5, 17, 3), (4, 16, 8), (9, 33, 31), (3, 40, 384)] {
            let w: Vec<i8> = (0..n * k).map(|i| ((i * 97 + 13) % 255) as i32 as i8).collect();
            let x: Vec<i8> = (0..m * k).map(|i| ((i * 31 + 7) % 255) as i32 as i8).collect();
            let packed = PackedWeights::pack(&w, n, k);
            let xw = widen_rows(&x, m, k);
            let mut acc = vec![0i32; m * n];
            matmul(&xw, m, &packed, &mut acc);
            // Scales and bias chosen so every f32 result is exact: |acc| < 2²⁴, powers of two.
            let rows: Vec<f32> = (0..m).map(|r| [1.0, 0.5, 2.0][r % 3]).collect();
            let channels: Vec<f32> = (0..n).map(|c| [0.25, 1.0][c % 2]).collect();
            let bias: Vec<f32> = (0..n).map(|c| c as f32 - 3.0).collect();
            let mut y = vec![f32::NAN; m * n];
            let rescale = Rescale { rows: &rows, channels: &channels, bias: Some(&bias) };
            linear(&xw, m, &packed, &rescale, &mut y);
            for row in 0..m {
                for c in 0..n {
                    let want: i32 = (0..k)
                        .map(|kk| i32::from(x[row * k + kk]) * i32::from(w[c * k + kk]))
                        .sum();
                    assert_eq!(acc[row * n + c], want, "{m}x{n}x{k} at {row},{c}");
                    let want_y = want as f32 * rows[row] * channels[c] + bias[c];
                    assert_eq!(y[row * n + c], want_y, "{m}x{n}x{k} at {row},{c}");
                }
            }
        }
    }
}
