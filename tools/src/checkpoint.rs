//! Reading a Hugging Face BERT checkpoint directory into plain f32 weights.
//!
//! Layouts: BertModel (`embeddings.*`, `encoder.*`, `pooler.*`), the same under a `bert.` prefix
//! (BertForSequenceClassification, with `classifier.*`), and sentence-transformers folders
//! (`modules.json`, `1_Pooling/config.json`, `2_Normalize`, `sentence_bert_config.json`).
//! ONNX exports are read into the same types by `onnx.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use bertlite::internal::TokenizerConfig;
use bertlite::{HeadKind, Pooling, PoolingMode};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use sha2::{Digest, Sha256};

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
    pub sha256: String,
    pub file_bytes: u64,
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

pub(crate) fn read_json_opt(path: &Path) -> Result<Option<Value>> {
    if path.exists() { read_json(path).map(Some) } else { Ok(None) }
}

pub(crate) fn usize_field(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).and_then(|x| usize::try_from(x).ok())
}

/// Where a checkpoint comes from: a Hugging Face folder or an ONNX export.
#[derive(Clone, Debug)]
pub enum Source {
    Dir(PathBuf),
    Onnx(PathBuf, crate::onnx::OnnxOptions),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Dir(p) | Source::Onnx(p, _) => p,
        }
    }
}

impl Checkpoint {
    pub fn open(source: &Source, max_len: Option<usize>) -> Result<Checkpoint> {
        match source {
            Source::Dir(dir) => Checkpoint::load(dir, max_len),
            Source::Onnx(path, opts) => crate::onnx::load(path, max_len, opts),
        }
        .with_context(|| format!("cannot read checkpoint {}", source.path().display()))
    }

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

        let head = if w.has("classifier.weight") {
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
            sha256,
            file_bytes: bytes.len() as u64,
        })
    }
}

/// `id2label` names for a `k`-way classifier, `LABEL_i` where config.json has none.
pub(crate) fn labels_from_config(config: &Value, k: usize) -> Vec<String> {
    let map = config.get("id2label").and_then(Value::as_object);
    (0..k)
        .map(|i| {
            map.and_then(|m| m.get(&i.to_string()))
                .and_then(Value::as_str)
                .map_or_else(|| format!("LABEL_{i}"), str::to_owned)
        })
        .collect()
}

pub(crate) fn head_kind(config: &Value) -> HeadKind {
    match config.get("problem_type").and_then(Value::as_str) {
        Some("multi_label_classification") => HeadKind::MultiLabel,
        _ => HeadKind::SingleLabel,
    }
}

/// Pooling of a sentence-transformers folder (`modules.json`), `None` for any other folder.
pub(crate) fn sentence_transformers_pooling(dir: &Path) -> Result<Option<Pooling>> {
    let Some(modules) = read_json_opt(&dir.join("modules.json"))? else {
        return Ok(None);
    };
    let mods = modules.as_array().cloned().unwrap_or_default();
    let find = |kind: &str| {
        mods.iter()
            .find(|m| m.get("type").and_then(Value::as_str).is_some_and(|t| t.ends_with(kind)))
    };
    let normalize = find("Normalize").is_some();
    let pool_dir =
        find("Pooling").and_then(|m| m.get("path")).and_then(Value::as_str).unwrap_or("1_Pooling");
    let pc = read_json_opt(&dir.join(pool_dir).join("config.json"))?.unwrap_or(Value::Null);
    let flag = |k: &str| pc.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mode = if flag("pooling_mode_cls_token") {
        PoolingMode::Cls
    } else if flag("pooling_mode_max_tokens") {
        PoolingMode::Max
    } else if flag("pooling_mode_mean_tokens") || pc.is_null() {
        PoolingMode::Mean
    } else {
        bail!("{pool_dir}/config.json asks for a pooling mode bertlite does not support");
    };
    Ok(Some(Pooling { mode, normalize }))
}

/// The tokenizer fits the embedding table and the position embeddings.
pub(crate) fn check_tokenizer(bert: &Bert, tokenizer: &TokenizerConfig, vocab: &str) -> Result<()> {
    ensure!(
        vocab.lines().count() == bert.word.rows,
        "vocabulary has {} tokens but the word embedding has {} rows",
        vocab.lines().count(),
        bert.word.rows
    );
    ensure!(
        tokenizer.max_len <= bert.position.rows,
        "max length {} exceeds the {} position embeddings",
        tokenizer.max_len,
        bert.position.rows
    );
    Ok(())
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

/// Tokenizer settings from tokenizer.json (preferred) or vocab.txt + tokenizer_config.json in
/// `dir`; `file` names the tokenizer.json or vocab.txt to read instead of the folder's own.
pub(crate) fn read_tokenizer(
    dir: &Path,
    file: Option<&Path>,
    config: &Value,
    max_len: Option<usize>,
    sentence_transformer: bool,
) -> Result<(TokenizerConfig, String)> {
    let tc = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let str_of = |v: &Value, k: &str, default: &str| -> String {
        match v.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => {
                o.get("content").and_then(Value::as_str).unwrap_or(default).to_owned()
            }
            _ => default.to_owned(),
        }
    };
    let mut cfg = TokenizerConfig {
        lowercase: tc.get("do_lower_case").and_then(Value::as_bool).unwrap_or(true),
        strip_accents: tc.get("strip_accents").and_then(Value::as_bool),
        handle_chinese_chars: tc
            .get("tokenize_chinese_chars")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        clean_text: true,
        unk_token: str_of(&tc, "unk_token", "[UNK]"),
        cls_token: str_of(&tc, "cls_token", "[CLS]"),
        sep_token: str_of(&tc, "sep_token", "[SEP]"),
        pad_token: str_of(&tc, "pad_token", "[PAD]"),
        mask_token: str_of(&tc, "mask_token", "[MASK]"),
        continuing_subword_prefix: "##".into(),
        max_input_chars_per_word: 100,
        max_len: 0,
    };
    let is_json = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let json_path = match file {
        Some(f) if is_json(f) => Some(f.to_path_buf()),
        Some(_) => None,
        None => Some(dir.join("tokenizer.json")),
    };
    let json = match &json_path {
        Some(p) if file.is_some() => Some(read_json(p)?),
        Some(p) => read_json_opt(p)?,
        None => None,
    };
    let vocab;
    if let Some(tj) = json {
        let model = tj.get("model").context("tokenizer.json has no model")?;
        let ty = model.get("type").and_then(Value::as_str).unwrap_or("");
        ensure!(ty == "WordPiece", "tokenizer.json model is {ty:?}; bertlite supports WordPiece");
        let map =
            model.get("vocab").and_then(Value::as_object).context("tokenizer.json has no vocab")?;
        // Ids index the embedding rows. A vocab.txt with duplicate lines leaves gaps in the map
        // (HF keeps one id per string); fill them with tokens no text can produce.
        let mut ids = Vec::with_capacity(map.len());
        for (tok, id) in map {
            let id = id.as_u64().and_then(|i| usize::try_from(i).ok()).filter(|&i| i < (1 << 24));
            ids.push((
                id.with_context(|| format!("tokenizer.json vocab id of {tok:?} is invalid"))?,
                tok.as_str(),
            ));
        }
        let size = ids.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
        let mut tokens: Vec<String> = (0..size).map(|i| format!("[bertlite-unused-{i}]")).collect();
        for (id, tok) in ids {
            tokens[id] = tok.to_owned();
        }
        ensure!(tokens.iter().all(|t| !t.contains('\n')), "a vocabulary token contains a newline");
        vocab = tokens.join("\n");
        cfg.unk_token = str_of(model, "unk_token", &cfg.unk_token);
        cfg.continuing_subword_prefix = str_of(model, "continuing_subword_prefix", "##");
        cfg.max_input_chars_per_word =
            usize_field(model, "max_input_chars_per_word").unwrap_or(100);
        if let Some(n) = tj.get("normalizer").filter(|n| !n.is_null()) {
            let nt = n.get("type").and_then(Value::as_str).unwrap_or("");
            ensure!(nt == "BertNormalizer", "tokenizer.json normalizer {nt:?} is not supported");
            cfg.lowercase = n.get("lowercase").and_then(Value::as_bool).unwrap_or(true);
            cfg.strip_accents = n.get("strip_accents").and_then(Value::as_bool);
            cfg.handle_chinese_chars =
                n.get("handle_chinese_chars").and_then(Value::as_bool).unwrap_or(true);
            cfg.clean_text = n.get("clean_text").and_then(Value::as_bool).unwrap_or(true);
        }
    } else {
        let path = file.map_or_else(|| dir.join("vocab.txt"), Path::to_path_buf);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no tokenizer.json and cannot read {}", path.display()))?;
        vocab = text.lines().collect::<Vec<_>>().join("\n");
    }
    // --max-len, else sentence-transformers max_seq_length, else model_max_length (when sane),
    // else max_position_embeddings.
    let st_len = if sentence_transformer {
        read_json_opt(&dir.join("sentence_bert_config.json"))?
            .and_then(|v| usize_field(&v, "max_seq_length"))
    } else {
        None
    };
    let tok_len = usize_field(&tc, "model_max_length").filter(|&n| n <= 1 << 20);
    let pos = usize_field(config, "max_position_embeddings").unwrap_or(512);
    cfg.max_len = match max_len {
        Some(n) => n,
        None => st_len.or(tok_len).unwrap_or(pos).min(pos),
    };
    ensure!(
        (3..=bertlite::internal::MAX_SEQ_LEN).contains(&cfg.max_len),
        "max length {} is outside 3..={}",
        cfg.max_len,
        bertlite::internal::MAX_SEQ_LEN
    );
    Ok((cfg, vocab))
}
