//! A checkpoint in memory → a runtime bundle (graph, metadata, the checkpoint's own head).

use std::collections::BTreeMap;

use anyhow::Result;
use bertlite::{Bundle, EncoderInfo, HeadInfo, Metadata, PoolingMode};

use crate::graph::{self, Precision};
use crate::model::{Checkpoint, Linear};

/// The bundle without a trained head (the checkpoint's own head, if it has one).
pub fn build_bundle(ckpt: &Checkpoint, precision: Precision) -> Result<Bundle> {
    build_bundle_with(ckpt, precision, false, None)
}

/// [`build_bundle`]; with `encoder_outputs`, the graph also returns every layer's output.
pub fn build_bundle_with(
    ckpt: &Checkpoint,
    precision: Precision,
    encoder_outputs: bool,
    hessians: Option<&[crate::gptq::LayerHessians]>,
) -> Result<Bundle> {
    let bert = &ckpt.bert;
    let outputs = if encoder_outputs { graph::Outputs::Layers } else { graph::Outputs::Hidden };
    let graph = graph::build_with_outputs(bert, precision, outputs)?;
    let nnef = graph::to_nnef(&graph, bert, precision, hessians)?;
    let (macs_per_token, macs_per_token_sq) = bert.macs();
    let encoder = EncoderInfo {
        hidden: bert.hidden,
        head_dim: bert.head_dim,
        heads: bert.layers.iter().map(|l| l.heads).collect(),
        intermediate: bert.layers.iter().map(|l| l.ffn_in.weight.rows).collect(),
        vocab_size: bert.word.rows,
        max_position: bert.position.rows,
        parameters: bert.parameters(),
        macs_per_token,
        macs_per_token_sq,
        encoder_outputs,
        int8_calibrated: precision == Precision::Int8 && hessians.is_some(),
    };
    let (head_info, head_weights) = match (&ckpt.head, &bert.pooler) {
        (Some(h), pooler) => {
            let use_pooler = ckpt.pooling.mode == PoolingMode::Cls && pooler.is_some();
            let w = head_section(
                pooler.as_ref().filter(|_| use_pooler),
                &h.classifier.weight.data,
                &h.classifier.bias,
            );
            let info = HeadInfo {
                kind: h.kind,
                labels: h.labels.clone(),
                input_dim: h.classifier.weight.cols,
                pooler: use_pooler,
                origin: "checkpoint".into(),
            };
            (Some(info), w)
        }
        (None, _) => (None, Vec::new()),
    };
    let metadata = Metadata {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        source: ckpt.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        source_sha256: ckpt.sha256.clone(),
        architecture: ckpt.architecture.clone(),
        quantization: match precision {
            Precision::Int8 => "int8-weights-per-channel-symmetric".into(),
            Precision::F32 => "none".into(),
        },
        pruning: None,
        encoder,
        tokenizer: ckpt.tokenizer.clone(),
        pooling: ckpt.pooling.clone(),
        head: head_info,
        tasks: ckpt.tasks.iter().map(|(t, _)| t.clone()).collect(),
        extra: BTreeMap::new(),
    };
    let tasks = ckpt.tasks.iter().flat_map(|(_, f)| f.iter().copied()).collect();
    Ok(Bundle {
        metadata,
        vocab: ckpt.vocab.clone(),
        graph: nnef,
        head: head_weights,
        tasks,
        version: bertlite::internal::FORMAT_VERSION,
    })
}

/// The `HEAD` section layout (docs/bundle-format.md): optional pooler, then the classifier.
pub fn head_section(pooler: Option<&Linear>, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let mut w = Vec::new();
    if let Some(p) = pooler {
        w.extend_from_slice(&p.weight.data);
        w.extend_from_slice(&p.bias);
    }
    w.extend_from_slice(weight);
    w.extend_from_slice(bias);
    w
}
