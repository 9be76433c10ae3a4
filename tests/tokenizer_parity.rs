//! Token ids and character offsets identical to Hugging Face `tokenizers`: a committed golden
//! corpus, plus thousands of random mixed-script strings checked against the Python package at
//! test time.

use bertlite::Bundle;
use bertlite::Encoding;
use bertlite::internal::Tokenizer;
use serde_json::Value;

use crate::common::*;

fn tokenizer() -> Tokenizer {
    let b = Bundle::read(&bundle("minilm-int8.blt")).expect("bundle loads");
    Tokenizer::new(b.metadata.tokenizer.clone(), &b.vocab).expect("tokenizer builds")
}

fn encode(tok: &Tokenizer, text: &Value) -> Encoding {
    match text {
        Value::String(s) => tok.encode(s),
        Value::Array(pair) => tok.encode_pair(pair[0].as_str().unwrap(), pair[1].as_str().unwrap()),
        other => panic!("bad text {other}"),
    }
}

/// HF's `[[start, end], ...]`, in chars.
fn offsets(v: &Value) -> Vec<(u32, u32)> {
    let span = |p: &Value| (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32);
    v.as_array().expect("offsets").iter().map(span).collect()
}

fn compare(tok: &Tokenizer, texts: &[Value], expected: &[Value]) {
    assert_eq!(texts.len(), expected.len());
    let mut failures = Vec::new();
    for (text, want) in texts.iter().zip(expected) {
        let got = encode(tok, text);
        if got.ids.as_slice() != ids(&want["ids"]).as_slice()
            || got.type_ids.as_slice() != ids(&want["type_ids"]).as_slice()
        {
            let tokens: Vec<&str> = got.ids.iter().map(|&i| tok.token(i).unwrap_or("?")).collect();
            failures.push(format!("{text}\n  got  {tokens:?}\n  want {}", want["tokens"]));
        } else if got.offsets.as_slice() != offsets(&want["offsets"]).as_slice() {
            failures.push(format!(
                "{text}: offsets\n  got  {:?}\n  want {}",
                got.offsets.as_slice(),
                want["offsets"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ from HF:\n{}",
        failures.len(),
        texts.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_corpus_matches_hf() {
    let texts = read_jsonl(&golden("texts.jsonl"));
    let expected = read_jsonl(&golden("tokens.jsonl"));
    compare(&tokenizer(), &texts, &expected);
}

#[test]
fn random_strings_match_hf() {
    // 3000 random strings mixing scripts, combining marks, emoji, controls, zero-width chars and
    // literal special tokens; ~15% are pairs. HF output comes from the Python package.
    let out = std::process::Command::new("python3")
        .arg(repo().join("tools/reference/reference.py"))
        .args(["random-tokens", model_dir().to_str().unwrap(), "3000", "20261124"])
        .output()
        .expect("python3 runs (tools/setup.sh installs the tokenizers package)");
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3000);
    let texts: Vec<Value> = rows.iter().map(|r| r["text"].clone()).collect();
    compare(&tokenizer(), &texts, &rows);
}
