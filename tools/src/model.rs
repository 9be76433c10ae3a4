//! A BERT checkpoint in memory, as plain f32 weights: what the readers (`hf.rs` for Hugging Face
//! folders, `onnx.rs` for ONNX exports) produce and everything after them (pruning, the graph
//! writer, training) works on.

use std::path::PathBuf;

use anyhow::{Result, ensure};

use bertlite::internal::TokenizerConfig;
use bertlite::{HeadKind, Pooling, TaskInfo};

/// A matrix, row-major, as PyTorch stores a Linear weight: `[rows = out][cols = in]`.
#[derive(Clone, Debug)]
pub struct Matrix {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Matrix,
    pub bias: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attn_out: Linear,
    pub attn_norm: LayerNorm,
    pub ffn_in: Linear,
    pub ffn_out: Linear,
    pub ffn_norm: LayerNorm,
    /// Heads in this layer (query rows / head_dim); pruning lowers it.
    pub heads: usize,
}

#[derive(Clone, Debug)]
pub struct Bert {
    pub word: Matrix,
    pub position: Matrix,
    pub token_type: Matrix,
    pub embed_norm: LayerNorm,
    pub layers: Vec<Layer>,
    pub hidden: usize,
    pub head_dim: usize,
    pub eps: f32,
    pub pooler: Option<Linear>,
}

#[derive(Clone, Debug)]
pub struct CheckpointHead {
    pub classifier: Linear,
    pub labels: Vec<String>,
    pub kind: HeadKind,
}

/// Everything read from a checkpoint directory or ONNX export.
pub struct Checkpoint {
    /// The directory or ONNX file it came from.
    pub path: PathBuf,
    pub architecture: String,
    pub bert: Bert,
    pub tokenizer: TokenizerConfig,
    pub vocab: String,
    pub pooling: Pooling,
    pub head: Option<CheckpointHead>,
    /// Task heads (pooler, fill-mask, ...) with their `TASK` floats, in bundle order.
    pub tasks: Vec<(TaskInfo, Vec<f32>)>,
    pub sha256: String,
    pub file_bytes: u64,
}

impl LayerNorm {
    /// `{name}.weight` (γ) and `{name}.bias` (β), as PyTorch names them.
    pub(crate) fn read(name: &str, vector: impl Fn(&str) -> Result<Vec<f32>>) -> Result<Self> {
        Ok(LayerNorm {
            gamma: vector(&format!("{name}.weight"))?,
            beta: vector(&format!("{name}.bias"))?,
        })
    }
}

impl Layer {
    /// Encoder layer `i` under PyTorch's names (`encoder.layer.{i}.attention.self.query`, ...),
    /// whatever file the Linears and vectors come from.
    pub(crate) fn read(
        i: usize,
        heads: usize,
        linear: impl Fn(&str) -> Result<Linear>,
        vector: impl Fn(&str) -> Result<Vec<f32>>,
    ) -> Result<Self> {
        let p = format!("encoder.layer.{i}");
        Ok(Layer {
            query: linear(&format!("{p}.attention.self.query"))?,
            key: linear(&format!("{p}.attention.self.key"))?,
            value: linear(&format!("{p}.attention.self.value"))?,
            attn_out: linear(&format!("{p}.attention.output.dense"))?,
            attn_norm: LayerNorm::read(&format!("{p}.attention.output.LayerNorm"), &vector)?,
            ffn_in: linear(&format!("{p}.intermediate.dense"))?,
            ffn_out: linear(&format!("{p}.output.dense"))?,
            ffn_norm: LayerNorm::read(&format!("{p}.output.LayerNorm"), &vector)?,
            heads,
        })
    }
}

impl Bert {
    /// Shapes agree with each other (a corrupt or exotic checkpoint fails here, not in tract).
    pub fn check(&self) -> Result<()> {
        let h = self.hidden;
        ensure!(
            self.word.cols == h && self.position.cols == h && self.token_type.cols == h,
            "embedding width differs from hidden_size {h}"
        );
        for (i, l) in self.layers.iter().enumerate() {
            let inner = l.heads * self.head_dim;
            let ok = l.query.weight.rows == inner
                && l.key.weight.rows == inner
                && l.value.weight.rows == inner
                && l.query.weight.cols == h
                && l.attn_out.weight.cols == inner
                && l.attn_out.weight.rows == h
                && l.ffn_in.weight.cols == h
                && l.ffn_out.weight.rows == h
                && l.ffn_out.weight.cols == l.ffn_in.weight.rows;
            ensure!(ok, "layer {i} has inconsistent weight shapes");
        }
        Ok(())
    }

    pub fn parameters(&self) -> u64 {
        let lin = |l: &Linear| (l.weight.data.len() + l.bias.len()) as u64;
        let norm = |n: &LayerNorm| (n.gamma.len() * 2) as u64;
        let mut p = (self.word.data.len() + self.position.data.len() + self.token_type.data.len())
            as u64
            + norm(&self.embed_norm);
        for l in &self.layers {
            p += lin(&l.query)
                + lin(&l.key)
                + lin(&l.value)
                + lin(&l.attn_out)
                + lin(&l.ffn_in)
                + lin(&l.ffn_out);
            p += norm(&l.attn_norm) + norm(&l.ffn_norm);
        }
        p
    }

    /// Encoder MACs per token (linear layers) and per token² (attention scores + context).
    pub fn macs(&self) -> (u64, u64) {
        let h = self.hidden as u64;
        let mut linear = 0;
        let mut quadratic = 0;
        for l in &self.layers {
            let inner = (l.heads * self.head_dim) as u64;
            let ffn = l.ffn_in.weight.rows as u64;
            linear += 3 * h * inner + inner * h + 2 * h * ffn;
            quadratic += 2 * inner;
        }
        (linear, quadratic)
    }
}
