//! LayerNorm rows with the residual add before them, in one pass while the row sits in L1.

use super::sum_of;

#[cfg(target_arch = "arm")]
mod armv7;
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
        #[cfg(target_arch = "arm")]
        if h.is_multiple_of(8) && crate::platform::cpu::features().arm_neon {
            // SAFETY: NEON and VFPv4 are present (checked).
            unsafe { armv7::row(a, b.map(|b| &b[row * h..][..h]), gamma, beta, eps, y) };
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

/// The NEON forms' scalar twin (`neon.rs`, `armv7.rs`): the same operations in the same order.
#[cfg(all(test, any(target_arch = "aarch64", target_arch = "arm")))]
mod twin {
    /// One row: lane j of the two accumulators sums the values at i ≡ j (mod 8); they are
    /// added pairwise, then across as `faddp` / `vpadd` do, ((l0 + l1) + (l2 + l3)).
    fn twin(a: &[f32], b: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
        let h = gamma.len();
        let y: Vec<f32> = (0..h).map(|i| b.map_or(a[i], |b| a[i] + b[i])).collect();
        let across = |lanes: [f32; 8]| {
            let l: [f32; 4] = std::array::from_fn(|j| lanes[j] + lanes[j + 4]);
            (l[0] + l[1]) + (l[2] + l[3])
        };
        let mut lanes = [0f32; 8];
        y.iter().enumerate().for_each(|(i, &v)| lanes[i % 8] += v);
        let mean = across(lanes) / h as f32;
        let mut lanes = [0f32; 8];
        y.iter()
            .enumerate()
            .for_each(|(i, &v)| lanes[i % 8] = (v - mean).mul_add(v - mean, lanes[i % 8]));
        let rstd = 1.0 / (across(lanes) / h as f32 + eps).sqrt();
        y.iter()
            .zip(gamma)
            .zip(beta)
            .map(|((&v, &g), &b)| ((v - mean) * rstd).mul_add(g, b))
            .collect()
    }

    /// `row` against the twin, bit for bit, with and without the residual.
    pub(super) fn check(row: impl Fn(&[f32], Option<&[f32]>, &[f32], &[f32], f32, &mut [f32])) {
        for h in [8, 16, 24, 384, 1024] {
            let a: Vec<f32> = (0..h).map(|i| ((i * 7919) % 101) as f32 * 0.13 - 6.0).collect();
            let b: Vec<f32> = (0..h).map(|i| ((i * 104_729) % 37) as f32 * -0.21 + 3.0).collect();
            let gamma: Vec<f32> = (0..h).map(|i| 0.5 + (i % 13) as f32 * 0.1).collect();
            let beta: Vec<f32> = (0..h).map(|i| (i % 7) as f32 * 0.05 - 0.1).collect();
            for residual in [None, Some(&b[..])] {
                let mut y = vec![f32::NAN; h];
                row(&a, residual, &gamma, &beta, 1e-12, &mut y);
                let want = twin(&a, residual, &gamma, &beta, 1e-12);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y), bits(&want), "h {h}, residual {}", residual.is_some());
            }
        }
    }
}
