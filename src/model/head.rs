//! The classification head: optional dense+tanh pooler, then a linear classifier, then softmax
//! (one label) or sigmoid (independent labels). A few thousand MACs: plain Rust is enough.

use crate::bundle::{HeadInfo, HeadKind};
use crate::error::{Error, Result};

/// A dense layer, weight row-major `[out][in]` as in PyTorch's `Linear`.
#[derive(Clone, Debug)]
pub struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
}

impl Dense {
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.weight
            .chunks_exact(self.inputs)
            .zip(&self.bias)
            .map(|(row, b)| row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>() + b)
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct Head {
    pub info: HeadInfo,
    pub pooler: Option<Dense>,
    pub classifier: Dense,
}

impl Head {
    /// Splits the bundle's `HEAD` f32 section as [`HeadInfo`] describes it.
    pub fn from_parts(info: HeadInfo, hidden: usize, weights: &[f32]) -> Result<Head> {
        let k = info.labels.len();
        if k == 0 {
            return Err(Error::bundle("the head has no labels"));
        }
        // The pooled embedding has `hidden` values; with a pooler, so does its output.
        if info.input_dim != hidden {
            return Err(Error::bundle(format!(
                "the head takes {} inputs but the encoder's hidden size is {hidden}",
                info.input_dim
            )));
        }
        let pooler_len = if info.pooler { hidden.checked_mul(hidden + 1) } else { Some(0) };
        pooler_len
            .zip(k.checked_mul(info.input_dim + 1))
            .and_then(|(p, c)| p.checked_add(c))
            .filter(|&n| n == weights.len())
            .ok_or_else(|| {
                Error::bundle(format!(
                    "HEAD section holds {} floats, not what {k} labels on {hidden} inputs{} need",
                    weights.len(),
                    if info.pooler { " with a pooler" } else { "" }
                ))
            })?;
        let pooler_len = pooler_len.unwrap_or(0);
        if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
            let what = match i {
                i if i < pooler_len => "pooler",
                i if i < pooler_len + k * info.input_dim => "classifier weight",
                _ => "classifier bias",
            };
            return Err(Error::bundle(format!(
                "HEAD section holds a non-finite value (NaN or infinity) in the {what}, at float {i}"
            )));
        }
        let (p, c) = weights.split_at(pooler_len);
        let pooler = info.pooler.then(|| Dense {
            weight: p[..hidden * hidden].to_vec(),
            bias: p[hidden * hidden..].to_vec(),
            inputs: hidden,
        });
        let classifier = Dense {
            weight: c[..k * info.input_dim].to_vec(),
            bias: c[k * info.input_dim..].to_vec(),
            inputs: info.input_dim,
        };
        Ok(Head { info, pooler, classifier })
    }

    /// Flattens back to the `HEAD` layout.
    pub fn to_weights(&self) -> Vec<f32> {
        let mut w = Vec::new();
        if let Some(p) = &self.pooler {
            w.extend_from_slice(&p.weight);
            w.extend_from_slice(&p.bias);
        }
        w.extend_from_slice(&self.classifier.weight);
        w.extend_from_slice(&self.classifier.bias);
        w
    }

    /// Raw scores (logits) for a pooled embedding.
    pub fn logits(&self, pooled: &[f32]) -> Vec<f32> {
        match &self.pooler {
            Some(p) => {
                let h: Vec<f32> = p.forward(pooled).into_iter().map(f32::tanh).collect();
                self.classifier.forward(&h)
            }
            None => self.classifier.forward(pooled),
        }
    }

    /// Probabilities: softmax for single-label heads, sigmoid per label for multi-label ones.
    pub fn probabilities(&self, pooled: &[f32]) -> Vec<f32> {
        let logits = self.logits(pooled);
        match self.info.kind {
            HeadKind::SingleLabel => softmax(&logits),
            HeadKind::MultiLabel => logits.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect(),
        }
    }
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&z| (z - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: HeadKind, pooler: bool) -> HeadInfo {
        HeadInfo {
            kind,
            labels: vec!["a".into(), "b".into()],
            input_dim: 2,
            pooler,
            origin: "test".into(),
        }
    }

    #[test]
    fn round_trip_and_scores() {
        let w = [1.0, 0.0, 0.0, 1.0, 0.5, -0.5];
        let h = Head::from_parts(info(HeadKind::SingleLabel, false), 2, &w).unwrap();
        assert_eq!(h.to_weights(), w);
        assert_eq!(h.logits(&[1.0, 2.0]), vec![1.5, 1.5]);
        let p = h.probabilities(&[3.0, 1.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6 && p[0] > p[1]);
        let m = Head::from_parts(info(HeadKind::MultiLabel, false), 2, &w).unwrap();
        assert!((m.probabilities(&[-0.5, 0.5])[0] - 0.5).abs() < 1e-6);
        assert!(Head::from_parts(info(HeadKind::SingleLabel, false), 2, &w[..5]).is_err());
        assert!(Head::from_parts(info(HeadKind::SingleLabel, true), 2, &w).is_err());
        assert!(Head::from_parts(info(HeadKind::SingleLabel, false), 3, &w).is_err(), "input_dim");
        let mut nan = w;
        nan[4] = f32::NAN;
        let err = Head::from_parts(info(HeadKind::SingleLabel, false), 2, &nan).unwrap_err();
        assert!(err.to_string().contains("classifier bias"), "{err}");
        let s = softmax(&[1000.0, 0.0]);
        assert!(s[0].is_finite() && (s[0] - 1.0).abs() < 1e-6);
    }
}
