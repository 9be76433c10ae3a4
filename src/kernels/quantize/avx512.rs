//! x86_64 AVX-512 form of [`super::quantize_row_split`]: four passes over the row, 16 lanes
//! wide with masked tails, where the portable form makes five, 8 wide (chunk peaks, the outlier
//! scan, a copy with the outliers zeroed, its minimum and maximum, the quantization) with a
//! reduction per chunk.
//!
//! 1. Lane-wise (lane l holds positions ≡ l mod 16) magnitude peaks. The 4th largest of them
//!    bounds the row's 4th largest magnitude from below.
//! 2. The outliers: which lanes are above the bound, noted per chunk without a branch, then
//!    the largest four of those.
//! 3. The rest's minimum and maximum, the outliers' lanes masked off (four accumulators).
//! 4. The quantization, the outliers' bytes then set to the zero point.
//!
//! Why: the portable form was a tenth of an int8 inference at 256 tokens on this host; the
//! timings of both forms and of this one's steps are in results/precision.md. The result is
//! the portable form's bit for bit (same outliers, same range, round-to-nearest-even
//! conversion).

use std::arch::x86_64::*;

use super::{ACTIVATION_MAX, Largest, OUTLIERS, RowQuant, from_keys, insert};

/// Longest row step 2 notes on the stack, in chunks of 16 (BERT-large's FFN output reads
/// 4096 values); a longer one goes to the portable form.
const MAX_CHUNKS: usize = 256;

/// `None` where the portable form must decide (an empty row, a non-finite value, a zero
/// range).
///
/// # Safety
/// AVX-512 F is present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn quantize_row_split(x: &[f32], out: &mut [u8]) -> Option<(RowQuant, Largest)> {
    let k = x.len();
    if k == 0 || out.len() != k || k > 16 * MAX_CHUNKS {
        return None;
    }
    // Lanes `i..i + 16` of the row, as a mask (all 16 but in the last partial step).
    let lanes = |i: usize| -> __mmask16 { if k - i >= 16 { !0 } else { (1 << (k - i)) - 1 } };
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    // Masked-off lanes read 0: no effect on a magnitude peak or on a range holding 0.
    // SAFETY (every raw access below): masked to positions below k = x.len() = out.len().
    let load = |i: usize, m: __mmask16| unsafe { _mm512_maskz_loadu_ps(m, x.as_ptr().add(i)) };
    let bits = |v: __m512| _mm512_and_si512(_mm512_castps_si512(v), abs);

    // 1. Lane-wise magnitude peaks.
    let mut peak = _mm512_setzero_si512();
    chunks(0, k, |i, m| peak = _mm512_max_epu32(peak, bits(load(i, m))));
    let mut peaks = [0u32; 16];
    // SAFETY: 16 u32.
    unsafe { _mm512_storeu_si512(peaks.as_mut_ptr().cast(), peak) };
    // NaN's magnitude bits are above infinity's.
    if peaks.iter().any(|&p| p >= f32::INFINITY.to_bits()) {
        return None;
    }
    // The 4th largest lane peak: of four values at distinct positions, so no larger than the
    // row's 4th largest magnitude. (The bound from the peaks by position mod 4 let 6.7 values
    // per row past the scan's first threshold on MiniLM's hidden states; this one lets 4.6,
    // where 4 is the least, and each is a mispredicted branch.)
    const _: () = assert!(OUTLIERS == 4);
    let mut top4 = [0u32; 4];
    for &p in &peaks {
        // Inserted into the descending `top4` without branches.
        let [t0, t1, t2, t3] = top4;
        top4 = [t0.max(p), t1.max(t0.min(p)), t2.max(t1.min(p)), t3.max(t2.min(p))];
    }

    // 2. The outliers, as [`super::largest_above`] finds them (the largest keys, magnitude
    // bits above and `!index` below: an equal magnitude at a later index loses the tie) among
    // the values above the bound (4 to 8 of them in a row of MiniLM's). The scan only notes
    // which lanes of which chunks are above, with no branch and no chain from chunk to chunk;
    // the few chunks noted are then read bit by bit. (A branch per chunk with a value above,
    // its outcome a coin toss, was most of this function's time; compressing each chunk's
    // values into a list made the list's length a chain of ~7 cycles per chunk.)
    let threshold = _mm512_set1_epi32(top4[3].saturating_sub(1) as i32);
    let mut above = [0u16; MAX_CHUNKS];
    let mut hit = [0u64; MAX_CHUNKS / 64];
    // The current word of `hit` in a register (or-ed in memory, it was a store-to-load chain).
    let mut word = 0u64;
    chunks(0, k, |i, m| {
        let (c, lanes) = (i / 16, _mm512_mask_cmpgt_epu32_mask(m, bits(load(i, m)), threshold));
        above[c] = lanes;
        word |= u64::from(lanes != 0) << (c % 64);
        if c % 64 == 63 {
            (hit[c / 64], word) = (word, 0);
        }
    });
    if !k.div_ceil(16).is_multiple_of(64) {
        hit[k.div_ceil(16) / 64] = word;
    }
    let mut keys = [0u64; OUTLIERS];
    for (word, &bits) in hit.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let c = word * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let mut lanes = above[c];
            while lanes != 0 {
                let i = c * 16 + lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                insert(
                    &mut keys,
                    (u64::from(x[i].to_bits() & 0x7fff_ffff) << 32) | u64::from(!(i as u32)),
                );
            }
        }
    }
    let largest = from_keys(x, &keys);

    // 3. The range of the rest: chunks holding an outlier read with its lane masked off.
    let mut skip: [(usize, __mmask16); OUTLIERS] = [(0, 0); OUTLIERS];
    let mut by_index = largest.index;
    by_index[..largest.len].sort_unstable();
    let mut n = 0;
    for &i in &by_index[..largest.len] {
        let (chunk, bit) = (i as usize / 16 * 16, 1 << (i % 16));
        if n > 0 && skip[n - 1].0 == chunk {
            skip[n - 1].1 |= bit;
        } else {
            skip[n] = (chunk, bit);
            n += 1;
        }
    }
    // Four minima and maxima in turn: one of each was a 4-cycle chain of `vminps` / `vmaxps`
    // per chunk, the slowest of the four passes (`perf annotate`). Same range in any order.
    let mut lo = [_mm512_setzero_ps(); 4];
    let mut hi = lo;
    let mut take = |i: usize, m: __mmask16, j: usize| {
        let v = load(i, m);
        (lo[j], hi[j]) = (_mm512_min_ps(lo[j], v), _mm512_max_ps(hi[j], v));
    };
    let mut from = 0;
    // The stretches between the outliers' chunks without a look at them, then each such chunk.
    for &(chunk, lanes_out) in &skip[..n] {
        // Whole chunks: `chunk` is at or before the last one.
        chunks4(from, chunk, &mut take);
        take(chunk, lanes(chunk) & !lanes_out, 0);
        from = chunk + 16;
    }
    chunks4(from.min(k), k, &mut take);
    let (lo, hi) = (
        _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3])),
        _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3])),
    );
    let (lo, hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
    let range = hi - lo;
    if !(range > 0.0 && range.is_finite()) {
        return None;
    }

    // 4. The quantization.
    let inv = f32::from(ACTIVATION_MAX) / range;
    let zero = super::round_even(-lo * inv);
    let (scale, zeros) = (_mm512_set1_ps(inv), _mm512_set1_epi32(zero));
    let (floor, top) = (_mm512_setzero_si512(), _mm512_set1_epi32(i32::from(ACTIVATION_MAX)));
    chunks(0, k, |i, m| {
        // The default rounding, to nearest even: `round_even` for |v · inv| ≤ 127 (an
        // outlier's lane may be anything: it is overwritten below).
        let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(load(i, m), scale)), zeros);
        let q = _mm512_min_epi32(_mm512_max_epi32(q, floor), top);
        // SAFETY: as the loads. (A narrowing store straight to memory is slow on some CPUs.)
        unsafe {
            let dst = out.as_mut_ptr().add(i);
            match m == !0 {
                true => _mm_storeu_si128(dst.cast(), _mm512_cvtepi32_epi8(q)),
                false => _mm512_mask_cvtepi32_storeu_epi8(dst.cast(), m, q),
            }
        }
    });
    for (i, _) in largest.iter() {
        out[i] = zero as u8;
    }
    Some((RowQuant { scale: range / f32::from(ACTIVATION_MAX), zero }, largest))
}

/// [`chunks`] with `f(i, lanes, j)`, `j` taking turns 0..4 over the whole chunks (each turn its
/// own accumulators: no chain of dependent operations from chunk to chunk).
#[inline(always)]
fn chunks4(from: usize, to: usize, f: &mut impl FnMut(usize, __mmask16, usize)) {
    let whole = from + (to.saturating_sub(from)) / 16 * 16;
    let mut i = from;
    while i + 64 <= whole {
        for j in 0..4 {
            f(i + 16 * j, !0, j);
        }
        i += 64;
    }
    while i < whole {
        f(i, !0, 0);
        i += 16;
    }
    if whole < to {
        f(whole, (1 << (to - whole)) - 1, 1);
    }
}

/// `f(i, lanes)` for each chunk of 16 from `from` (a multiple of 16) up to `to`: whole chunks
/// with all lanes, then a partial one with its lanes' mask. Inlined, the whole chunks' loads
/// are plain loads; a mask computed per chunk cost a compare, a move and a mask register
/// write in every pass.
#[inline(always)]
fn chunks(from: usize, to: usize, mut f: impl FnMut(usize, __mmask16)) {
    let whole = from + (to.saturating_sub(from)) / 16 * 16;
    for i in (from..whole).step_by(16) {
        f(i, !0);
    }
    if whole < to {
        f(whole, (1 << (to - whole)) - 1);
    }
}
