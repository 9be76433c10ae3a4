//! Reading a BERT ONNX export (torch.onnx or optimum; fp32, or int8 weights behind Cast/Mul or
//! DequantizeLinear) into the same f32 weights a Hugging Face directory gives.
//!
//! Exporters keep the PyTorch names on most initializers (biases, LayerNorms, embeddings) but
//! rename the Linear weights (`onnx::MatMul_123`, `val_49`) and may store them quantized. So:
//! fold what depends only on initializers, find each Linear through its named bias
//! (`Add(MatMul(x, W), bias)` or `Gemm(x, W, bias)`), and read what weights do not say (heads,
//! LayerNorm epsilon, activation, pooling) off config.json when one sits beside the file, else
//! off the graph, else from the command line.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use bertlite::{Pooling, PoolingMode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto};
use tract_onnx::prelude::Framework;
use tract_onnx::tract_core::ndarray::{self, ArrayD, Axis, IxDyn};

use crate::config::{
    check_tokenizer, head_kind, labels_from_config, read_json_opt, read_tokenizer,
    sentence_transformers_pooling, usize_field,
};
use crate::model::{Bert, Checkpoint, CheckpointHead, Layer, LayerNorm, Linear, Matrix};

/// What an ONNX file does not carry, from the command line.
#[derive(Clone, Debug, Default)]
pub struct OnnxOptions {
    /// tokenizer.json, vocab.txt, or a folder with one (default: the ONNX file's folder).
    pub tokenizer: Option<PathBuf>,
    /// Attention heads per layer (default: config.json, else read off the graph's reshapes).
    pub heads: Option<usize>,
    /// Sentence pooling (default: the graph's own pooling if it has one, else mean).
    pub pooling: Option<PoolingMode>,
    /// L2-normalize the pooled vector (default: whether the graph does).
    pub normalize: Option<bool>,
}

type Array = ArrayD<f32>;

pub fn load(path: &Path, max_len: Option<usize>, opts: &OnnxOptions) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut bytes.as_slice())
        .map_err(|e| anyhow!("{} is not an ONNX model: {e}", path.display()))?;
    let graph = proto.graph.as_ref().context("the ONNX model has no graph")?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let g = Folded::new(graph, dir)?;

    // config.json beside the file (optimum exports), or one folder up from an `onnx/` folder
    // (a Hugging Face repository with `onnx/model.onnx`).
    let mut candidates = vec![dir.to_path_buf()];
    if dir.file_name().is_some_and(|n| n == "onnx") {
        candidates.push(dir.join(".."));
    }
    let model_dir = candidates
        .into_iter()
        .find(|d| d.join("config.json").is_file() || d.join("modules.json").is_file());
    let config = match &model_dir {
        Some(d) => read_json_opt(&d.join("config.json"))?.unwrap_or(Value::Null),
        None => Value::Null,
    };
    if let Some(t) = config.get("model_type").and_then(Value::as_str) {
        ensure!(
            t == "bert",
            "config.json beside the ONNX file says model_type {t:?}, not \"bert\""
        );
    }

    let names = Names::new(&g)?;
    let word = names.embedding(&g, "word")?;
    let hidden = word.cols;
    let heads = match (opts.heads, usize_field(&config, "num_attention_heads")) {
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) => g.heads(hidden)?,
    };
    ensure!(
        heads > 0 && hidden % heads == 0,
        "hidden size {hidden} is not divisible by {heads} heads"
    );
    let eps = match config.get("layer_norm_eps").and_then(Value::as_f64) {
        Some(e) => e as f32,
        None => g.layer_norm_eps()?,
    };

    let linear = |name: &str| names.linear(&g, name);
    let vector = |name: &str| names.vector(&g, name);
    let mut layers = Vec::new();
    while names.has(&g, &format!("encoder.layer.{}.attention.self.query.bias", layers.len())) {
        layers.push(Layer::read(layers.len(), heads, linear, vector)?);
    }
    ensure!(
        !layers.is_empty(),
        "no encoder layers found (no initializer named like encoder.layer.0.attention.self.query.bias)"
    );
    g.check_gelu(layers.len())?;
    let bert = Bert {
        word,
        position: names.embedding(&g, "position")?,
        token_type: names.embedding(&g, "token_type")?,
        embed_norm: LayerNorm::read("embeddings.LayerNorm", vector)?,
        layers,
        hidden,
        head_dim: hidden / heads,
        eps,
        pooler: if names.has(&g, "pooler.dense.bias") {
            Some(linear("pooler.dense")?)
        } else {
            None
        },
    };
    bert.check()?;

    let head = match g.find_suffix("classifier.bias")? {
        Some(bias_name) => {
            let classifier = g.linear_for_bias(bias_name)?;
            ensure!(classifier.weight.cols == hidden, "classifier input size differs from hidden");
            let k = classifier.weight.rows;
            Some(CheckpointHead {
                classifier,
                labels: labels_from_config(&config, k),
                kind: head_kind(&config),
            })
        }
        None => None,
    };
    let st_pooling = match &model_dir {
        Some(d) => sentence_transformers_pooling(d)?,
        None => None,
    };
    let graph_pooling = g.pooling();
    let default_pooling = if head.is_some() {
        Pooling { mode: PoolingMode::Cls, normalize: false }
    } else {
        st_pooling
            .clone()
            .or(graph_pooling)
            .unwrap_or(Pooling { mode: PoolingMode::Mean, normalize: true })
    };
    let pooling = Pooling {
        mode: opts.pooling.unwrap_or(default_pooling.mode),
        normalize: opts.normalize.unwrap_or(default_pooling.normalize),
    };

    // The tokenizer: --tokenizer (a file or a folder), else the ONNX file's own folder.
    let (tok_dir, tok_file) = match &opts.tokenizer {
        Some(p) if p.is_dir() => (p.clone(), None),
        Some(p) => {
            ensure!(p.is_file(), "tokenizer {} does not exist", p.display());
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            (parent.to_path_buf(), Some(p.as_path()))
        }
        None => {
            let d = model_dir.clone().unwrap_or_else(|| dir.to_path_buf());
            ensure!(
                d.join("tokenizer.json").is_file() || d.join("vocab.txt").is_file(),
                "{} has no tokenizer.json or vocab.txt beside it: give --tokenizer FILE|DIR \
                 (the tokenizer the model was trained with)",
                path.display()
            );
            (d, None)
        }
    };
    let mut tok_config = config.clone();
    if tok_config.get("max_position_embeddings").is_none() {
        tok_config = serde_json::json!({ "max_position_embeddings": bert.position.rows });
    }
    let same_folder = model_dir.as_deref() == Some(tok_dir.as_path());
    let (tokenizer, vocab) = read_tokenizer(
        &tok_dir,
        tok_file,
        &tok_config,
        max_len,
        same_folder && st_pooling.is_some(),
    )?;
    check_tokenizer(&bert, &tokenizer, &vocab)?;

    let architecture = config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .unwrap_or(if head.is_some() { "BertForSequenceClassification" } else { "BertModel" });
    Ok(Checkpoint {
        path: path.to_path_buf(),
        architecture: format!("ONNX {architecture}"),
        bert,
        tokenizer,
        vocab,
        pooling,
        head,
        // The reader finds the encoder and a sequence classifier; other heads (fill-mask, token
        // classification, QA) in an ONNX export are not read.
        tasks: vec![],
        sha256,
        file_bytes: bytes.len() as u64,
    })
}

/// The graph with every value computable from initializers alone evaluated.
struct Folded<'g> {
    nodes: &'g [NodeProto],
    values: HashMap<String, Array>,
    /// Which node (index) consumes each value name.
    consumers: HashMap<&'g str, Vec<usize>>,
    producer: HashMap<&'g str, usize>,
    /// The graph's run-time inputs (`input_ids`, ...).
    inputs: Vec<&'g str>,
}

impl<'g> Folded<'g> {
    fn new(graph: &'g GraphProto, dir: &Path) -> Result<Self> {
        let resolver = tract_onnx::data_resolver::default();
        let dir = dir.to_str();
        let mut values = HashMap::new();
        for t in &graph.initializer {
            values.insert(t.name.clone(), load_tensor(t, &*resolver, dir)?);
        }
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut producer = HashMap::new();
        // ONNX requires nodes in topological order, so one pass folds every constant chain.
        for (ix, node) in graph.node.iter().enumerate() {
            for i in &node.input {
                consumers.entry(i.as_str()).or_default().push(ix);
            }
            for o in &node.output {
                producer.insert(o.as_str(), ix);
            }
            let folded = {
                let inputs: Option<Vec<Option<&Array>>> = node
                    .input
                    .iter()
                    .map(|i| if i.is_empty() { Some(None) } else { values.get(i).map(Some) })
                    .collect();
                match inputs {
                    Some(inputs) if node.domain.is_empty() || node.domain == "ai.onnx" => {
                        fold(node, &inputs).with_context(|| {
                            format!("cannot evaluate {} node {:?}", node.op_type, node.name)
                        })?
                    }
                    _ => None,
                }
            };
            if let (Some(v), Some(out)) = (folded, node.output.first()) {
                values.insert(out.clone(), v);
            }
        }
        let inputs = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !values.contains_key(*n))
            .collect();
        Ok(Folded { nodes: &graph.node, values, consumers, producer, inputs })
    }

    fn value(&self, name: &str) -> Option<&Array> {
        self.values.get(name)
    }

    /// The graph input a value is a cast or reshape of (`input_ids` → Cast → Gather).
    fn graph_input_behind<'a>(&'a self, mut value: &'a str) -> Option<&'a str> {
        for _ in 0..8 {
            if let Some(i) = self.inputs.iter().find(|i| **i == value) {
                return Some(i);
            }
            let n = self.producer_of(value)?;
            if !matches!(n.op_type.as_str(), "Cast" | "Identity" | "Unsqueeze" | "Reshape") {
                return None;
            }
            value = n.input.first()?;
        }
        None
    }

    fn producer_of(&self, value: &str) -> Option<&'g NodeProto> {
        self.producer.get(value).map(|&i| &self.nodes[i])
    }

    /// The one constant whose name ends with `suffix` (after a `.` or at the start).
    fn find_suffix(&self, suffix: &str) -> Result<Option<&str>> {
        let hits: Vec<&str> = self
            .values
            .keys()
            .map(String::as_str)
            .filter(|n| n.strip_suffix(suffix).is_some_and(|p| p.is_empty() || p.ends_with('.')))
            .collect();
        ensure!(hits.len() <= 1, "several tensors are named like {suffix}: {hits:?}");
        Ok(hits.first().copied())
    }

    /// A Linear found through its bias: `Add(MatMul(x, W), bias)` or `Gemm(x, W, bias)`.
    fn linear_for_bias(&self, bias_name: &str) -> Result<Linear> {
        let bias: Vec<f32> = self
            .value(bias_name)
            .with_context(|| format!("tensor {bias_name} is missing from the ONNX graph"))?
            .iter()
            .copied()
            .collect();
        ensure!(!bias.is_empty(), "{bias_name} is empty");
        let name = bias_name.strip_suffix(".bias").unwrap_or(bias_name);
        for &ix in self.consumers.get(bias_name).map_or(&[][..], Vec::as_slice) {
            let node = &self.nodes[ix];
            let (w_name, out_major) = match node.op_type.as_str() {
                "Gemm" if node.input.get(2).map(String::as_str) == Some(bias_name) => {
                    let trans_b = attr(node, "transB").is_some_and(|a| a.i != 0);
                    (node.input[1].as_str(), trans_b)
                }
                "Add" => {
                    let other = node.input.iter().find(|i| i.as_str() != bias_name);
                    let Some(mm) = other.and_then(|o| self.producer_of(o)) else { continue };
                    if let Some(w) = self.dynamic_int8_weight(mm)? {
                        return linear_from(name, w.view(), false, bias);
                    }
                    if mm.op_type != "MatMul" || mm.input.len() != 2 {
                        continue;
                    }
                    (mm.input[1].as_str(), false)
                }
                _ => continue,
            };
            let w = self.value(w_name).with_context(|| {
                format!("the weight of {name} ({w_name}) is not a constant of the graph")
            })?;
            return linear_from(name, w.view(), out_major, bias);
        }
        bail!("cannot find the weight of {name}: no MatMul + Add or Gemm uses {bias_name}")
    }

    /// ONNX Runtime's `quantize_dynamic` MatMul: `Mul(Cast(MatMulInteger(x_q, W_q, x_zp,
    /// W_zp)), Mul(x_scale, W_scale))`; the weight is `(W_q - W_zp) · W_scale`, `[in, out]`.
    fn dynamic_int8_weight(&self, mul: &NodeProto) -> Result<Option<Array>> {
        if mul.op_type != "Mul" || mul.input.len() != 2 {
            return Ok(None);
        }
        let producers: Vec<Option<&NodeProto>> =
            mul.input.iter().map(|i| self.producer_of(i)).collect();
        let Some(cast) = producers.iter().flatten().find(|n| n.op_type == "Cast") else {
            return Ok(None);
        };
        let Some(mmi) = cast.input.first().and_then(|i| self.producer_of(i)) else {
            return Ok(None);
        };
        if mmi.op_type != "MatMulInteger" {
            return Ok(None);
        }
        let scale_node = producers.iter().flatten().find(|n| n.op_type == "Mul");
        let w_scale = scale_node
            .and_then(|n| n.input.iter().find_map(|i| self.value(i)))
            .context("MatMulInteger without a constant weight scale")?;
        let w_q = mmi
            .input
            .get(1)
            .and_then(|i| self.value(i))
            .context("MatMulInteger without a constant weight")?;
        let shifted = match mmi.input.get(3).and_then(|i| self.value(i)) {
            Some(zp) => binary(w_q, zp, |a, b| a - b)?,
            None => w_q.clone(),
        };
        Ok(Some(binary(&shifted, w_scale, |a, b| a * b)?))
    }

    /// Heads from the attention reshapes: a shape (or the constant parts of a Concat building
    /// one) holding `heads, head_dim` side by side with `heads * head_dim == hidden`, or ending
    /// in `-1, head_dim`.
    fn heads(&self, hidden: usize) -> Result<usize> {
        let mut found = BTreeSet::new();
        for node in self.nodes {
            let parts: Vec<Option<&Array>> = match node.op_type.as_str() {
                "Reshape" => vec![node.input.get(1).and_then(|i| self.value(i))],
                "Concat" => node.input.iter().map(|i| self.value(i)).collect(),
                _ => continue,
            };
            // Constant runs, broken where an input is computed at run time.
            let mut run: Vec<f32> = Vec::new();
            let mut runs = Vec::new();
            for p in parts {
                match p {
                    Some(a) if a.ndim() <= 1 => run.extend(a.iter().copied()),
                    _ => runs.push(std::mem::take(&mut run)),
                }
            }
            runs.push(run);
            let hidden_f = hidden as f32;
            for r in &runs {
                for pair in r.windows(2) {
                    let (h, d) = (pair[0], pair[1]);
                    if h > 1.0 && d > 1.0 && h.fract() == 0.0 && h * d == hidden_f {
                        found.insert(h as usize);
                    }
                }
                // `[batch, seq, -1, head_dim]` (torch.export): heads are implied.
                if let [.., -1.0, d] = r[..]
                    && d > 1.0
                    && d < hidden_f
                    && d.fract() == 0.0
                    && hidden.is_multiple_of(d as usize)
                {
                    found.insert(hidden / d as usize);
                }
            }
        }
        match found.len() {
            1 => Ok(found.into_iter().next().unwrap_or(1)),
            0 => bail!(
                "cannot tell the number of attention heads from the graph and no config.json \
                 sits beside it: give --heads N"
            ),
            _ => bail!("the graph's reshapes suggest {found:?} attention heads: give --heads N"),
        }
    }

    /// LayerNorm epsilon: the LayerNormalization op's attribute, or in a decomposed LayerNorm
    /// the constant added to the variance before its square root.
    fn layer_norm_eps(&self) -> Result<f32> {
        let mut eps = BTreeSet::new();
        for node in self.nodes {
            if node.op_type == "LayerNormalization" {
                eps.insert(attr(node, "epsilon").map_or(1e-5, |a| a.f).to_bits());
            } else if node.op_type == "Sqrt" {
                let add = node.input.first().and_then(|i| self.producer_of(i));
                if let Some(add) = add.filter(|a| a.op_type == "Add") {
                    let c = add.input.iter().filter_map(|i| self.value(i)).find(|v| v.len() == 1);
                    if let Some(c) = c {
                        eps.insert(c.iter().copied().next().unwrap_or(0.0).to_bits());
                    }
                }
            }
        }
        match eps.len() {
            1 => Ok(f32::from_bits(eps.into_iter().next().unwrap_or(0))),
            0 => bail!("cannot find the LayerNorm epsilon in the graph (no LayerNormalization)"),
            _ => bail!(
                "the graph's LayerNorms use different epsilons {:?}",
                eps.iter().map(|&b| f32::from_bits(b)).collect::<Vec<_>>()
            ),
        }
    }

    /// The FFN activation must be exact GELU (one Erf per layer); bertlite runs no other.
    fn check_gelu(&self, layers: usize) -> Result<()> {
        let count = |op: &str| self.nodes.iter().filter(|n| n.op_type == op).count();
        let erf = count("Erf") + count("Gelu");
        if erf >= layers {
            return Ok(());
        }
        if count("Tanh") >= layers {
            bail!("the FFN activation is the tanh approximation of GELU; bertlite runs exact GELU");
        }
        bail!("the graph has {erf} Erf/Gelu ops for {layers} layers: its activation is not GELU")
    }

    /// The sentence pooling the graph itself ends with, if any: a ReduceSum after the last
    /// FFN activation is mean pooling; a Sqrt/ReduceL2 after that, L2 normalization.
    fn pooling(&self) -> Option<Pooling> {
        let last_act =
            self.nodes.iter().rposition(|n| n.op_type == "Erf" || n.op_type == "Gelu")?;
        let tail = &self.nodes[last_act..];
        let pool = tail.iter().position(|n| n.op_type == "ReduceSum")?;
        let normalize = tail[pool..]
            .iter()
            .any(|n| matches!(n.op_type.as_str(), "Sqrt" | "ReduceL2" | "LpNormalization"));
        Some(Pooling { mode: PoolingMode::Mean, normalize })
    }
}

/// The exporter's names without their common prefix (`bert.`, `inner.`, `0.auto_model.`).
struct Names {
    prefix: String,
}

impl Names {
    fn new(g: &Folded) -> Result<Self> {
        const FIRST: &str = "encoder.layer.0.attention.self.query.bias";
        let fused = g.nodes.iter().any(|n| n.domain == "com.microsoft");
        let first = g.find_suffix(FIRST)?.with_context(|| {
            if fused {
                "the graph has ONNX Runtime's fused ops (com.microsoft Attention, \
                 SkipLayerNormalization, ...): give the export from before ORT optimized it"
                    .to_owned()
            } else {
                format!("no tensor named like {FIRST}: is this a BERT export (BertModel layout)?")
            }
        })?;
        Ok(Names { prefix: first.strip_suffix(FIRST).unwrap_or("").to_owned() })
    }

    /// An embedding table by its name, else by its role: the Gather reading the `input_ids`
    /// (word) or `token_type_ids` (token type) input, or the one other 2-D table (position).
    fn embedding(&self, g: &Folded, kind: &str) -> Result<Matrix> {
        let name = format!("embeddings.{kind}_embeddings.weight");
        if self.has(g, &name) {
            return self.matrix(g, &name);
        }
        let tables: Vec<(&str, Option<&str>)> = g
            .nodes
            .iter()
            .filter(|n| n.op_type == "Gather" && n.input.len() == 2)
            .filter(|n| g.value(&n.input[0]).is_some_and(|v| v.ndim() == 2))
            .map(|n| (n.input[0].as_str(), g.graph_input_behind(&n.input[1])))
            .collect();
        let by_input = |input: &str| tables.iter().find(|t| t.1 == Some(input)).map(|t| t.0);
        let table = match kind {
            "word" => by_input("input_ids"),
            "token_type" => by_input("token_type_ids"),
            _ => {
                let taken = [by_input("input_ids"), by_input("token_type_ids")];
                let rest: BTreeSet<&str> =
                    tables.iter().map(|t| t.0).filter(|t| !taken.contains(&Some(t))).collect();
                if rest.len() == 1 { rest.into_iter().next() } else { None }
            }
        };
        let table = table.with_context(|| {
            format!(
                "cannot find the {kind} embedding table (no tensor named {}{name})",
                self.prefix
            )
        })?;
        let a = g.value(table).context("embedding table")?;
        let (rows, cols) = (a.shape()[0], a.shape()[1]);
        Ok(Matrix { data: a.as_standard_layout().iter().copied().collect(), rows, cols })
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn has(&self, g: &Folded, name: &str) -> bool {
        g.value(&self.full(name)).is_some()
    }

    fn get<'a>(&self, g: &'a Folded, name: &str) -> Result<&'a Array> {
        let full = self.full(name);
        g.value(&full).with_context(|| format!("tensor {full} is missing from the ONNX graph"))
    }

    fn matrix(&self, g: &Folded, name: &str) -> Result<Matrix> {
        let a = self.get(g, name)?;
        ensure!(a.ndim() == 2, "tensor {name} has shape {:?}, expected a matrix", a.shape());
        let (rows, cols) = (a.shape()[0], a.shape()[1]);
        Ok(Matrix { data: a.as_standard_layout().iter().copied().collect(), rows, cols })
    }

    fn vector(&self, g: &Folded, name: &str) -> Result<Vec<f32>> {
        let a = self.get(g, name)?;
        ensure!(a.ndim() == 1, "tensor {name} has shape {:?}, expected a vector", a.shape());
        Ok(a.iter().copied().collect())
    }

    fn linear(&self, g: &Folded, name: &str) -> Result<Linear> {
        g.linear_for_bias(&self.full(&format!("{name}.bias")))
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn load_tensor(
    t: &TensorProto,
    resolver: &dyn tract_onnx::data_resolver::ModelDataResolver,
    dir: Option<&str>,
) -> Result<Array> {
    // tract panics on a few data types it cannot load; that is bad input, not a crash.
    let tensor = std::panic::catch_unwind(AssertUnwindSafe(|| {
        tract_onnx::tensor::load_tensor(resolver, t, dir)
    }))
    .map_err(|_| anyhow!("tensor {:?} has a data type bertlite cannot read", t.name))?
    .with_context(|| format!("cannot read tensor {:?}", t.name))?;
    let f =
        tensor.cast_to::<f32>().with_context(|| format!("tensor {:?} is not numeric", t.name))?;
    f.into_owned().into_plain_array::<f32>()
}

/// Evaluates the ops exporters put on weight paths; `None` for any other op (left unfolded).
fn fold(node: &NodeProto, inputs: &[Option<&Array>]) -> Result<Option<Array>> {
    let arg = |i: usize| {
        inputs.get(i).copied().flatten().with_context(|| format!("input {i} is missing"))
    };
    let ints = |name: &str| attr(node, name).map(|a| a.ints.clone());
    Ok(Some(match node.op_type.as_str() {
        "Constant" => return constant(node),
        "Identity" => arg(0)?.clone(),
        "Cast" => {
            let to = attr(node, "to").map_or(1, |a| a.i);
            match to {
                // float, float16, double, bfloat16
                1 | 10 | 11 | 16 => arg(0)?.clone(),
                // integer types truncate; bool is x != 0
                2..=7 | 12 | 13 => arg(0)?.mapv(f32::trunc),
                9 => arg(0)?.mapv(|v| f32::from(u8::from(v != 0.0))),
                _ => return Ok(None),
            }
        }
        "Add" => binary(arg(0)?, arg(1)?, |a, b| a + b)?,
        "Sub" => binary(arg(0)?, arg(1)?, |a, b| a - b)?,
        "Mul" => binary(arg(0)?, arg(1)?, |a, b| a * b)?,
        "Div" => binary(arg(0)?, arg(1)?, |a, b| a / b)?,
        "Neg" => arg(0)?.mapv(|v| -v),
        "Transpose" => {
            let x = arg(0)?;
            let perm: Vec<usize> = match ints("perm") {
                Some(p) => p.iter().map(|&i| usize::try_from(i).unwrap_or(usize::MAX)).collect(),
                None => (0..x.ndim()).rev().collect(),
            };
            let mut seen = perm.clone();
            seen.sort_unstable();
            ensure!(seen == (0..x.ndim()).collect::<Vec<_>>(), "bad permutation {perm:?}");
            x.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned()
        }
        "DequantizeLinear" => {
            ensure!(attr(node, "block_size").is_none_or(|a| a.i == 0), "blocked quantization");
            let (x, scale) = (arg(0)?, arg(1)?);
            let zero = inputs.get(2).copied().flatten();
            let axis = attr(node, "axis").map_or(1, |a| a.i);
            let per_axis = |v: &Array| -> Result<Array> {
                if v.len() == 1 {
                    return Ok(v.clone().into_shape_with_order(IxDyn(&[]))?);
                }
                let ax = normalize_axis(axis, x.ndim())?;
                let mut shape = vec![1; x.ndim()];
                shape[ax] = v.len();
                Ok(v.clone().into_shape_with_order(IxDyn(&shape))?)
            };
            let shifted = match zero {
                Some(z) => binary(x, &per_axis(z)?, |a, b| a - b)?,
                None => x.clone(),
            };
            binary(&shifted, &per_axis(scale)?, |a, b| a * b)?
        }
        "Reshape" => {
            let (x, shape) = (arg(0)?, arg(1)?);
            let mut dims: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
            for (i, d) in dims.iter_mut().enumerate() {
                if *d == 0 {
                    *d = *x.shape().get(i).context("reshape copies a missing dimension")? as isize;
                }
            }
            let known = dims
                .iter()
                .filter(|&&d| d != -1)
                .try_fold(1isize, |acc, &d| acc.checked_mul(d))
                .unwrap_or(0);
            ensure!(known > 0 && dims.iter().filter(|&&d| d == -1).count() <= 1, "bad shape");
            let dims: Vec<usize> = dims
                .iter()
                .map(|&d| if d == -1 { x.len() / known as usize } else { d as usize })
                .collect();
            x.clone().into_shape_with_order(IxDyn(&dims))?
        }
        "Unsqueeze" | "Squeeze" => {
            let x = arg(0)?;
            let axes: Vec<i64> = match (ints("axes"), inputs.get(1).copied().flatten()) {
                (Some(a), _) => a,
                (None, Some(a)) => a.iter().map(|&v| v as i64).collect(),
                (None, None) if node.op_type == "Squeeze" => Vec::new(),
                (None, None) => bail!("Unsqueeze without axes"),
            };
            let mut shape = x.shape().to_vec();
            if node.op_type == "Unsqueeze" {
                let rank = shape.len() + axes.len();
                let mut axes: Vec<usize> =
                    axes.iter().map(|&a| normalize_axis(a, rank)).collect::<Result<_>>()?;
                axes.sort_unstable();
                for a in axes {
                    ensure!(a <= shape.len(), "bad Unsqueeze axis");
                    shape.insert(a, 1);
                }
            } else if axes.is_empty() {
                shape.retain(|&d| d != 1);
            } else {
                let axes: Vec<usize> =
                    axes.iter().map(|&a| normalize_axis(a, shape.len())).collect::<Result<_>>()?;
                shape = shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect();
            }
            x.clone().into_shape_with_order(IxDyn(&shape))?
        }
        "Concat" => {
            let axis = attr(node, "axis").map_or(0, |a| a.i);
            let parts: Vec<&Array> = (0..inputs.len()).map(arg).collect::<Result<_>>()?;
            let rank = parts.first().map_or(1, |p| p.ndim());
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::concatenate(Axis(normalize_axis(axis, rank)?), &views)?
        }
        _ => return Ok(None),
    }))
}

fn constant(node: &NodeProto) -> Result<Option<Array>> {
    let Some(a) = node.attribute.first() else { return Ok(None) };
    Ok(Some(match a.name.as_str() {
        "value" => {
            let t = a.t.as_ref().context("Constant without a tensor")?;
            load_tensor(t, &*tract_onnx::data_resolver::default(), None)?
        }
        "value_float" => ArrayD::from_elem(IxDyn(&[]), a.f),
        "value_floats" => ArrayD::from_shape_vec(IxDyn(&[a.floats.len()]), a.floats.clone())?,
        "value_int" => ArrayD::from_elem(IxDyn(&[]), a.i as f32),
        "value_ints" => ArrayD::from_shape_vec(
            IxDyn(&[a.ints.len()]),
            a.ints.iter().map(|&i| i as f32).collect(),
        )?,
        _ => return Ok(None),
    }))
}

fn normalize_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    ensure!((-r..r).contains(&axis), "axis {axis} is out of range for rank {rank}");
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

/// Element-wise with numpy broadcasting; an error, not a panic, when shapes do not broadcast.
fn binary(a: &Array, b: &Array, f: impl Fn(f32, f32) -> f32) -> Result<Array> {
    let rank = a.ndim().max(b.ndim());
    let dim = |x: &Array, i: usize| {
        let pad = rank - x.ndim();
        if i < pad { 1 } else { x.shape()[i - pad] }
    };
    let mut shape = Vec::with_capacity(rank);
    for i in 0..rank {
        let (da, db) = (dim(a, i), dim(b, i));
        ensure!(
            da == db || da == 1 || db == 1,
            "shapes {:?} and {:?} do not broadcast",
            a.shape(),
            b.shape()
        );
        shape.push(da.max(db));
    }
    let va = a.broadcast(IxDyn(&shape)).context("broadcast")?;
    let vb = b.broadcast(IxDyn(&shape)).context("broadcast")?;
    Ok(ndarray::Zip::from(&va).and(&vb).map_collect(|&x, &y| f(x, y)))
}

/// A Linear from an ONNX weight: MatMul's B is `[in, out]` (`out_major` false); PyTorch, Gemm
/// with transB and our Matrix keep `[out, in]`.
fn linear_from(
    name: &str,
    w: ndarray::ArrayViewD<f32>,
    out_major: bool,
    bias: Vec<f32>,
) -> Result<Linear> {
    ensure!(w.ndim() == 2, "the weight of {name} has shape {:?}", w.shape());
    let w = if out_major { w } else { w.reversed_axes() };
    let (rows, cols) = (w.shape()[0], w.shape()[1]);
    ensure!(
        rows == bias.len(),
        "the weight of {name} has {rows} outputs but its bias has {}",
        bias.len()
    );
    let data = w.as_standard_layout().iter().copied().collect();
    Ok(Linear { weight: Matrix { data, rows, cols }, bias })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto { op_type: op.into(), attribute: attrs, ..Default::default() }
    }

    fn int_attr(name: &str, i: i64) -> AttributeProto {
        AttributeProto { name: name.into(), i, ..Default::default() }
    }

    fn array(shape: &[usize], data: &[f32]) -> Array {
        ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap()
    }

    #[test]
    fn dequantize_per_axis_matches_the_onnx_formula() {
        // x [2, 3] int8 weights, one scale and zero point per column (axis 1).
        let x = array(&[2, 3], &[1.0, -2.0, 3.0, 4.0, 5.0, -6.0]);
        let scale = array(&[3], &[0.5, 1.0, 2.0]);
        let zero = array(&[3], &[1.0, 0.0, -1.0]);
        let n = node("DequantizeLinear", vec![int_attr("axis", 1)]);
        let y = fold(&n, &[Some(&x), Some(&scale), Some(&zero)]).unwrap().unwrap();
        assert_eq!(y, array(&[2, 3], &[0.0, -2.0, 8.0, 1.5, 5.0, -10.0]));
    }

    #[test]
    fn transpose_reshape_and_cast() {
        let x = array(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let t = fold(&node("Transpose", vec![]), &[Some(&x)]).unwrap().unwrap();
        assert_eq!(t, array(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]));
        let shape = array(&[2], &[0.0, -1.0]);
        let r = fold(&node("Reshape", vec![]), &[Some(&t), Some(&shape)]).unwrap().unwrap();
        assert_eq!(r.shape(), &[3, 2]);
        let to_int = int_attr("to", 7);
        let c = fold(&node("Cast", vec![to_int]), &[Some(&array(&[2], &[1.7, -1.7]))]);
        assert_eq!(c.unwrap().unwrap(), array(&[2], &[1.0, -1.0]));
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let a = array(&[2, 3], &[0.0; 6]);
        let b = array(&[4], &[0.0; 4]);
        assert!(fold(&node("Mul", vec![]), &[Some(&a), Some(&b)]).is_err());
        let perm = AttributeProto { name: "perm".into(), ints: vec![0, 0], ..Default::default() };
        assert!(fold(&node("Transpose", vec![perm]), &[Some(&a)]).is_err());
        assert!(fold(&node("Reshape", vec![]), &[Some(&a), Some(&array(&[1], &[5.0]))]).is_err());
        // A missing input is an error; an op we do not fold is left alone.
        assert!(fold(&node("Add", vec![]), &[Some(&a), None]).is_err());
        assert!(fold(&node("Softmax", vec![]), &[Some(&a)]).unwrap().is_none());
    }

    #[test]
    fn heads_from_either_reshape_form() {
        let graph = |shape: &[f32]| GraphProto {
            node: vec![NodeProto {
                op_type: "Reshape".into(),
                input: vec!["x".into(), "shape".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer: vec![TensorProto {
                name: "shape".into(),
                dims: vec![shape.len() as i64],
                data_type: 7,
                int64_data: shape.iter().map(|&v| v as i64).collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        for shape in [[0.0, 0.0, 12.0, 32.0], [0.0, 0.0, -1.0, 32.0]] {
            let g = graph(&shape);
            assert_eq!(Folded::new(&g, Path::new(".")).unwrap().heads(384).unwrap(), 12);
        }
        let g = graph(&[0.0, 0.0, 384.0]);
        assert!(Folded::new(&g, Path::new(".")).unwrap().heads(384).is_err());
    }
}
