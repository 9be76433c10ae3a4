//! Per-row activation quantization: f32 → 0..=127 with the row's own scale and zero point,
//! optionally with the row's few largest magnitudes split off to be multiplied in f32
//! ([`quantize_row_split`]).

use super::gemm_i8::ACTIVATION_MAX;

#[cfg(target_arch = "arm")]
mod armv7;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

/// An integer type quantized values are stored as: i8 for tract's matmul, u8 for
/// [`super::gemm_i8`]'s.
pub trait QuantizedInt: Copy {
    const ZERO: Self;
    /// `v` in 0..=127; plain `as` (truncating int → int casts vectorize, float → int
    /// saturating ones do not).
    fn from_i32(v: i32) -> Self;
}

impl QuantizedInt for i8 {
    const ZERO: i8 = 0;
    #[inline(always)]
    fn from_i32(v: i32) -> i8 {
        v as i8
    }
}

impl QuantizedInt for u8 {
    const ZERO: u8 = 0;
    #[inline(always)]
    fn from_i32(v: i32) -> u8 {
        v as u8
    }
}

/// `v` rounded to nearest-even as an integer, for |v| < 2²²: adding 1.5·2²³ pushes the
/// fraction out of the mantissa and leaves the integer in the low bits. Unlike `f32::round`
/// plus `as i32`, it vectorizes on every target (no SSE4.1, no saturating conversion).
#[inline(always)]
fn round_even(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    ((v + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// A quantized row's scale and zero point: `x ≈ (q − zero) · scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowQuant {
    pub scale: f32,
    pub zero: i32,
}

/// Quantizes one row into `out` (0..=ACTIVATION_MAX, as i8 or u8); returns its scale and
/// zero point (scale 0 for an all-zero row, NaN for a row with a non-finite value).
pub fn quantize_row<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    // The default x86_64 target is SSE2 only; with AVX2 the same loops run 8 wide.
    #[cfg(target_arch = "x86_64")]
    if crate::platform::cpu::features().avx2_fma {
        // SAFETY: AVX2 is present.
        return unsafe { quantize_row_avx2(x, out) };
    }
    quantize_row_body(x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    quantize_row_body(x, out)
}

/// `(min(x ∪ {0}), max(x ∪ {0}), whether every value is finite)`. Both bounds start at 0:
/// zero is always in range, and maps to the zero point exactly.
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32, bool) {
    #[cfg(target_arch = "aarch64")]
    {
        // NEON `fmin`/`fmax` propagate NaN (and ±inf reach the bounds), so non-finite rows
        // show in the bounds themselves. The portable form below compiles to scalar
        // `fcmp`/`fcsel` here, several instructions per value, a visible share of an int8
        // inference on a Cortex-A76 (cross/insn-profile.sh); this is 3 per four values.
        use std::arch::aarch64::*;
        let mut chunks = x.chunks_exact(8);
        // SAFETY: NEON is the aarch64 baseline; each chunk holds 8 values.
        let (lo, hi) = unsafe {
            let (mut lo, mut hi) = ([vdupq_n_f32(0.0); 2], [vdupq_n_f32(0.0); 2]);
            for c in &mut chunks {
                let v = [vld1q_f32(c.as_ptr()), vld1q_f32(c.as_ptr().add(4))];
                for i in 0..2 {
                    lo[i] = vminq_f32(lo[i], v[i]);
                    hi[i] = vmaxq_f32(hi[i], v[i]);
                }
            }
            (vminvq_f32(vminq_f32(lo[0], lo[1])), vmaxvq_f32(vmaxq_f32(hi[0], hi[1])))
        };
        let nan = |a: f32, b: f32| a.is_nan() || b.is_nan();
        let lo =
            chunks.remainder().iter().fold(lo, |m, &v| if nan(m, v) { f32::NAN } else { m.min(v) });
        let hi =
            chunks.remainder().iter().fold(hi, |m, &v| if nan(m, v) { f32::NAN } else { m.max(v) });
        (lo, hi, lo.is_finite() && hi.is_finite())
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        // Eight independent minima and maxima so the loop vectorizes (a single fold is a
        // serial chain). `v · 0` is 0 unless v is NaN or infinite: the comparisons skip NaN,
        // this does not.
        let (mut lo, mut hi, mut poison) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for (((lo, hi), p), &v) in lo.iter_mut().zip(&mut hi).zip(&mut poison).zip(c) {
                *lo = if v < *lo { v } else { *lo };
                *hi = if v > *hi { v } else { *hi };
                *p += v * 0.0;
            }
        }
        let rest = chunks.remainder();
        let min = lo.iter().chain(rest).fold(0f32, |m, &v| m.min(v));
        let max = hi.iter().chain(rest).fold(0f32, |m, &v| m.max(v));
        let finite = poison.iter().chain(rest).fold(0f32, |p, &v| p + v * 0.0) == 0.0;
        (min, max, finite)
    }
}

#[inline(always)]
fn quantize_row_body<T: QuantizedInt>(x: &[f32], out: &mut [T]) -> RowQuant {
    let (min, max, finite) = min_max(x);
    let range = max - min;
    if !(range > 0.0 && range.is_finite() && finite) {
        out.fill(T::ZERO);
        let scale = if range == 0.0 && finite { 0.0 } else { f32::NAN };
        return RowQuant { scale, zero: 0 };
    }
    let top = f32::from(ACTIVATION_MAX);
    let inv = top / range;
    let zero = round_even(-min * inv);
    let top = i32::from(ACTIVATION_MAX);
    for (q, &v) in out.iter_mut().zip(x) {
        *q = T::from_i32((round_even(v * inv) + zero).clamp(0, top));
    }
    RowQuant { scale: range / f32::from(ACTIVATION_MAX), zero }
}

/// How many of a row's largest magnitudes [`quantize_row_split`] keeps out of the 7-bit grid.
/// Measured on MiniLM-L6 (results/precision.md): with none, a token's one or two large values
/// stretch its step for the other 380. Splitting the top 4 takes the golden sentences' cosine
/// to fp32 (mean / min) from 0.99552 / 0.98112 to 0.99906 / 0.99637; the top 8 measured
/// 0.99914 / 0.99593 for about half as much extra work again.
pub const OUTLIERS: usize = 4;

/// A row's largest-magnitude values, largest first, as 16-bit integers for an exact integer
/// product: value ≈ `q · scale`. Unused slots have `q = 0` (and index 0), so a kernel may
/// multiply all [`OUTLIERS`] slots without looking at `len`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outliers {
    pub index: [u32; OUTLIERS],
    pub q: [i16; OUTLIERS],
    pub scale: f32,
    pub len: usize,
}

/// A row's largest magnitudes, largest first (what [`Outliers`] is made from).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Largest {
    pub index: [u32; OUTLIERS],
    pub value: [f32; OUTLIERS],
    pub len: usize,
}

impl Largest {
    pub fn iter(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.index[..self.len]
            .iter()
            .map(|&i| i as usize)
            .zip(self.value[..self.len].iter().copied())
    }
}

/// The [`OUTLIERS`] non-zero values of `x` with the largest magnitudes (fewer if `x` has fewer
/// non-zero values). Ties go to the lower index, so the choice does not depend on how rows are
/// split over threads. A NaN counts as larger than any number: it is taken, and poisons the
/// outliers' scale (the row's result is NaN either way).
pub fn largest_magnitudes(x: &[f32]) -> Largest {
    #[cfg(target_arch = "x86_64")]
    if crate::platform::cpu::features().avx2_fma {
        // SAFETY: AVX2 is present.
        return unsafe { largest_magnitudes_avx2(x) };
    }
    largest_magnitudes_body(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn largest_magnitudes_avx2(x: &[f32]) -> Largest {
    largest_magnitudes_body(x)
}

/// Values compared by the bits of their magnitude (for non-negative floats, and NaN above
/// infinity, the integer order is the numeric order): integer maxima vectorize on every target.
#[inline(always)]
fn magnitude_bits(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

/// Bit j set where `magnitude_bits(c[j]) > t`, for a chunk of 16.
#[inline(always)]
fn lanes_above(c: &[f32], t: u32) -> u32 {
    debug_assert_eq!(c.len(), 16);
    #[cfg(target_arch = "x86_64")]
    if crate::platform::cpu::features().avx2_fma {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present; `c` holds 16 floats. Magnitude bits are below 2³¹, so the
        // signed compare orders them as unsigned.
        return unsafe {
            let (abs, t) = (_mm256_set1_epi32(0x7fff_ffff), _mm256_set1_epi32(t as i32));
            let half = |p: *const f32| {
                let bits = _mm256_and_si256(_mm256_loadu_si256(p.cast()), abs);
                _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(bits, t))) as u32
            };
            half(c.as_ptr()) | (half(c.as_ptr().add(8)) << 8)
        };
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::aarch64::*;
        // SAFETY: NEON is the aarch64 baseline; `c` holds 16 floats. Each lane's compare mask
        // keeps its own bit (1 << lane); the four registers' bits are disjoint, so adding
        // them and then across lanes is an OR.
        unsafe {
            let (abs, t) = (vdupq_n_u32(0x7fff_ffff), vdupq_n_u32(t));
            let bits: [u32; 4] = [1, 2, 4, 8];
            let lane_bits = vld1q_u32(bits.as_ptr());
            let mask = |i: usize| {
                let v = vandq_u32(vreinterpretq_u32_f32(vld1q_f32(c.as_ptr().add(4 * i))), abs);
                vandq_u32(vcgtq_u32(v, t), vshlq_u32(lane_bits, vdupq_n_s32(4 * i as i32)))
            };
            vaddvq_u32(vaddq_u32(vaddq_u32(mask(0), mask(1)), vaddq_u32(mask(2), mask(3))))
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    c.iter().enumerate().fold(0, |m, (j, &v)| m | (u32::from(magnitude_bits(v) > t) << j))
}

/// Whether all four of `p` are at most `t`.
#[inline(always)]
fn none_above(p: &[u32], t: u32) -> bool {
    debug_assert_eq!(p.len(), 4);
    #[cfg(target_arch = "aarch64")]
    // SAFETY: NEON is the aarch64 baseline; `p` holds four values.
    unsafe {
        use std::arch::aarch64::*;
        vmaxvq_u32(vld1q_u32(p.as_ptr())) <= t
    }
    #[cfg(not(target_arch = "aarch64"))]
    p.iter().all(|&v| v <= t)
}

/// Inserts `key` into `keys` (sorted, largest first), dropping the smallest; a key not larger
/// than the last changes nothing. Branch-free: slot i becomes max(old i, min(old i−1, key)),
/// so an unpredictable position costs no mispredicted branches.
#[inline(always)]
fn insert(keys: &mut [u64; OUTLIERS], key: u64) {
    let old = *keys;
    keys[0] = old[0].max(key);
    for i in 1..OUTLIERS {
        keys[i] = old[i].max(old[i - 1].min(key));
    }
}

/// The largest magnitude bits of a chunk of 16 (a vectorized integer maximum).
#[inline(always)]
fn chunk_peak(c: &[f32]) -> u32 {
    c.iter().map(|&v| magnitude_bits(v)).fold(0, u32::max)
}

/// Longest row whose chunk peaks [`largest_magnitudes`] keeps on the stack (BERT-large's FFN
/// output reads 4096); longer rows are scanned without the bound.
const MAX_CHUNKS: usize = 256;

#[inline(always)]
fn largest_magnitudes_body(x: &[f32]) -> Largest {
    let chunks = x.len() / 16;
    if chunks > MAX_CHUNKS {
        return largest_given_peaks(x, None);
    }
    let mut peaks = [0u32; MAX_CHUNKS];
    for (p, c) in peaks.iter_mut().zip(x.chunks_exact(16)) {
        *p = chunk_peak(c);
    }
    largest_given_peaks(x, Some(&peaks[..chunks]))
}

/// [`largest_magnitudes`] given each chunk of 16's peak ([`chunk_peak`]), or none (read as it
/// goes, without the bound).
#[inline(always)]
fn largest_given_peaks(x: &[f32], peaks: Option<&[u32]>) -> Largest {
    // The [`OUTLIERS`] largest peaks are that many values at least as large as the smallest
    // of them, so that peak bounds the row's [`OUTLIERS`]-th largest magnitude from below:
    // only chunks above it are read lane by lane.
    let mut bound = 0u32;
    if let Some(peaks) = peaks {
        let mut top = [0u64; OUTLIERS];
        for &p in peaks {
            if p > bound {
                insert(&mut top, u64::from(p) << 32);
                bound = (top[OUTLIERS - 1] >> 32) as u32;
            }
        }
    }
    largest_above(x, peaks, bound)
}

/// [`largest_magnitudes`] given the chunks' peaks (or none) and a `bound` no larger than the
/// row's [`OUTLIERS`]-th largest magnitude bits (0 if unknown): only values at or above it
/// are looked at.
#[inline(always)]
fn largest_above(x: &[f32], peaks: Option<&[u32]>, bound: u32) -> Largest {
    // Sorted, largest first: magnitude bits above, `!index` below (the lower index wins a
    // tie), 0 for an empty slot.
    let mut keys = [0u64; OUTLIERS];
    let key = |i: usize, v: f32| (u64::from(magnitude_bits(v)) << 32) | u64::from(!(i as u32));
    let start = bound.saturating_sub(1);
    // Only values above `threshold` can enter: it starts just below the bound, then follows
    // the smallest kept value (values come in index order, so one equal to it loses the tie).
    let mut threshold = start;
    // With the peaks known, four chunks at a time while none is above the threshold (NEON:
    // one compare).
    let chunks = x.len() / 16;
    let mut i = 0;
    while i < chunks {
        let peak = match peaks {
            Some(p) if i + 4 <= p.len() && none_above(&p[i..i + 4], threshold) => {
                i += 4;
                continue;
            }
            Some(p) => p[i],
            None => chunk_peak(&x[16 * i..][..16]),
        };
        let (at, c) = (16 * i, &x[16 * i..][..16]);
        i += 1;
        if peak <= threshold {
            continue;
        }
        let mut mask = lanes_above(c, threshold);
        while mask != 0 {
            let j = mask.trailing_zeros() as usize;
            insert(&mut keys, key(at + j, c[j]));
            mask &= mask - 1;
        }
        threshold = start.max((keys[OUTLIERS - 1] >> 32) as u32);
    }
    let base = x.len() / 16 * 16;
    for (j, &v) in x[base..].iter().enumerate() {
        if magnitude_bits(v) > threshold {
            insert(&mut keys, key(base + j, v));
            threshold = start.max((keys[OUTLIERS - 1] >> 32) as u32);
        }
    }
    from_keys(x, &keys)
}

/// The values behind [`largest_above`]'s keys (magnitude bits above, `!index` below; 0 for an
/// empty slot).
#[inline(always)]
fn from_keys(x: &[f32], keys: &[u64; OUTLIERS]) -> Largest {
    let mut top = Largest::default();
    for &key in keys.iter().take_while(|&&k| k >> 32 != 0) {
        let i = !(key as u32);
        top.index[top.len] = i;
        top.value[top.len] = x[i as usize];
        top.len += 1;
    }
    top
}

/// The middle of the two-pass forms of [`quantize_row_split`] (`neon.rs`, `armv7.rs`): from
/// each chunk of 16's peak magnitude, minimum and maximum (their pass 1) and a `bound` no
/// larger than the row's [`OUTLIERS`]-th largest magnitude bits, the outliers and the rest's
/// `(min, range)`: 0 (where the outliers were, and the portable form's starting point) and
/// every value but the outliers; the few chunks holding an outlier are read again with it set
/// to 0. `None` for a range the portable form must decide (zero or not finite).
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
fn outliers_and_rest_range(
    x: &[f32],
    peaks: &[u32],
    lows: &mut [f32],
    highs: &mut [f32],
    bound: u32,
) -> Option<(Largest, f32, f32)> {
    // Comparisons, not `f32::min`/`max`: every value is finite here (pass 1 checked), and on
    // armv7 those are libm calls (`fminf`, `fmaxf`: 5 M instructions at 128 tokens).
    let below = |m: f32, v: f32| if v < m { v } else { m };
    let above = |m: f32, v: f32| if v > m { v } else { m };
    let largest = largest_above(x, Some(peaks), bound);
    for (n, (i, _)) in largest.iter().enumerate() {
        let c = i / 16;
        if largest.index[..n].iter().any(|&e| e as usize / 16 == c) {
            continue; // read again already
        }
        let mut chunk = [0f32; 16];
        chunk.copy_from_slice(&x[16 * c..][..16]);
        for (e, _) in largest.iter().filter(|&(e, _)| e / 16 == c) {
            chunk[e % 16] = 0.0;
        }
        lows[c] = chunk.iter().fold(0f32, |m, &v| below(m, v));
        highs[c] = chunk.iter().fold(0f32, |m, &v| above(m, v));
    }
    let lo = lows.iter().fold(0f32, |m, &v| below(m, v));
    let hi = highs.iter().fold(0f32, |m, &v| above(m, v));
    let range = hi - lo;
    (range > 0.0 && range.is_finite()).then_some((largest, lo, range))
}

/// The largest values as 16-bit integers on one symmetric scale (the largest magnitude maps
/// to ±32767): the rounding error, at most 1/65534 of the largest, is far below the 7-bit
/// step of the rest of the row.
fn to_i16(largest: &Largest) -> Outliers {
    let mut out = Outliers { index: largest.index, len: largest.len, ..Outliers::default() };
    let max = largest.value.first().map_or(0.0, |v| v.abs());
    if largest.len == 0 || max == 0.0 {
        return out;
    }
    out.scale = max / f32::from(i16::MAX);
    let inv = f32::from(i16::MAX) / max;
    for (q, &v) in out.q.iter_mut().zip(&largest.value[..largest.len]) {
        // |v · inv| ≤ 32767 (+ rounding); non-finite values poison `scale` instead.
        *q = round_to_i16(v * inv);
    }
    out
}

/// `x.round().clamp(-32767.0, 32767.0) as i16` (NaN → 0) without `roundf`, which is a libm
/// call on x86_64's baseline and on armv7: the truncation, plus one away from zero where the
/// fraction (exact for |x| < 2²³; 0 above, where every float is whole) is at least ½.
#[inline]
fn round_to_i16(x: f32) -> i16 {
    let whole = x as i32; // toward zero, saturating; NaN → 0
    let frac = x - whole as f32; // NaN for NaN and ±∞: no step
    let step = i32::from(frac >= 0.5) - i32::from(frac <= -0.5);
    whole.saturating_add(step).clamp(-32767, 32767) as i16
}

/// [`quantize_row`] of `x` less its [`largest_magnitudes`], which are returned as
/// [`Outliers`] for the kernel to multiply apart: the quantized row holds the zero point at
/// their positions (so the 7-bit product leaves them out exactly) and its step follows the rest
/// of the row. `scratch` is `x.len()` long.
pub fn quantize_row_split(x: &[f32], scratch: &mut [f32], out: &mut [u8]) -> (RowQuant, Outliers) {
    #[cfg(target_arch = "aarch64")]
    if let Some((quant, largest)) = neon::quantize_row_split(x, out) {
        return (quant, to_i16(&largest));
    }
    #[cfg(target_arch = "arm")]
    if crate::platform::cpu::features().arm_neon {
        // SAFETY: NEON is present (checked).
        if let Some((quant, largest)) = unsafe { armv7::quantize_row_split(x, out) } {
            return (quant, to_i16(&largest));
        }
    }
    #[cfg(target_arch = "x86_64")]
    if crate::platform::cpu::features().avx512f {
        // SAFETY: AVX-512 F is present (checked).
        if let Some((quant, largest)) = unsafe { avx512::quantize_row_split(x, out) } {
            return (quant, to_i16(&largest));
        }
    }
    quantize_row_split_portable(x, scratch, out)
}

/// [`quantize_row_split`] from its definition: the reference the NEON form is held to, and
/// what runs for the rows it does not take.
fn quantize_row_split_portable(
    x: &[f32],
    scratch: &mut [f32],
    out: &mut [u8],
) -> (RowQuant, Outliers) {
    let largest = largest_magnitudes(x);
    scratch.copy_from_slice(x);
    for (i, _) in largest.iter() {
        scratch[i] = 0.0;
    }
    (quantize_row(scratch, out), to_i16(&largest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition: every index sorted by magnitude (descending, ties by index).
    fn top_by_sorting(x: &[f32]) -> Vec<(usize, f32)> {
        // total_cmp puts a (positive) NaN above infinity, as the kernel's bit order does.
        let mut order: Vec<usize> = (0..x.len()).filter(|&i| x[i] != 0.0).collect();
        order.sort_by(|&a, &b| x[b].abs().total_cmp(&x[a].abs()).then(a.cmp(&b)));
        order.into_iter().take(OUTLIERS).map(|i| (i, x[i])).collect()
    }

    #[test]
    fn largest_magnitudes_match_a_full_sort() {
        // Lengths around the 16-wide chunks; values with ties, zeros, negatives, a NaN.
        for len in [0, 1, 5, 8, 9, 15, 16, 17, 31, 33, 384, 1536, 4113] {
            for seed in 0..4u32 {
                let x: Vec<f32> = (0..len as u32)
                    .map(|i| {
                        let h = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 1000;
                        match h % 7 {
                            0 => 0.0,
                            1 => -((h % 13) as f32),
                            _ => (h % 97) as f32 * 0.01 - 0.3,
                        }
                    })
                    .collect();
                let mut x = x;
                if len > 3 && seed == 3 {
                    x[2] = f32::NAN;
                }
                let got: Vec<(usize, f32)> = largest_magnitudes(&x).iter().collect();
                let want = top_by_sorting(&x);
                assert_eq!(got.len(), want.len(), "len {len} seed {seed}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.0, w.0, "len {len} seed {seed}: {got:?} vs {want:?}");
                    assert_eq!(g.1.to_bits(), w.1.to_bits());
                }
            }
        }
    }

    #[test]
    fn split_rows_quantize_the_rest_and_leave_the_zero_point_at_outliers() {
        // Two large values and 14 small ones: the step follows the small ones.
        let mut x: Vec<f32> = (0..16).map(|i| (i as f32 - 7.0) * 0.01).collect();
        x[3] = 50.0;
        x[11] = -20.0;
        let mut scratch = vec![0f32; 16];
        let mut q = [0u8; 16];
        let (rq, out) = quantize_row_split(&x, &mut scratch, &mut q);
        let split: Vec<usize> = out.index[..out.len].iter().map(|&i| i as usize).collect();
        assert_eq!(&split[..2], &[3, 11]);
        assert_eq!(out.len, OUTLIERS.min(15), "every non-zero value up to the limit");
        assert_eq!((out.q[0], out.q[1]), (32767, -13107), "50 → 32767, −20 → −32767·0.4");
        for (&i, &oq) in split.iter().zip(&out.q) {
            assert!((f32::from(oq) * out.scale - x[i]).abs() <= out.scale / 2.0 * 1.0001);
            assert_eq!(i32::from(q[i]), rq.zero, "outlier {i} sits at the zero point");
        }
        // What is left is within half a step of the original.
        for (i, (&v, &q)) in x.iter().zip(&q).enumerate().filter(|(i, _)| !split.contains(i)) {
            let back = (i32::from(q) - rq.zero) as f32 * rq.scale;
            assert!((v - back).abs() <= rq.scale / 2.0 + 1e-6, "{i}: {v} vs {back}");
        }
        assert!(rq.scale < 0.15 / 127.0 * 1.01, "step from the small values: {}", rq.scale);
    }

    /// What runs (NEON on aarch64, AVX-512 where x86_64 has it) against [`quantize_row_split_portable`], bit for bit: rows
    /// of 16 to 4096 (the NEON form's whole chunks) and the lengths it leaves to the portable
    /// form, with ties, zeros, negative-only and positive-only rows, a constant row and
    /// non-finite values.
    #[test]
    fn rounding_to_i16_is_round_then_clamp() {
        let mut values = vec![0.5f32, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 32766.5];
        values.extend([32767.5, -32767.5, 1e9, -1e9, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        values.extend([8388607.5, 8388608.0, 16777217.0, f32::MIN_POSITIVE, -0.0]);
        values.extend((0..20_000).map(|i| (i as f32 - 10_000.0) * 0.25 + (i % 7) as f32 * 1e-3));
        for x in values {
            let want = if x.is_nan() { 0 } else { x.round().clamp(-32767.0, 32767.0) as i16 };
            assert_eq!(round_to_i16(x), want, "{x}");
        }
    }

    #[test]
    fn split_rows_match_the_portable_form() {
        for len in [16, 32, 48, 384, 1536, 4096, 4112, 1, 8, 17, 100, 200, 576] {
            for seed in 0..10u32 {
                let mut x: Vec<f32> = (0..len as u32)
                    .map(|i| {
                        let h = i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503);
                        match h % 11 {
                            0 => 0.0,
                            1 => -((h % 13) as f32),
                            2 => ((h >> 8) % 97) as f32 * 0.37,
                            _ => ((h >> 4) % 1000) as f32 * 0.001 - 0.45,
                        }
                    })
                    .collect();
                match seed {
                    4 => x.iter_mut().for_each(|v| *v = v.abs() + 0.5),
                    5 => x.iter_mut().for_each(|v| *v = -v.abs() - 0.5),
                    6 => x.fill(0.25),
                    7 => x[len / 2] = if len % 2 == 0 { f32::INFINITY } else { f32::NAN },
                    // 64 and 65 values at or above the 4th largest lane peak (of 16): 50 once,
                    // and the rest in three lanes, rising to the largest at the last (many
                    // candidates for the AVX-512 form's step 2).
                    8 | 9 if len > 16 => {
                        let lanes = |i: &usize| i % 16 < 3;
                        x.iter_mut().enumerate().for_each(|(i, v)| *v *= f32::from(!lanes(&i)));
                        x[3] = 50.0;
                        let top = (0..len).filter(lanes).take(55 + seed as usize);
                        top.for_each(|i| x[i] = 100.0 + i as f32 * 0.01);
                    }
                    _ => {}
                }
                let (mut q, mut want_q) = (vec![9u8; len], vec![9u8; len]);
                let mut scratch = vec![0f32; len];
                let got = quantize_row_split(&x, &mut scratch, &mut q);
                let want = quantize_row_split_portable(&x, &mut scratch, &mut want_q);
                let ctx = format!("len {len} seed {seed}");
                assert_eq!(got.0.scale.to_bits(), want.0.scale.to_bits(), "{ctx}");
                assert_eq!(got.0.zero, want.0.zero, "{ctx}");
                assert_eq!(q, want_q, "{ctx}");
                assert_eq!(got.1.index, want.1.index, "{ctx}");
                assert_eq!((got.1.q, got.1.len), (want.1.q, want.1.len), "{ctx}");
                assert_eq!(got.1.scale.to_bits(), want.1.scale.to_bits(), "{ctx}");
            }
        }
    }

    #[test]
    fn rows_quantize_to_their_own_range_with_an_exact_zero() {
        // min −0.5, max 0.77: 127 steps of 0.01, zero point 50.
        let x = [0.5f32, -0.5, 0.25, 0.0, 0.01, 0.77, -0.25, 0.1, 0.2, 0.004, 0.006];
        let mut q = [0u8; 11];
        let RowQuant { scale, zero } = quantize_row(&x, &mut q);
        assert!((scale - 0.01).abs() < 1e-7, "{scale}");
        assert_eq!(zero, 50);
        assert_eq!(q, [100, 0, 75, 50, 51, 127, 25, 60, 70, 50, 51]);
        // Positive-only rows use the full range from zero; a row over 8 long takes the
        // vectorized path.
        let x: Vec<f32> = (0..20).map(|i| i as f32 * 0.1).collect();
        let mut q = [0u8; 20];
        let RowQuant { scale, zero } = quantize_row(&x, &mut q);
        assert_eq!((zero, q[0], q[19]), (0, 0, 127));
        for (&v, &q) in x.iter().zip(&q) {
            assert!((v - (i32::from(q) - zero) as f32 * scale).abs() <= scale / 2.0 + 1e-6);
        }
    }

    #[test]
    fn zero_and_non_finite_rows_are_not_divided_by_zero() {
        let mut q = [5i8; 3];
        assert_eq!(quantize_row(&[0.0; 3], &mut q), RowQuant { scale: 0.0, zero: 0 });
        assert_eq!(q, [0; 3]);
        assert!(quantize_row(&[1.0, f32::INFINITY, 0.0], &mut q).scale.is_nan());
        let mut q = [5i8; 9];
        assert!(
            quantize_row(&[1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, f32::NAN], &mut q)
                .scale
                .is_nan()
        );
        assert!(
            quantize_row(&[f32::NAN, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &mut q)
                .scale
                .is_nan()
        );
    }
}
