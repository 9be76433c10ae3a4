//! LayerNorm rows with the residual add before them, in one pass while the row sits in L1.

use super::sum_of;

#[cfg(target_arch = "aarch64")]
mod neon;

simd_dispatch!(pub(crate) layer_norm_rows(
    a: &[f32],
    b: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32]
) -> () {
    let h = gamma.len();
    for (row, y) in y.chunks_exact_mut(h).enumerate() {
        let a = &a[row * h..][..h];
        #[cfg(target_arch = "aarch64")]
        if h.is_multiple_of(8) {
            neon::row(a, b.map(|b| &b[row * h..][..h]), gamma, beta, eps, y);
            continue;
        }
        // The residual sum is written to `y` first and normalized in place.
        match b {
            Some(b) => {
                let b = &b[row * h..][..h];
                y.iter_mut().zip(a).zip(b).for_each(|((y, a), b)| *y = a + b);
            }
            None => y.copy_from_slice(a),
        }
        let mean = sum_of(y, |v| v) / h as f32;
        // Two-pass variance: no cancellation when |mean| ≫ std.
        let var = sum_of(y, |v| (v - mean) * (v - mean)) / h as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for ((y, g), b) in y.iter_mut().zip(gamma).zip(beta) {
            *y = (*y - mean) * rstd * g + b;
        }
    }
});
