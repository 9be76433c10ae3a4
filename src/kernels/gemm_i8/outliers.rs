//! The split-off part of an int8 linear: each row's few largest inputs
//! ([`crate::kernels::quantize::quantize_row_split`]), multiplied apart from the 7-bit product
//! and added to its f32 result:
//!
//! ```text
//! y[r, c] += (Σ_o q_o · w[c, index_o]) · (scale_r · channels[c])
//! ```
//!
//! The sum is exact in i32 (16-bit values × int8 weights, [`OUTLIERS`] terms: |sum| < 2³¹), then
//! one conversion and one fused multiply-add per output, in the same order on every kernel, so
//! every architecture gives the same f32 result bit for bit. Weights are read from
//! [`PackedWeights`]'s transposed copy: input k's weights for 16 channels are 16 adjacent bytes.
//! Kernels: `outliers_neon.rs` (`smlal` by lane), `outliers_armv7.rs` (`vmlal.s16` by lane),
//! `outliers_avx2.rs` (`vpmaddwd` on two inputs' interleaved weights); this file's loops are
//! the reference and the fallback.

use super::{NB, PackedWeights};
use crate::kernels::quantize::{OUTLIERS, Outliers};

/// Adds each row's outlier product to `y` (rows of `w.n`), `channels` being the weights'
/// per-channel scales.
pub fn add_outliers(rows: &[Outliers], w: &PackedWeights, channels: &[f32], y: &mut [f32]) {
    // ok: LinearI8 sizes every buffer from m, k, n; input cannot reach it.
    assert!(y.len() == rows.len() * w.n && channels.len() == w.n, "add_outliers: shapes");
    assert!(rows.iter().all(|o| o.index.iter().all(|&k| (k as usize) < w.k.max(1))), "index");
    let n = w.n;
    for (o, y) in rows.iter().zip(y.chunks_exact_mut(n)) {
        if o.len == 0 {
            continue;
        }
        let full = n / NB * NB;
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is the aarch64 baseline; every index is < k (checked above), so each
        // column read `columns[index · n + c0..][..16]` with c0 + 16 ≤ full ≤ n is in bounds.
        unsafe {
            super::outliers_neon::add_row(o, &w.columns, n, full, channels, y)
        };
        #[cfg(target_arch = "x86_64")]
        if crate::platform::cpu::features().avx2_fma {
            // SAFETY: AVX2 and FMA are present; bounds as for NEON above.
            unsafe { super::outliers_avx2::add_row(o, &w.columns, n, full, channels, y) };
        } else {
            add_channels(o, &w.columns, n, 0..full, channels, y);
        }
        #[cfg(target_arch = "arm")]
        if crate::platform::cpu::features().arm_neon {
            // SAFETY: NEON and VFPv4 are present; bounds as for NEON above.
            unsafe { super::outliers_armv7::add_row(o, &w.columns, n, full, channels, y) };
        } else {
            add_channels(o, &w.columns, n, 0..full, channels, y);
        }
        #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64", target_arch = "arm")))]
        add_channels(o, &w.columns, n, 0..full, channels, y);
        add_channels(o, &w.columns, n, full..n, channels, y);
    }
}

/// The reference: channels `range` of one row, plain loops.
pub(super) fn add_channels(
    o: &Outliers,
    columns: &[i8],
    n: usize,
    range: std::ops::Range<usize>,
    channels: &[f32],
    y: &mut [f32],
) {
    for c in range {
        let sum: i32 = (0..OUTLIERS)
            .map(|j| i32::from(o.q[j]) * i32::from(columns[o.index[j] as usize * n + c]))
            .sum();
        y[c] = (sum as f32).mul_add(o.scale * channels[c], y[c]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Kernel;
    use super::*;

    /// The architecture's kernel against the reference loops, bit for bit, at the 16-channel
    /// block edges, with extreme values (q ±32767, weights −128..=127) and unused slots.
    #[test]
    fn kernel_matches_the_reference_loops() {
        for n in [1, 15, 16, 17, 33, 64, 384] {
            let k = 40;
            let w: Vec<i8> = (0..n * k).map(|i| ((i * 97 + 13) % 256) as u8 as i8).collect();
            let packed = PackedWeights::pack(&w, n, k, Kernel::Portable);
            let mut rows = Vec::new();
            for r in 0..5usize {
                let len = [OUTLIERS, OUTLIERS - 1, 0, OUTLIERS, 1][r];
                let mut o =
                    Outliers { len, scale: [0.5, 1e-3, 0.0, 2.0, 0.25][r], ..Default::default() };
                for j in 0..len {
                    o.index[j] = ((r * 7 + j * 5) % k) as u32;
                    o.q[j] = [32767, -32767, 12345, -1, 0, 777, -20000, 32767][j % 8];
                }
                rows.push(o);
            }
            let channels: Vec<f32> = (0..n).map(|c| 0.001 * (c as f32 + 1.0)).collect();
            let start: Vec<f32> = (0..rows.len() * n).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut got = start.clone();
            add_outliers(&rows, &packed, &channels, &mut got);
            let mut want = start.clone();
            for (o, y) in rows.iter().zip(want.chunks_exact_mut(n)) {
                if o.len > 0 {
                    add_channels(o, &packed.columns, n, 0..n, &channels, y);
                }
            }
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "n {n} at {i}: {g} vs {w}");
            }
            // And the sum is what it says: row 0, channel 0.
            let o = &rows[0];
            let sum: i64 =
                (0..OUTLIERS).map(|j| i64::from(o.q[j]) * i64::from(w[o.index[j] as usize])).sum();
            let expect = (sum as f32).mul_add(o.scale * channels[0], start[0]);
            assert_eq!(got[0].to_bits(), expect.to_bits());
        }
    }
}
