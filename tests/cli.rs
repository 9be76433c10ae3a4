//! The `bertlite` CLI as a script would use it: stable JSON names, one output line per input
//! line in order, clear errors and no panics on bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::*;

fn bertlite(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bertlite"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bertlite runs");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn no_panic(out: &Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
}

#[test]
fn classify_json_one_line_per_input_in_order() {
    let model = bundle("minilm-bbc.blt");
    let m = model.to_str().unwrap();
    let mut input = Vec::new();
    input.extend_from_slice(b"Shares in the carmaker fell after a profit warning\n");
    input.extend_from_slice(b"\xff\xfe not utf-8\n");
    input.extend_from_slice(b"   \n");
    input.extend_from_slice(b"The striker scored twice in the cup final\r\n");
    let huge = "The markets rallied today. ".repeat(40_000); // ~1 MB, truncated to 256 tokens
    input.extend_from_slice(huge.as_bytes());
    input.push(b'\n');
    let out = bertlite(&["classify", "-m", m, "--json"], &input);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "some lines failed, so exit 1");
    let rows = lines(&out);
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[0]["label"], "business");
    let scores = rows[0]["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 5);
    let sum: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4);
    assert_eq!(rows[0]["score"], scores["business"]);
    assert!(rows[1]["error"].as_str().unwrap().contains("UTF-8"));
    assert!(rows[2]["error"].as_str().unwrap().contains("empty"));
    assert_eq!(rows[3]["label"], "sports");
    assert!(rows[4]["label"].is_string());
}

#[test]
fn classify_arguments_and_top_k() {
    let model = bundle("minilm-bbc.blt");
    let out = bertlite(
        &["classify", "-m", model.to_str().unwrap(), "--top-k", "3", "The film won an Oscar"],
        b"",
    );
    no_panic(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = text.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 6, "{text}");
    assert_eq!(fields[0], "entertainment");
}

#[test]
fn embed_and_tokenize_json() {
    let model = bundle("minilm-int8.blt");
    let m = model.to_str().unwrap();
    let out = bertlite(&["embed", "-m", m, "--json"], "first sentence\nsecond one\n".as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = lines(&out);
    assert_eq!(rows.len(), 2);
    let v = floats(&rows[0]["embedding"]);
    assert_eq!(v.len(), 384);
    assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4, "normalized");

    let out = bertlite(&["tokenize", "-m", m, "--json", "Hello, World!"], b"");
    assert!(out.status.success());
    let rows = lines(&out);
    assert_eq!(ids(&rows[0]["ids"]), vec![101, 7592, 1010, 2088, 999, 102]);
    assert_eq!(rows[0]["tokens"][1], "hello");

    assert_eq!(
        rows[0]["offsets"],
        serde_json::json!([[0, 0], [0, 5], [5, 6], [7, 12], [12, 13], [0, 0]])
    );

    let out = bertlite(&["tokenize", "-m", m, "--json", "--pair", "a b\tc"], b"");
    assert_eq!(ids(&lines(&out)[0]["type_ids"]), vec![0, 0, 0, 0, 1, 1]);
}

/// TF Hub's preprocessing outputs: padded to a fixed length, or truncated keeping [SEP].
#[test]
fn tokenize_pads_to_a_fixed_length() {
    let model = bundle("minilm-int8.blt");
    let m = model.to_str().unwrap();
    let out = bertlite(&["tokenize", "-m", m, "--json", "--pad-to", "8", "Hello, World!"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let row = &lines(&out)[0];
    assert_eq!(ids(&row["input_word_ids"]), vec![101, 7592, 1010, 2088, 999, 102, 0, 0]);
    assert_eq!(ids(&row["input_mask"]), vec![1, 1, 1, 1, 1, 1, 0, 0]);
    assert_eq!(ids(&row["input_type_ids"]), vec![0; 8]);
    let out = bertlite(&["tokenize", "-m", m, "--json", "--pad-to", "4", "Hello, World!"], b"");
    let row = &lines(&out)[0];
    assert_eq!(ids(&row["input_word_ids"]), vec![101, 7592, 1010, 102], "truncated, [SEP] kept");
    assert_eq!(ids(&row["ids"]), vec![101, 7592, 1010, 102]);
    let out = bertlite(&["tokenize", "-m", m, "--json", "--pad-to", "2", "x"], b"");
    no_panic(&out);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--pad-to must be between 3 and 512, got 2"), "{}", stderr(&out));
}

/// `embed --tokens`: one vector per token with the tokens and offsets; the vector of [CLS]
/// differs from the pooled embedding (which is the mean here), so both paths are distinct.
#[test]
fn embed_tokens_json() {
    let model = bundle("minilm-int8.blt");
    let m = model.to_str().unwrap();
    let out = bertlite(&["embed", "-m", m, "--json", "--tokens"], "Hello, World!\n\n".as_bytes());
    no_panic(&out);
    let rows = lines(&out);
    assert_eq!(rows.len(), 2, "one line per input line, the empty one an error");
    assert_eq!(
        rows[0]["tokens"],
        serde_json::json!(["[CLS]", "hello", ",", "world", "!", "[SEP]"])
    );
    assert_eq!(rows[0]["offsets"][3], serde_json::json!([7, 12]));
    let vectors = rows[0]["sequence_output"].as_array().unwrap();
    assert_eq!(vectors.len(), 6);
    assert!(vectors.iter().all(|v| v.as_array().unwrap().len() == 384));
    assert!(rows[1]["error"].as_str().unwrap().contains("text is empty"));
}

#[test]
fn classify_without_head_is_a_clear_error() {
    let out =
        bertlite(&["classify", "-m", bundle("minilm-int8.blt").to_str().unwrap(), "text"], b"");
    no_panic(&out);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no classification head"), "{}", stderr(&out));
}

#[test]
fn info_reports_kernels() {
    let out = bertlite(&["info", "-m", bundle("minilm-bbc.blt").to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for want in ["int8-weights-per-channel", "business", "matmul", "cpu"] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}

fn damaged(name: &str, f: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut bytes = std::fs::read(bundle("minilm-int8.blt")).unwrap();
    f(&mut bytes);
    let dir = std::env::temp_dir().join(format!("bertlite-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn expect_load_error(path: &Path, needle: &str) {
    let out = bertlite(&["embed", "-m", path.to_str().unwrap(), "text"], b"");
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(needle), "expected {needle:?} in: {}", stderr(&out));
}

#[test]
fn bad_bundles_are_clear_errors() {
    expect_load_error(Path::new("/nonexistent/model.blt"), "cannot read bundle");
    expect_load_error(&damaged("truncated.blt", |b| b.truncate(b.len() / 2)), "truncated");
    expect_load_error(&damaged("empty.blt", |b| b.clear()), "not a bertlite bundle");
    expect_load_error(
        &damaged("tampered.blt", |b| {
            let i = b.len() - 1000;
            b[i] ^= 0x55;
        }),
        "checksum",
    );
    expect_load_error(
        &damaged("other.blt", |b| b[..8].copy_from_slice(b"PK\x03\x04xxxx")),
        "not a bertlite bundle",
    );
    expect_load_error(&damaged("newer.blt", |b| b[8] = 99), "version");
}

/// A copy of `name` with its sections changed by `f`, written with a valid checksum: what a
/// buggy or hostile tool could produce, past the checksum.
fn rewritten(name: &str, out: &str, f: impl FnOnce(&mut bertlite::Bundle)) -> PathBuf {
    let mut b = bertlite::Bundle::read(&bundle(name)).unwrap();
    f(&mut b);
    let dir = std::env::temp_dir().join(format!("bertlite-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(out);
    std::fs::write(&path, b.to_bytes().unwrap()).unwrap();
    path
}

/// The graph archive with the entry `entry` changed by `f`.
fn edit_graph(graph: &mut Vec<u8>, entry: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let mut archive = tar::Archive::new(graph.as_slice());
    let mut files: Vec<(String, Vec<u8>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = vec![];
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect();
    let file = files.iter_mut().find(|(n, _)| n == entry).expect("entry in the graph");
    f(&mut file.1);
    let mut out = tar::Builder::new(Vec::new());
    for (name, data) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    *graph = out.into_inner().unwrap();
}

#[test]
fn bad_contents_past_the_checksum_are_clear_errors() {
    // Non-finite weights anywhere are refused at load, naming the tensor.
    let nan_head = rewritten("minilm-bbc.blt", "nan-head.blt", |b| {
        let last = b.head.len() - 1;
        b.head[last] = f32::NAN;
    });
    expect_load_error(&nan_head, "non-finite value (NaN or infinity) in the classifier bias");
    let inf_weight = rewritten("minilm-int8.blt", "inf-weight.blt", |b| {
        edit_graph(&mut b.graph, "embeddings.token_type.dat", |d| {
            d[128 + 4 * 7..128 + 4 * 8].copy_from_slice(&f32::INFINITY.to_le_bytes());
        })
    });
    expect_load_error(&inf_weight, "graph tensor embeddings_token_type holds a non-finite value");
    let nan_scale = rewritten("minilm-int8.blt", "nan-scale.blt", |b| {
        edit_graph(&mut b.graph, "layer3.ffn_out.weight.scale.dat", |d| {
            d[128..132].copy_from_slice(&f32::NAN.to_le_bytes());
        })
    });
    expect_load_error(&nan_scale, "layer3_ffn_out_weight_scale holds a non-finite value");

    // Sizes in the metadata that disagree with the tensors.
    let wide =
        rewritten("minilm-int8.blt", "ffn.blt", |b| b.metadata.encoder.intermediate[2] = 1000);
    expect_load_error(
        &wide,
        "layer2_ffn_in_weight_q has shape [1536, 384], the metadata implies [1000, 384]",
    );
    let dim = rewritten("minilm-bbc.blt", "head-dim.blt", |b| {
        b.metadata.head.as_mut().unwrap().input_dim = 0;
    });
    expect_load_error(&dim, "the head takes 0 inputs but the encoder's hidden size is 384");
    let long = rewritten("minilm-int8.blt", "max-len.blt", |b| b.metadata.tokenizer.max_len = 4096);
    expect_load_error(&long, "tokenizer max_len 4096 is outside 3..=512");

    // A tensor file whose header claims 4 GB is refused before anything is allocated.
    let huge = rewritten("minilm-int8.blt", "huge.blt", |b| {
        edit_graph(&mut b.graph, "embeddings.token_type.dat", |d| {
            d[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        })
    });
    expect_load_error(&huge, "embeddings.token_type.dat declares 4294967295 bytes of data");

    // A damaged graph text: one readable line, not tract's debug chain.
    let garbled = rewritten("minilm-int8.blt", "garbled.blt", |b| {
        edit_graph(&mut b.graph, "graph.nnef", |d| {
            let at = d.len() / 2;
            d[at..at + 6].copy_from_slice(b"@@!!@@");
        })
    });
    let out = bertlite(&["embed", "-m", garbled.to_str().unwrap(), "text"], b"");
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cannot parse the bundle's NNEF graph"), "{err}");
    let first = err.lines().next().unwrap_or("");
    assert!(first.len() < 600 && !err.contains("<unknown>"), "{err}");
    assert_eq!(err.lines().nth(1), Some("(-v for the full chain of causes)"), "{err}");
    // -v adds tract's whole chain.
    let out = bertlite(&["embed", "-v", "-m", garbled.to_str().unwrap(), "text"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).lines().count() > 2, "{}", stderr(&out));
}

#[test]
fn thread_counts_are_bounded() {
    let m = bundle("minilm-int8.blt");
    let out = bertlite(&["embed", "-m", m.to_str().unwrap(), "--threads", "1000000", "text"], b"");
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("threads must be between 1 and 256, got 1000000"),
        "{}",
        stderr(&out)
    );
}
