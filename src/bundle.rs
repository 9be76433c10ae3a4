//! The bundle: ONE file holding graph + weights + tokenizer + labels + metadata + checksum.
//!
//! Layout (all integers little-endian; spec in docs/bundle-format.md):
//!
//! ```text
//! 0   magic      8 bytes  "BERTLITE"
//! 8   version    u32      FORMAT_VERSION
//! 12  n_sections u32
//! 16  total_len  u64      length of the whole file
//! 24  crc32      u32      CRC-32 (IEEE) of every byte of the file except these 4
//! 28  reserved   u32      0
//! 32  table      n_sections × { tag [u8; 4], offset u64, len u64 }
//! ..  section payloads
//! ```
//!
//! Sections: `META` (JSON [`Metadata`]), `VOCB` (vocabulary, one token per line), `GRPH` (the
//! encoder as an NNEF tar with tract extensions), `HEAD` (f32 classification head, see
//! [`HeadInfo`]) and, from version 2, `TASK` (f32 weights of the task heads, see [`TaskInfo`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::tokenizer::TokenizerConfig;

pub const MAGIC: &[u8; 8] = b"BERTLITE";
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this runtime still reads (version 1 has no `TASK` section).
pub const OLDEST_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 20;
const CRC_OFFSET: usize = 24;
const MAX_SECTIONS: usize = 64;

pub const META: [u8; 4] = *b"META";
pub const VOCAB: [u8; 4] = *b"VOCB";
pub const GRAPH: [u8; 4] = *b"GRPH";
pub const HEAD: [u8; 4] = *b"HEAD";
pub const TASK: [u8; 4] = *b"TASK";

/// How token vectors become one text vector.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PoolingMode {
    /// Average of the token vectors under the attention mask (sentence-transformers).
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
    /// Element-wise max under the mask.
    Max,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Pooling {
    pub mode: PoolingMode,
    /// L2-normalize the pooled vector (sentence-transformers `Normalize` module).
    pub normalize: bool,
}

/// Softmax for one label per text, sigmoid for independent labels.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    SingleLabel,
    MultiLabel,
}

/// The classification head. `HEAD` holds, as f32: if `pooler`, a dense+tanh layer on the
/// pooled vector (`hidden × hidden` weight row-major `[out][in]`, then `hidden` bias); then the
/// classifier (`labels.len() × input_dim` weight, then `labels.len()` bias).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HeadInfo {
    pub kind: HeadKind,
    pub labels: Vec<String>,
    pub input_dim: usize,
    pub pooler: bool,
    /// Where the head came from ("checkpoint", "trained on FILE ...").
    pub origin: String,
}

/// A task head beside the classification head: what it answers and how its weights lie in the
/// `TASK` section (`H` = hidden size, `V` = vocabulary size, `k` = labels; matrices `[out][in]`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// BERT's pooler, TF Hub's `pooled_output` = tanh(W·h\[CLS\] + b): `W [H][H]`, `b [H]`.
    /// Next-sentence prediction and multiple choice read its output.
    Pooler,
    /// Masked-word prediction (`cls.predictions`): transform `W [H][H]`, `b [H]`, then GELU and
    /// LayerNorm `γ [H]`, `β [H]`, then the decoder bias `[V]`. The decoder weight is the
    /// encoder's own word-embedding table, which is not stored twice.
    FillMask,
    /// `cls.seq_relationship` on the pooler's output: `W [2][H]`, `b [2]` (IsNext, NotNext).
    NextSentence,
    /// One label per token (NER-style BIO tags): `W [k][H]`, `b [k]`.
    TokenClassification,
    /// Answer-span start and end logits per token (`qa_outputs`): `W [2][H]`, `b [2]`.
    QuestionAnswering,
    /// One score per (context, choice) pair on the pooler's output: `W [1][H]`, `b [1]`.
    MultipleChoice,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Pooler => "pooler",
            Task::FillMask => "fill-mask",
            Task::NextSentence => "next-sentence",
            Task::TokenClassification => "token-classification",
            Task::QuestionAnswering => "question-answering",
            Task::MultipleChoice => "multiple-choice",
        }
    }

    /// Floats the head holds in the `TASK` section.
    pub fn floats(self, hidden: usize, vocab: usize, labels: usize) -> Option<usize> {
        let linear = |out: usize| out.checked_mul(hidden + 1);
        match self {
            Task::Pooler => linear(hidden),
            Task::FillMask => linear(hidden)?.checked_add(2 * hidden)?.checked_add(vocab),
            Task::NextSentence | Task::QuestionAnswering => linear(2),
            Task::TokenClassification => linear(labels),
            Task::MultipleChoice => linear(1),
        }
    }
}

/// One task head of the bundle; its floats follow the previous head's in `TASK`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskInfo {
    pub task: Task,
    /// Token-classification tags (`id2label`); the two NSP classes; empty otherwise.
    #[serde(default)]
    pub labels: Vec<String>,
    /// LayerNorm epsilon of the fill-mask transform (the checkpoint's `layer_norm_eps`).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    /// Where the head came from ("checkpoint BertForPreTraining", ...).
    pub origin: String,
}

fn default_eps() -> f32 {
    1e-12
}

/// Shape of the encoder in the graph (after pruning).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EncoderInfo {
    pub hidden: usize,
    pub head_dim: usize,
    /// Attention heads kept in each layer.
    pub heads: Vec<usize>,
    /// FFN width kept in each layer.
    pub intermediate: Vec<usize>,
    pub vocab_size: usize,
    pub max_position: usize,
    pub parameters: u64,
    /// Encoder multiply-accumulates for a sequence of `T` tokens are
    /// `macs_per_token * T + macs_per_token_sq * T²`.
    pub macs_per_token: u64,
    pub macs_per_token_sq: u64,
    /// The graph also returns layers 0..L-1's outputs after the last hidden state
    /// (compiled with `--encoder-outputs`).
    #[serde(default)]
    pub encoder_outputs: bool,
    /// The int8 weights were rounded to keep each layer's output on calibration text
    /// (GPTQ, `bertlite-tool compile`'s default), not each weight to its
    /// nearest step: int8 compute on them is then more faithful than f32 compute on plainly
    /// rounded ones, which lets `auto` pick int8 on CPUs without dot-product.
    #[serde(default)]
    pub int8_calibrated: bool,
}

impl EncoderInfo {
    /// Encoder FLOPs (2 × MACs) for one sequence of `tokens` tokens.
    pub fn flops(&self, tokens: usize) -> u64 {
        let t = tokens as u64;
        2 * (self.macs_per_token * t + self.macs_per_token_sq * t * t)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    pub tool_version: String,
    pub created_unix: u64,
    pub source: String,
    pub source_sha256: String,
    pub architecture: String,
    /// "int8-weights-per-channel-symmetric" or "none".
    pub quantization: String,
    pub pruning: Option<String>,
    pub encoder: EncoderInfo,
    pub tokenizer: TokenizerConfig,
    pub pooling: Pooling,
    pub head: Option<HeadInfo>,
    /// Task heads beside the classifier, in `TASK` section order (version 2; none in version 1).
    #[serde(default)]
    pub tasks: Vec<TaskInfo>,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// The sizes are consistent among themselves (the graph and head, including the head's
    /// input size, are checked against them when they are loaded).
    pub fn check(&self) -> Result<()> {
        let e = &self.encoder;
        let bad = |what: String| Err(Error::bundle(format!("bundle metadata: {what}")));
        for (name, value) in [
            ("hidden", e.hidden),
            ("head_dim", e.head_dim),
            ("vocab_size", e.vocab_size),
            ("max_position", e.max_position),
        ] {
            if value == 0 {
                return bad(format!("encoder.{name} is 0"));
            }
        }
        if e.heads.is_empty() || e.heads.len() != e.intermediate.len() {
            return bad(format!(
                "{} layers of attention heads but {} FFN widths",
                e.heads.len(),
                e.intermediate.len()
            ));
        }
        if let Some(layer) =
            e.heads.iter().position(|&h| h.checked_mul(e.head_dim).is_none_or(|w| w > e.hidden))
        {
            return bad(format!(
                "layer {layer} has {} heads of {} dimensions, more than hidden size {}",
                e.heads[layer], e.head_dim, e.hidden
            ));
        }
        let mut seen = Vec::new();
        for t in &self.tasks {
            if seen.contains(&t.task) {
                return bad(format!("two {} heads", t.task.name()));
            }
            seen.push(t.task);
            let labels = match t.task {
                Task::TokenClassification => 1,
                Task::NextSentence => 2,
                _ => 0,
            };
            if t.labels.len() < labels {
                return bad(format!("the {} head has {} labels", t.task.name(), t.labels.len()));
            }
            let needs_pooler = matches!(t.task, Task::NextSentence | Task::MultipleChoice);
            if needs_pooler && !self.tasks.iter().any(|p| p.task == Task::Pooler) {
                return bad(format!("the {} head needs a pooler head", t.task.name()));
            }
            if !(t.layer_norm_eps.is_finite() && t.layer_norm_eps > 0.0) {
                return bad(format!("the {} head's layer_norm_eps is not positive", t.task.name()));
            }
        }
        let max_len = self.tokenizer.max_len;
        if !(3..=e.max_position).contains(&max_len) {
            return bad(format!(
                "tokenizer max_len {max_len} is outside 3..={} (the position table)",
                e.max_position
            ));
        }
        Ok(())
    }
}

/// Sections of a bundle, read whole into memory and checked.
pub struct Bundle {
    pub metadata: Metadata,
    pub vocab: String,
    pub graph: Vec<u8>,
    pub head: Vec<f32>,
    /// The task heads' floats, as [`Metadata::tasks`] lays them out.
    pub tasks: Vec<f32>,
    /// The format version the file was written in; [`Bundle::to_bytes`] always writes
    /// [`FORMAT_VERSION`].
    pub version: u32,
}

impl Bundle {
    /// Reads and verifies a bundle file.
    ///
    /// # Errors
    /// `Io` if unreadable; `Bundle` if not a bundle, truncated, corrupt or inconsistent;
    /// `Version` if written by an incompatible format version.
    pub fn read(path: &Path) -> Result<Bundle> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot read bundle {}: {e}", path.display()))
                .with_source(e)
        })?;
        Bundle::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Bundle> {
        let (version, sections) = parse(bytes)?;
        let get = |tag: [u8; 4]| {
            sections.get(&tag).copied().ok_or_else(|| {
                Error::bundle(format!("bundle has no {} section", String::from_utf8_lossy(&tag)))
            })
        };
        let metadata: Metadata = serde_json::from_slice(get(META)?)
            .map_err(|e| Error::bundle(format!("bundle metadata is not valid: {e}")))?;
        metadata.check()?;
        let vocab = std::str::from_utf8(get(VOCAB)?)
            .map_err(|_| Error::bundle("bundle vocabulary is not UTF-8"))?
            .to_owned();
        let graph = get(GRAPH)?.to_vec();
        let floats = |tag: [u8; 4]| -> Result<Vec<f32>> {
            let bytes = sections.get(&tag).copied().unwrap_or(&[]);
            if bytes.len() % 4 != 0 {
                return Err(Error::bundle(format!(
                    "{} section length is not a multiple of 4",
                    String::from_utf8_lossy(&tag)
                )));
            }
            Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let head = floats(HEAD)?;
        let tasks = floats(TASK)?;
        Ok(Bundle { metadata, vocab, graph, head, tasks, version })
    }

    /// Serializes the bundle.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let meta = serde_json::to_vec_pretty(&self.metadata)
            .map_err(|e| Error::bundle(format!("cannot serialize metadata: {e}")))?;
        let head: Vec<u8> = self.head.iter().flat_map(|x| x.to_le_bytes()).collect();
        let tasks: Vec<u8> = self.tasks.iter().flat_map(|x| x.to_le_bytes()).collect();
        let sections: [([u8; 4], &[u8]); 5] = [
            (META, &meta),
            (VOCAB, self.vocab.as_bytes()),
            (GRAPH, &self.graph),
            (HEAD, &head),
            (TASK, &tasks),
        ];
        Ok(assemble(FORMAT_VERSION, &sections))
    }

    /// Writes the bundle to a temporary file beside `path`, then renames it into place, so a
    /// crash never leaves a half-written bundle under the final name.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

/// Header, section table and payloads, checksummed, for format `version`.
fn assemble(version: u32, sections: &[([u8; 4], &[u8])]) -> Vec<u8> {
    let table_end = HEADER_LEN + ENTRY_LEN * sections.len();
    let total = table_end + sections.iter().map(|(_, s)| s.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // crc, filled below
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut offset = table_end as u64;
    for (tag, data) in sections {
        out.extend_from_slice(tag);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        offset += data.len() as u64;
    }
    for (_, data) in sections {
        out.extend_from_slice(data);
    }
    let crc = checksum(&out);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Writes `bytes` to `path` through a temp file + rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |what: &str, e: std::io::Error| {
        Error::new(ErrorKind::Io, format!("cannot {what} {}: {e}", path.display())).with_source(e)
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("write", e));
    }
    Ok(())
}

fn checksum(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..CRC_OFFSET]);
    h.update(&bytes[CRC_OFFSET + 4..]);
    h.finalize()
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| Error::bundle("bundle is truncated (header)"))
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| Error::bundle("bundle is truncated (header)"))
}

/// Section payloads by tag.
type Sections<'a> = BTreeMap<[u8; 4], &'a [u8]>;

/// Checks header, length and checksum; returns the format version and the sections by tag.
fn parse(bytes: &[u8]) -> Result<(u32, Sections<'_>)> {
    if bytes.get(..8) != Some(MAGIC.as_slice()) {
        return Err(Error::bundle("not a bertlite bundle (bad magic bytes)"));
    }
    let version = read_u32(bytes, 8)?;
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(Error::new(
            ErrorKind::Version,
            format!(
                "bundle format version {version} is not supported by this runtime (it reads versions {OLDEST_VERSION} to {FORMAT_VERSION}); recompile the bundle with a matching bertlite-tool"
            ),
        ));
    }
    let n = read_u32(bytes, 12)? as usize;
    let total = read_u64(bytes, 16)?;
    if total != bytes.len() as u64 {
        return Err(Error::bundle(format!(
            "bundle is truncated or has trailing data: header says {total} bytes, file has {}",
            bytes.len()
        )));
    }
    let stored = read_u32(bytes, CRC_OFFSET)?;
    if checksum(bytes) != stored {
        return Err(Error::bundle("bundle checksum mismatch: the file is corrupt or was modified"));
    }
    if n > MAX_SECTIONS {
        return Err(Error::bundle(format!("bundle claims {n} sections")));
    }
    let table_end = HEADER_LEN + n * ENTRY_LEN;
    let mut sections = BTreeMap::new();
    let mut ranges = Vec::with_capacity(n);
    for i in 0..n {
        let at = HEADER_LEN + i * ENTRY_LEN;
        let tag: [u8; 4] = bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::bundle("bundle is truncated (section table)"))?;
        let name = String::from_utf8_lossy(&tag).into_owned();
        let offset = read_u64(bytes, at + 4)?;
        let len = read_u64(bytes, at + 12)?;
        let range = usize::try_from(offset)
            .ok()
            .zip(offset.checked_add(len).and_then(|end| usize::try_from(end).ok()))
            .filter(|&(start, end)| start >= table_end && end <= bytes.len())
            .ok_or_else(|| Error::bundle(format!("bundle section {name} lies outside the file")))?;
        if sections.insert(tag, &bytes[range.0..range.1]).is_some() {
            return Err(Error::bundle(format!("bundle has two {name} sections")));
        }
        ranges.push((range, name));
    }
    ranges.sort();
    for pair in ranges.windows(2) {
        let (((_, end), a), ((start, _), b)) = (&pair[0], &pair[1]);
        if start < end {
            return Err(Error::bundle(format!("bundle sections {a} and {b} overlap")));
        }
    }
    Ok((version, sections))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Bundle {
        Bundle {
            metadata: Metadata {
                tool_version: "test".into(),
                created_unix: 0,
                source: "test".into(),
                source_sha256: String::new(),
                architecture: "BertModel".into(),
                quantization: "none".into(),
                pruning: None,
                encoder: EncoderInfo {
                    hidden: 4,
                    head_dim: 2,
                    heads: vec![2],
                    intermediate: vec![8],
                    vocab_size: 3,
                    max_position: 8,
                    parameters: 0,
                    macs_per_token: 1,
                    macs_per_token_sq: 1,
                    encoder_outputs: false,
                    int8_calibrated: false,
                },
                tokenizer: TokenizerConfig {
                    lowercase: true,
                    strip_accents: None,
                    handle_chinese_chars: true,
                    clean_text: true,
                    unk_token: "[UNK]".into(),
                    cls_token: "[CLS]".into(),
                    sep_token: "[SEP]".into(),
                    pad_token: "[PAD]".into(),
                    mask_token: "[MASK]".into(),
                    continuing_subword_prefix: "##".into(),
                    max_input_chars_per_word: 100,
                    max_len: 8,
                },
                pooling: Pooling { mode: PoolingMode::Mean, normalize: true },
                head: None,
                tasks: vec![],
                extra: BTreeMap::new(),
            },
            vocab: "[PAD]\n[UNK]\n[CLS]\n[SEP]".into(),
            graph: vec![1, 2, 3],
            head: vec![1.0, -2.5],
            tasks: vec![0.5; 7],
            version: FORMAT_VERSION,
        }
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let bytes = b.to_bytes().unwrap();
        let r = Bundle::from_bytes(&bytes).unwrap();
        assert_eq!(r.metadata, b.metadata);
        assert_eq!(r.vocab, b.vocab);
        assert_eq!(r.graph, b.graph);
        assert_eq!(r.head, b.head);
        assert_eq!(r.tasks, b.tasks);
    }

    /// A version-1 file (no `TASK` section, no `tasks` in the metadata) still reads.
    #[test]
    fn reads_version_1() {
        let mut b = sample();
        b.tasks.clear();
        let mut meta = serde_json::to_value(&b.metadata).unwrap();
        meta.as_object_mut().unwrap().remove("tasks");
        let meta = serde_json::to_vec(&meta).unwrap();
        let sections: [([u8; 4], &[u8]); 4] =
            [(META, &meta), (VOCAB, b.vocab.as_bytes()), (GRAPH, &b.graph), (HEAD, &[0u8; 8])];
        let r = Bundle::from_bytes(&assemble(1, &sections)).unwrap();
        assert_eq!(r.metadata, b.metadata);
        assert!(r.tasks.is_empty());
        assert_eq!(r.version, 1);
        assert_eq!(r.head, vec![0.0, 0.0]);
    }

    #[test]
    fn task_heads_are_checked() {
        let mut b = sample();
        let nsp = TaskInfo {
            task: Task::NextSentence,
            labels: vec!["IsNext".into(), "NotNext".into()],
            layer_norm_eps: 1e-12,
            origin: "test".into(),
        };
        b.metadata.tasks = vec![nsp.clone()];
        assert!(b.metadata.check().unwrap_err().to_string().contains("needs a pooler head"));
        let pooler = TaskInfo { task: Task::Pooler, labels: vec![], ..nsp.clone() };
        b.metadata.tasks = vec![pooler.clone(), nsp.clone(), pooler];
        assert!(b.metadata.check().unwrap_err().to_string().contains("two pooler heads"));
        b.metadata.tasks.pop();
        assert!(b.metadata.check().is_ok());
        assert_eq!(Task::FillMask.floats(4, 3, 0), Some(4 * 5 + 8 + 3));
    }

    #[test]
    fn rejects_damage() {
        let bytes = sample().to_bytes().unwrap();
        let kind = |b: &[u8]| Bundle::from_bytes(b).err().map(|e| e.kind());
        assert_eq!(kind(&[]), Some(ErrorKind::Bundle));
        assert_eq!(kind(b"not a bundle at all"), Some(ErrorKind::Bundle));
        assert_eq!(kind(&bytes[..bytes.len() - 1]), Some(ErrorKind::Bundle));
        for cut in [9, 20, 31, 40] {
            assert_eq!(kind(&bytes[..cut]), Some(ErrorKind::Bundle), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert_eq!(kind(&flipped), Some(ErrorKind::Bundle));
        let mut newer = bytes.clone();
        newer[8] = 99;
        assert_eq!(kind(&newer), Some(ErrorKind::Version));
        // Every single-byte flip is caught.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(Bundle::from_bytes(&b).is_err(), "flip at {i} not detected");
        }
    }

    /// Changes the section table entry `i` (tag, offset), with the checksum recomputed.
    fn with_entry(bytes: &[u8], i: usize, tag: [u8; 4], offset: Option<u64>) -> Vec<u8> {
        let mut b = bytes.to_vec();
        let at = HEADER_LEN + i * ENTRY_LEN;
        b[at..at + 4].copy_from_slice(&tag);
        if let Some(offset) = offset {
            b[at + 4..at + 12].copy_from_slice(&offset.to_le_bytes());
        }
        let crc = checksum(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn rejects_duplicate_overlapping_and_misplaced_sections() {
        let bytes = sample().to_bytes().unwrap();
        let message = |b: &[u8]| Bundle::from_bytes(b).err().map(|e| e.to_string());
        assert!(Bundle::from_bytes(&with_entry(&bytes, 0, META, None)).is_ok());
        assert_eq!(
            message(&with_entry(&bytes, 1, META, None)).as_deref(),
            Some("bundle has two META sections")
        );
        let meta_offset = read_u64(&bytes, HEADER_LEN + 4).unwrap();
        let overlap = with_entry(&bytes, 1, VOCAB, Some(meta_offset + 1));
        assert_eq!(message(&overlap).as_deref(), Some("bundle sections META and VOCB overlap"));
        let in_table = with_entry(&bytes, 3, HEAD, Some(HEADER_LEN as u64));
        assert_eq!(
            message(&in_table).as_deref(),
            Some("bundle section HEAD lies outside the file")
        );
    }

    #[test]
    fn metadata_sizes_are_consistent() {
        let mut b = sample();
        assert!(b.metadata.check().is_ok());
        b.metadata.encoder.heads = vec![3];
        assert!(b.metadata.check().unwrap_err().to_string().contains("layer 0 has 3 heads"));
        b.metadata.encoder.heads = vec![2, 2];
        assert!(
            b.metadata
                .check()
                .unwrap_err()
                .to_string()
                .contains("2 layers of attention heads but 1")
        );
        b.metadata.encoder.heads = vec![usize::MAX];
        assert!(b.metadata.check().is_err(), "overflowing heads × head_dim");
        let mut b = sample();
        b.metadata.encoder.hidden = 0;
        assert!(b.metadata.check().unwrap_err().to_string().contains("encoder.hidden is 0"));
        let mut b = sample();
        b.metadata.tokenizer.max_len = 9;
        assert!(b.metadata.check().unwrap_err().to_string().contains("max_len 9 is outside 3..=8"));
    }

    #[test]
    fn atomic_write() {
        let dir = std::env::temp_dir().join(format!("bertlite-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.blt");
        sample().write(&path).unwrap();
        assert!(Bundle::read(&path).is_ok());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "temp file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
