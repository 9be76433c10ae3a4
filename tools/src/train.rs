//! Multinomial logistic regression with L2 on pooled embeddings: the classification head.
//!
//! Features are standardized during training (well-conditioned gradient descent) and the
//! standardization is folded back into the weights, so the head applies to raw embeddings.

pub struct TrainOptions {
    pub l2: f32,
    pub iterations: usize,
    pub learning_rate: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { l2: 1e-3, iterations: 500, learning_rate: 0.5 }
    }
}

/// Returns `(weight [k][d], bias [k])` minimizing mean cross-entropy + l2/2·‖W‖² (on
/// standardized features).
pub fn train_softmax(
    xs: &[Vec<f32>],
    ys: &[usize],
    k: usize,
    opts: &TrainOptions,
) -> (Vec<f32>, Vec<f32>) {
    let n = xs.len();
    let d = xs.first().map_or(0, Vec::len);
    let mut mean = vec![0f64; d];
    let mut var = vec![0f64; d];
    for x in xs {
        for j in 0..d {
            mean[j] += f64::from(x[j]) / n as f64;
        }
    }
    for x in xs {
        for j in 0..d {
            var[j] += (f64::from(x[j]) - mean[j]).powi(2) / n as f64;
        }
    }
    let std: Vec<f32> = var.iter().map(|v| (v.sqrt() as f32).max(1e-6)).collect();
    let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let z: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| x.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s).collect())
        .collect();

    let mut w = vec![0f32; k * d];
    let mut b = vec![0f32; k];
    let mut vw = vec![0f32; k * d];
    let mut vb = vec![0f32; k];
    let momentum = 0.9f32;
    let mut probs = vec![0f32; k];
    for _ in 0..opts.iterations {
        let mut gw = vec![0f32; k * d];
        let mut gb = vec![0f32; k];
        for (x, &y) in z.iter().zip(ys) {
            for c in 0..k {
                probs[c] =
                    b[c] + w[c * d..(c + 1) * d].iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
            }
            let max = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for p in probs.iter_mut() {
                *p = (*p - max).exp();
                sum += *p;
            }
            for c in 0..k {
                let g = probs[c] / sum - if c == y { 1.0 } else { 0.0 };
                gb[c] += g / n as f32;
                for (gw, xv) in gw[c * d..(c + 1) * d].iter_mut().zip(x) {
                    *gw += g * xv / n as f32;
                }
            }
        }
        for i in 0..k * d {
            vw[i] = momentum * vw[i] - opts.learning_rate * (gw[i] + opts.l2 * w[i]);
            w[i] += vw[i];
        }
        for c in 0..k {
            vb[c] = momentum * vb[c] - opts.learning_rate * gb[c];
            b[c] += vb[c];
        }
    }
    // Fold standardization: w·(x-m)/s + b = (w/s)·x + (b - Σ w·m/s).
    for c in 0..k {
        for j in 0..d {
            let wj = w[c * d + j] / std[j];
            b[c] -= wj * mean[j];
            w[c * d + j] = wj;
        }
    }
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_clusters() {
        // Three well-separated clusters in 4-D, with tiny scale like normalized embeddings.
        let mut xs = vec![];
        let mut ys = vec![];
        for i in 0..90 {
            let c = i % 3;
            let jitter = (i as f32 * 0.37).sin() * 0.002;
            let mut x = vec![0.01 + jitter, -0.02, 0.005, jitter];
            x[c] += 0.03;
            xs.push(x);
            ys.push(c);
        }
        let (w, b) = train_softmax(&xs, &ys, 3, &TrainOptions::default());
        let correct = xs
            .iter()
            .zip(&ys)
            .filter(|(x, y)| {
                let scores: Vec<f32> = (0..3)
                    .map(|c| b[c] + (0..4).map(|j| w[c * 4 + j] * x[j]).sum::<f32>())
                    .collect();
                let best = (0..3).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
                best == **y
            })
            .count();
        assert_eq!(correct, 90);
    }
}
