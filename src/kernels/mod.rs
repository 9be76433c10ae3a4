//! Our own numeric kernels, one file per kernel family, each with its per-architecture paths
//! (AVX2 + FMA on x86_64, NEON on aarch64) beside a portable form. They know nothing of tract:
//! slices in, slices out. The tract ops in [`crate::ops`] call them.

#[macro_use]
mod simd;

pub mod attention;
pub mod gelu;
pub mod gemm_i8;
pub mod layer_norm;
pub mod quantize;
pub mod softmax;

/// Σ f(v) with eight partial sums, so the loop vectorizes (one running sum is a serial chain).
#[inline(always)]
pub(crate) fn sum_of(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        lanes.iter_mut().zip(c).for_each(|(l, &v)| *l += f(v));
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}
