//! Token vectors → one text vector, as the checkpoint defines it (sentence-transformers
//! `Pooling` + `Normalize`, or the `[CLS]` vector for BertForSequenceClassification).

use crate::bundle::{Pooling, PoolingMode};

/// Pools the `len` real tokens of one row of the last hidden state (`[seq, hidden]` row-major).
pub fn pool(pooling: &Pooling, hidden_states: &[f32], hidden: usize, len: usize) -> Vec<f32> {
    let tokens = hidden_states.chunks_exact(hidden).take(len.max(1));
    let mut out = match pooling.mode {
        PoolingMode::Cls => hidden_states[..hidden].to_vec(),
        PoolingMode::Mean => {
            let mut sum = vec![0f32; hidden];
            let mut n = 0usize;
            for t in tokens {
                sum.iter_mut().zip(t).for_each(|(s, x)| *s += x);
                n += 1;
            }
            let inv = 1.0 / n.max(1) as f32;
            sum.iter_mut().for_each(|s| *s *= inv);
            sum
        }
        PoolingMode::Max => {
            let mut max = vec![f32::NEG_INFINITY; hidden];
            for t in tokens {
                max.iter_mut().zip(t).for_each(|(m, &x)| *m = m.max(x));
            }
            max
        }
    };
    if pooling.normalize {
        l2_normalize(&mut out);
    }
    out
}

/// Scales to unit length; sentence-transformers clamps the norm at 1e-12 the same way.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// Cosine similarity of two vectors (0 if either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_only_real_tokens() {
        let h = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0]; // 3 tokens × 2 dims, last is padding
        let p = |mode, normalize| pool(&Pooling { mode, normalize }, &h, 2, 2);
        assert_eq!(p(PoolingMode::Mean, false), vec![2.0, 3.0]);
        assert_eq!(p(PoolingMode::Max, false), vec![3.0, 4.0]);
        assert_eq!(p(PoolingMode::Cls, false), vec![1.0, 2.0]);
        let n = p(PoolingMode::Mean, true);
        assert!((n[0] * n[0] + n[1] * n[1] - 1.0).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
