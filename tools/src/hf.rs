//! Reading a Hugging Face BERT checkpoint directory into plain f32 weights.
//!
//! Layouts: BertModel (`embeddings.*`, `encoder.*`, `pooler.*`), the same under a `bert.` prefix
//! (BertForSequenceClassification, with `classifier.*`), and sentence-transformers folders
//! (`modules.json`, `1_Pooling/config.json`, `2_Normalize`, `sentence_bert_config.json`).
//! ONNX exports are read into the same types by `onnx.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use bertlite::{Pooling, PoolingMode, Task, TaskInfo};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{
    check_tokenizer, head_kind, labels_from_config, read_json, read_tokenizer,
    sentence_transformers_pooling, usize_field,
};
use crate::model::{Bert, Checkpoint, CheckpointHead, Layer, LayerNorm, Linear, Matrix};

impl Checkpoint {
    pub fn load(dir: &Path, max_len: Option<usize>) -> Result<Checkpoint> {
        ensure!(dir.is_dir(), "checkpoint directory {} does not exist", dir.display());
        let config = read_json(&dir.join("config.json"))
            .context("a Hugging Face checkpoint needs config.json")?;
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("");
        let architecture = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("BertModel")
            .to_owned();
        if model_type != "bert" {
            bail!(
                "{} is not a BERT checkpoint (config.json model_type is {model_type:?}; bertlite compiles model_type \"bert\")",
                dir.display()
            );
        }
        let act = config.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu");
        ensure!(act == "gelu", "hidden_act {act:?} is not supported (only exact \"gelu\")");
        let pos_type =
            config.get("position_embedding_type").and_then(Value::as_str).unwrap_or("absolute");
        ensure!(pos_type == "absolute", "position_embedding_type {pos_type:?} is not supported");

        let weights_path = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights_path).with_context(|| {
            format!(
                "cannot read {} (only safetensors checkpoints are read)",
                weights_path.display()
            )
        })?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        let st = SafeTensors::deserialize(&bytes).with_context(|| {
            format!("{} is not a valid safetensors file", weights_path.display())
        })?;
        let w = Weights::new(&st);

        let hidden =
            usize_field(&config, "hidden_size").context("config.json lacks hidden_size")?;
        let heads = usize_field(&config, "num_attention_heads")
            .context("config.json lacks num_attention_heads")?;
        let n_layers = usize_field(&config, "num_hidden_layers")
            .context("config.json lacks num_hidden_layers")?;
        ensure!(
            heads > 0 && hidden % heads == 0,
            "hidden_size {hidden} is not divisible by {heads} heads"
        );
        let eps = config.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12) as f32;

        let linear = |name: &str| -> Result<Linear> {
            Ok(Linear {
                weight: w.matrix(&format!("{name}.weight"))?,
                bias: w.vector(&format!("{name}.bias"))?,
            })
        };
        let vector = |name: &str| w.vector(name);
        let layers = (0..n_layers)
            .map(|i| Layer::read(i, heads, linear, vector))
            .collect::<Result<Vec<_>>>()?;
        let bert = Bert {
            word: w.matrix("embeddings.word_embeddings.weight")?,
            position: w.matrix("embeddings.position_embeddings.weight")?,
            token_type: w.matrix("embeddings.token_type_embeddings.weight")?,
            embed_norm: LayerNorm::read("embeddings.LayerNorm", vector)?,
            layers,
            hidden,
            head_dim: hidden / heads,
            eps,
            pooler: if w.has("pooler.dense.weight") { Some(linear("pooler.dense")?) } else { None },
        };
        bert.check()?;

        // Sentence-transformers: pooling and normalization from its module files.
        let st_pooling = sentence_transformers_pooling(dir)?;
        let is_sentence_transformer = st_pooling.is_some();
        let pooling = if let Some(p) = st_pooling {
            p
        } else if architecture.contains("SequenceClassification") {
            Pooling { mode: PoolingMode::Cls, normalize: false }
        } else {
            // A plain BertModel: mean pooling is the sensible sentence embedding.
            Pooling { mode: PoolingMode::Mean, normalize: true }
        };

        // Token classification and multiple choice name their head `classifier` too.
        let token_head = architecture.ends_with("TokenClassification");
        let choice_head = architecture.ends_with("MultipleChoice");
        let head = if w.has("classifier.weight") && !token_head && !choice_head {
            let classifier = linear("classifier")?;
            let k = classifier.weight.rows;
            let labels = labels_from_config(&config, k);
            let kind = head_kind(&config);
            ensure!(
                classifier.weight.cols == hidden,
                "classifier input size differs from hidden_size"
            );
            Some(CheckpointHead { classifier, labels, kind })
        } else {
            None
        };

        let tasks = read_tasks(&w, &bert, &config, &architecture, token_head, choice_head)?;

        let (tokenizer, vocab) =
            read_tokenizer(dir, None, &config, max_len, is_sentence_transformer)?;
        check_tokenizer(&bert, &tokenizer, &vocab)?;
        Ok(Checkpoint {
            path: dir.to_path_buf(),
            architecture,
            bert,
            tokenizer,
            vocab,
            pooling,
            head,
            tasks,
            sha256,
            file_bytes: bytes.len() as u64,
        })
    }
}

/// The task heads of a `BertForPreTraining` / `MaskedLM` / `NextSentencePrediction` /
/// `TokenClassification` / `QuestionAnswering` / `MultipleChoice` checkpoint, as `TASK` floats.
fn read_tasks(
    w: &Weights<'_>,
    bert: &Bert,
    config: &Value,
    architecture: &str,
    token_head: bool,
    choice_head: bool,
) -> Result<Vec<(TaskInfo, Vec<f32>)>> {
    let (h, v) = (bert.hidden, bert.word.rows);
    let info = |task, labels: Vec<String>| TaskInfo {
        task,
        labels,
        layer_norm_eps: bert.eps,
        origin: format!("checkpoint {architecture}"),
    };
    // A linear layer `[out][h]` with its bias, as floats.
    let linear = |name: &str, out: usize| -> Result<Vec<f32>> {
        let m = w.matrix(&format!("{name}.weight"))?;
        let b = w.vector(&format!("{name}.bias"))?;
        ensure!(
            m.rows == out && m.cols == h && b.len() == out,
            "{name} has shape [{}, {}], expected [{out}, {h}]",
            m.rows,
            m.cols
        );
        Ok([m.data, b].concat())
    };
    let mut tasks = Vec::new();
    if w.has("cls.predictions.transform.dense.weight") {
        let mut f = linear("cls.predictions.transform.dense", h)?;
        for name in [
            "cls.predictions.transform.LayerNorm.weight",
            "cls.predictions.transform.LayerNorm.bias",
        ] {
            let x = w.vector(name)?;
            ensure!(x.len() == h, "{name} has {} values, expected {h}", x.len());
            f.extend(x);
        }
        let bias = w.vector("cls.predictions.bias")?;
        ensure!(
            bias.len() == v,
            "cls.predictions.bias has {} values, not the vocabulary's {v}",
            bias.len()
        );
        f.extend(bias);
        // The decoder is tied to the word embeddings; the bundle reuses that table, so an
        // untied decoder cannot be kept.
        if w.has("cls.predictions.decoder.weight") {
            let d = w.matrix("cls.predictions.decoder.weight")?;
            ensure!(
                d.data == bert.word.data,
                "cls.predictions.decoder.weight differs from the word embeddings; bertlite \
                 supports only the tied decoder BERT uses"
            );
        }
        tasks.push((info(Task::FillMask, vec![]), f));
    }
    if w.has("cls.seq_relationship.weight") {
        let f = linear("cls.seq_relationship", 2)?;
        tasks.push((info(Task::NextSentence, vec!["IsNext".into(), "NotNext".into()]), f));
    }
    if token_head {
        let m = w.matrix("classifier.weight")?;
        let labels = labels_from_config(config, m.rows);
        tasks.push((info(Task::TokenClassification, labels), linear("classifier", m.rows)?));
    }
    if w.has("qa_outputs.weight") {
        tasks.push((info(Task::QuestionAnswering, vec![]), linear("qa_outputs", 2)?));
    }
    if choice_head {
        tasks.push((info(Task::MultipleChoice, vec![]), linear("classifier", 1)?));
    }
    let needs_pooler =
        tasks.iter().any(|(t, _)| matches!(t.task, Task::NextSentence | Task::MultipleChoice));
    if needs_pooler {
        let p = bert.pooler.as_ref().context("this checkpoint's heads need pooler.dense")?;
        let f = [p.weight.data.clone(), p.bias.clone()].concat();
        tasks.insert(0, (info(Task::Pooler, vec![]), f));
    }
    for (t, f) in &tasks {
        ensure!(
            t.task.floats(h, v, t.labels.len()) == Some(f.len()),
            "the {} head has {} floats",
            t.task.name(),
            f.len()
        );
    }
    Ok(tasks)
}

/// Tensor access by name, with or without the `bert.` prefix, converting f16/bf16 to f32.
struct Weights<'a> {
    st: &'a SafeTensors<'a>,
    names: BTreeMap<String, String>,
}

impl<'a> Weights<'a> {
    fn new(st: &'a SafeTensors<'a>) -> Self {
        let names = st
            .names()
            .into_iter()
            .map(|n| (n.strip_prefix("bert.").unwrap_or(n).to_owned(), n.clone()))
            .collect();
        Weights { st, names }
    }

    fn has(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let full = self
            .names
            .get(name)
            .with_context(|| format!("tensor {name} is missing from model.safetensors"))?;
        let t = self.st.tensor(full)?;
        let b = t.data();
        let data: Vec<f32> = match t.dtype() {
            Dtype::F32 => {
                b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            Dtype::F16 => {
                b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => bail!("tensor {name} has dtype {other:?}; expected a float type"),
        };
        // A NaN or infinity would make every answer NaN; the runtime refuses such a bundle too.
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            bail!(
                "tensor {name} in model.safetensors holds a non-finite value (NaN or infinity) at index {i}"
            );
        }
        Ok((t.shape().to_vec(), data))
    }

    fn matrix(&self, name: &str) -> Result<Matrix> {
        let (shape, data) = self.tensor(name)?;
        ensure!(shape.len() == 2, "tensor {name} has shape {shape:?}, expected a matrix");
        Ok(Matrix { data, rows: shape[0], cols: shape[1] })
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        let (shape, data) = self.tensor(name)?;
        ensure!(shape.len() == 1, "tensor {name} has shape {shape:?}, expected a vector");
        Ok(data)
    }
}
