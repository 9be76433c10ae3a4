//! What both checkpoint readers take from the files beside the weights: config.json fields,
//! labels, the sentence-transformers pooling, and the tokenizer.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use bertlite::internal::TokenizerConfig;
use bertlite::{HeadKind, Pooling, PoolingMode};
use serde_json::Value;

use crate::model::Bert;

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
