//! The encoder's output per token (`Model::tokens`, `bertlite embed --tokens`: TF Hub's
//! `sequence_output`, Hugging Face's `last_hidden_state`) against the float64 numpy forward
//! pass of tools/reference/reference.py, on the golden sentences; with the tokens and their
//! character offsets as Hugging Face `tokenizers` gives them.

use std::io::Write;
use std::process::{Command, Stdio};

use bertlite::{EncoderOptions, Model, Precision, PrecisionChoice, cosine};
use serde_json::Value;

use crate::common::*;

/// f32 weights and compute vs float64: f32 rounding and summation order only, per token as
/// for the pooled embedding (tests/fidelity.rs).
const FP32_MIN_TOKEN_COSINE: f32 = 0.99999;
/// int8 weights and int8 compute (what `auto` runs on x86 with AVX2 and on the Pi 5) vs
/// float64, per token: measured mean 0.99645, min 0.98140 over the 732 tokens of the 56
/// sentences (the same integer sums on every int8 kernel); the bounds are the pooled
/// embedding's (tests/fidelity.rs), which a single token's vector also keeps.
const INT8_MIN_TOKEN_COSINE: f32 = 0.975;
const INT8_MEAN_TOKEN_COSINE: f32 = 0.994;

/// The golden sentences and, for each, the reference's ids, offsets and hidden states
/// (`mode` "hidden": the last layer; "layers": every layer).
fn reference(mode: &str) -> Vec<(String, Value)> {
    let texts: Vec<String> = read_jsonl(&golden("embeddings.jsonl"))
        .iter()
        .map(|row| row["text"].as_str().expect("text").to_owned())
        .collect();
    let mut child = Command::new("python3")
        .arg(repo().join("tools/reference/reference.py"))
        .args([mode, model_dir().to_str().expect("UTF-8 path")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (tools/setup.sh installs numpy and safetensors)");
    let mut stdin = child.stdin.take().expect("stdin");
    for t in &texts {
        writeln!(stdin, "{}", serde_json::to_string(t).expect("JSON")).expect("write");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("reference runs");
    assert!(out.status.success(), "reference failed");
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), texts.len());
    texts.into_iter().zip(rows).collect()
}

/// Per-token cosines of `model` against the reference, all texts together; checks that ids
/// and offsets match Hugging Face's.
fn token_cosines(model: &Model, reference: &[(String, Value)]) -> Vec<f32> {
    let mut cosines = Vec::new();
    for (text, want) in reference {
        let got = model.tokens(text).expect("runs");
        assert_eq!(got.encoding.ids.as_slice(), ids(&want["ids"]).as_slice(), "{text}");
        let offsets: Vec<(u32, u32)> = want["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .map(|p| (p[0].as_u64().expect("start") as u32, p[1].as_u64().expect("end") as u32))
            .collect();
        assert_eq!(got.encoding.offsets.as_slice(), offsets.as_slice(), "{text}");
        let hidden = want["hidden"].as_array().expect("hidden");
        assert_eq!(got.vectors.len(), hidden.len(), "{text}");
        assert_eq!(got.tokens.len(), got.vectors.len());
        for (v, r) in got.vectors.iter().zip(hidden) {
            cosines.push(cosine(v, &floats(r)));
        }
    }
    cosines
}

fn load(name: &str, precision: Precision) -> Model {
    let options = EncoderOptions { threads: 2, precision: PrecisionChoice::Fixed(precision) };
    Model::load_with(bundle(name), options).expect("bundle loads")
}

#[test]
fn sequence_output_matches_the_float64_reference() {
    let reference = reference("hidden");
    let stats =
        |c: &[f32]| (c.iter().sum::<f32>() / c.len() as f32, c.iter().fold(1f32, |m, &x| m.min(x)));

    let f32_cosines = token_cosines(&load("minilm-f32.blt", Precision::F32), &reference);
    let (mean, min) = stats(&f32_cosines);
    eprintln!(
        "f32 sequence_output vs float64: {} tokens, mean {mean:.7}, min {min:.7}",
        f32_cosines.len()
    );
    assert!(min >= FP32_MIN_TOKEN_COSINE, "min per-token cosine {min} < {FP32_MIN_TOKEN_COSINE}");

    let int8 = load("minilm-int8.blt", Precision::Int8);
    let int8_cosines = token_cosines(&int8, &reference);
    let (mean, min) = stats(&int8_cosines);
    eprintln!(
        "int8 ({}) sequence_output vs float64: mean {mean:.5}, min {min:.5}",
        int8.rewrites().int8_kernel.unwrap_or("tract")
    );
    assert!(min >= INT8_MIN_TOKEN_COSINE && mean >= INT8_MEAN_TOKEN_COSINE, "{mean} / {min}");
}

/// TF Hub's `encoder_outputs` from a bundle compiled with `--encoder-outputs`: every layer's
/// output per token against the float64 forward pass, with the f32 bound of the last layer
/// (each earlier layer has fewer roundings behind it). The last layer is the very output
/// `sequence_output` gives.
#[test]
fn encoder_outputs_match_the_float64_reference() {
    let reference = reference("layers");
    let f32m = load("minilm-layers-f32.blt", Precision::F32);
    let int8 = load("minilm-layers-int8.blt", Precision::Int8);
    let layers = 6;
    let (mut f32_min, mut int8_sum, mut int8_min, mut n) = (vec![1f32; layers], 0f32, 1f32, 0);
    for (text, want) in &reference {
        let e = f32m.encode(text).expect("encodes");
        let got = f32m.encoder_outputs(&e).expect("runs");
        let got_int8 = int8.encoder_outputs(&e).expect("runs");
        let want = want["layers"].as_array().expect("layers");
        assert_eq!((got.len(), want.len()), (layers, layers), "{text}");
        for (l, ((g, gi), w)) in got.iter().zip(&got_int8).zip(want).enumerate() {
            let w = w.as_array().expect("tokens");
            assert_eq!(g.len(), w.len(), "{text}");
            for ((v, vi), r) in g.iter().zip(gi).zip(w) {
                let r = floats(r);
                f32_min[l] = f32_min[l].min(cosine(v, &r));
                let c = cosine(vi, &r);
                int8_sum += c;
                int8_min = int8_min.min(c);
                n += 1;
            }
        }
        let last = f32m.token_vectors(&[&e]).expect("runs").remove(0);
        assert_eq!(got[layers - 1], last, "{text}: the last layer is sequence_output");
    }
    eprintln!(
        "encoder_outputs vs float64 over {n} token-layers: f32 min per layer {f32_min:?}; int8 mean {:.5} min {int8_min:.5}",
        int8_sum / n as f32
    );
    assert!(f32_min.iter().all(|&c| c >= FP32_MIN_TOKEN_COSINE), "{f32_min:?}");
    assert!(int8_min >= INT8_MIN_TOKEN_COSINE && int8_sum / n as f32 >= INT8_MEAN_TOKEN_COSINE);
    // A bundle compiled without the flag says how to get them.
    let plain = load("minilm-f32.blt", Precision::F32);
    let e = plain.encode("hello").expect("encodes");
    let err = plain.encoder_outputs(&e).expect_err("last layer only");
    assert!(err.to_string().contains("--encoder-outputs"), "{err}");
}

#[test]
fn token_vectors_of_a_batch_are_each_texts_own() {
    let model = load("minilm-f32.blt", Precision::F32);
    let short = model.encode("A short one.").expect("encodes");
    let long = model
        .encode("A longer sentence, so the short one is padded in the batch.")
        .expect("encodes");
    let batch = model.token_vectors(&[&short, &long]).expect("runs");
    let alone = model.token_vectors(&[&short]).expect("runs").remove(0);
    assert_eq!(batch[0].len(), short.len(), "padding rows are not returned");
    assert_eq!(batch[1].len(), long.len());
    for (a, b) in batch[0].iter().zip(&alone) {
        assert!(cosine(a, b) >= 0.99999);
    }
}
