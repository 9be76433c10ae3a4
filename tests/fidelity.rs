//! Numbers the spine promises, measured on the real MiniLM-L6 against the float64 reference.

use bertlite::Bundle;
use bertlite::Encoding;
use bertlite::cosine;
use bertlite::{EncoderOptions, Model, Precision, PrecisionChoice};

use crate::common::*;

/// fp32 graph vs float64 numpy: only f32 rounding and summation order differ.
const FP32_MIN_COSINE: f32 = 0.99999;
/// int8 weights (per-channel, symmetric) vs float64: the budget.
const INT8_MEAN_COSINE: f32 = 0.999;
const INT8_MIN_COSINE: f32 = 0.995;
/// int8 compute (weights int8, activations quantized per token at run time, each token's 4
/// largest magnitudes split off and multiplied as 16-bit integers) vs float64: issue #15's
/// bound for the default path (measured 0.99906 / 0.99637; 0.99552 / 0.98112 before the split;
/// ONNX Runtime's `quantize_dynamic` 0.9883 / 0.9710 on these same 56 sentences).
const INT8_COMPUTE_MEAN_COSINE: f32 = 0.999;
const INT8_COMPUTE_MIN_COSINE: f32 = 0.995;
/// Bundle size budget relative to the fp32 safetensors.
const MAX_SIZE_RATIO: f64 = 0.26;
/// Padding inside a batch must not change a text's embedding beyond f32 noise.
const BATCH_MIN_COSINE: f32 = 0.99999;
/// With int8 compute, padding changes f32 rounding upstream of a quantizer by ~1e-7, which
/// moves a value on a rounding boundary by a whole step: batched and single runs then differ by
/// int8 noise, not f32 noise (one such flip in the fox sentence: 0.99977). Bound: the int8
/// fidelity budget above, so batching cannot cost more than int8 compute does.
const INT8_BATCH_MIN_COSINE: f32 = 0.999;

/// The bundle with f32 compute (int8 weights widened at load): `auto` may pick int8 compute,
/// which the `int8_compute_*` tests cover.
fn load_f32(name: &str) -> Model {
    let options = EncoderOptions { threads: 2, precision: PrecisionChoice::Fixed(Precision::F32) };
    Model::load_with(bundle(name), options).expect("bundle loads")
}

/// The int8 bundle with int8 compute on `threads` threads.
fn load_int8(threads: usize) -> Model {
    let options = EncoderOptions { threads, precision: PrecisionChoice::Fixed(Precision::Int8) };
    Model::load_with(bundle("minilm-int8.blt"), options).expect("bundle loads")
}

fn golden_cosines(model: &Model) -> Vec<(String, f32)> {
    read_jsonl(&golden("embeddings.jsonl"))
        .iter()
        .map(|row| {
            let text = row["text"].as_str().unwrap();
            let got = model.embed(text).expect("embeds");
            (text.to_owned(), cosine(&got, &floats(&row["embedding"])))
        })
        .collect()
}

fn mean_min(cos: &[(String, f32)]) -> (f32, f32) {
    let mean = cos.iter().map(|c| c.1).sum::<f32>() / cos.len() as f32;
    (mean, cos.iter().map(|c| c.1).fold(1.0, f32::min))
}

#[test]
fn fp32_matches_reference() {
    let cos = golden_cosines(&load_f32("minilm-f32.blt"));
    assert!(cos.len() >= 50);
    let min = cos.iter().map(|c| c.1).fold(1.0, f32::min);
    eprintln!("fp32 cosine to fp64 reference over {} sentences: min {min:.7}", cos.len());
    let bad: Vec<_> = cos.iter().filter(|(_, c)| *c < FP32_MIN_COSINE).collect();
    assert!(bad.is_empty(), "below {FP32_MIN_COSINE}: {bad:?}");
}

/// Pruning repair (tools/src/prune.rs): the same neurons and heads removed (FFN −50%, heads
/// −25%, calibrated on 32 BBC training articles) with the kept projections refitted by least
/// squares stays closer to the unpruned model than without, on BBC test articles it never saw.
/// Pruned encoders are other models, so the bound is relative: the repaired mean cosine to the
/// unpruned f32 bundle must beat the unrepaired one by 0.1 (on all 444 test articles with 64
/// calibration texts: 0.60 → 0.87). What it does not do, measured: on the short, many-script
/// golden sentences, far from the news it was calibrated on, it gains almost nothing (0.646 →
/// 0.654), and with two layers dropped as well neither (0.594 → 0.602): it refits projections
/// inside a layer for the calibration text's statistics.
#[test]
fn pruning_repair_stays_closer_to_the_unpruned_model() {
    let repaired = bbc_cosine_to_unpruned("minilm-ffn50-heads25.blt");
    let plain = bbc_cosine_to_unpruned("minilm-ffn50-heads25-norepair.blt");
    eprintln!(
        "pruned, mean cosine to the unpruned model on 40 BBC test articles: repaired {repaired:.4}, not {plain:.4}"
    );
    assert!(repaired >= plain + 0.1, "repair {repaired} vs none {plain}");
}

/// Distillation (tools/src/distill.rs): the cut of minilm-pruned.blt (FFN −50%, heads −25%, two
/// layers dropped, repaired, importance on 32 BBC training articles), then each kept layer
/// trained toward the unpruned model's output at its depth on those 32 articles, stays closer to
/// the unpruned model on BBC test articles it never saw. Relative, as above: measured 0.7839
/// against 0.6099 (the first 40 test articles); the margin is a third of that gain, so what it guards against is a
/// change that loses most of it (a wrong gradient, a layer trained toward the wrong depth).
const DISTILL_MARGIN: f32 = 0.06;

#[test]
fn distillation_brings_a_pruned_model_closer_to_the_unpruned_one() {
    let distilled = bbc_cosine_to_unpruned("minilm-pruned-distill.blt");
    let repaired = bbc_cosine_to_unpruned("minilm-pruned.blt");
    eprintln!(
        "pruned with 2 layers dropped, mean cosine to the unpruned model on 40 BBC test articles: distilled {distilled:.4}, repaired only {repaired:.4}"
    );
    assert!(distilled >= repaired + DISTILL_MARGIN, "distilled {distilled} vs repaired {repaired}");
}

/// `--target-flops` (tools/src/budget.rs): the FLOPs of the uniform cut above (FFN −50%, heads
/// −25%: 59% of the encoder) spent layer by layer on what each can spare, measured on the same
/// 32 calibration articles, stays closer to the unpruned model on BBC test articles than the
/// uniform cut does, at no more FLOPs. Both are repaired; the bound is relative, as above.
/// Measured: 0.8699 against 0.8396 (scored on 32 training articles apart from the calibration;
/// scored on the calibration articles themselves, where the refit looks better than it is, the
/// plan measured 0.7633). The margin is a third of that gain: the bundles and articles are
/// fixed, so what it guards against is a change in how cuts are scored or chosen.
const BUDGET_MARGIN: f32 = 0.01;

#[test]
fn a_flops_budget_spent_by_sensitivity_beats_uniform_cuts() {
    let flops = |name: &str| load_f32(name).metadata().encoder.flops(128);
    let (budget, uniform) = ("minilm-budget59.blt", "minilm-ffn50-heads25.blt");
    assert!(flops(budget) <= flops(uniform), "{} > {}", flops(budget), flops(uniform));
    let (b, u) = (bbc_cosine_to_unpruned(budget), bbc_cosine_to_unpruned(uniform));
    eprintln!(
        "59% of the FLOPs, mean cosine to the unpruned model: by sensitivity {b:.4}, uniform {u:.4}"
    );
    assert!(b >= u + BUDGET_MARGIN, "budget {b} vs uniform {u}");
}

/// Mean cosine of `name`'s embeddings (f32 compute) to the unpruned f32 bundle's on the first
/// 40 BBC test articles.
fn bbc_cosine_to_unpruned(name: &str) -> f32 {
    let texts: Vec<String> = read_jsonl(&bbc_test())
        .iter()
        .take(40)
        .map(|r| r["text"].as_str().expect("text").to_owned())
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let full = load_f32("minilm-f32.blt").embed_batch(&texts).expect("embeds");
    let got = load_f32(name).embed_batch(&texts).expect("embeds");
    got.iter().zip(&full).map(|(a, b)| cosine(a, b)).sum::<f32>() / texts.len() as f32
}

#[test]
fn int8_close_to_reference() {
    let cos = golden_cosines(&load_f32("minilm-int8.blt"));
    let (mean, min) = mean_min(&cos);
    eprintln!(
        "int8 cosine to fp64 reference over {} sentences: mean {mean:.5}, min {min:.5}",
        cos.len()
    );
    assert!(mean >= INT8_MEAN_COSINE, "mean cosine {mean}");
    assert!(min >= INT8_MIN_COSINE, "min cosine {min}: {cos:?}");
}

/// What lets `auto` pick int8 on CPUs without dot-product (Cortex-A72, armv7): on weights
/// rounded by calibration (GPTQ, the tool's default), int8 compute is at least as faithful as
/// f32 compute was on each weight rounded to its nearest step (`--round-to-nearest`, what `auto`
/// ran there before) — mean and worst sentence both. Measured 0.99943 / 0.99839 against
/// 0.99936 / 0.99684; and the calibrated weights under f32 compute: 0.99975 / 0.99942.
#[test]
fn calibrated_int8_compute_is_as_faithful_as_f32_on_nearest_rounding() {
    let int8 = EncoderOptions { threads: 1, precision: PrecisionChoice::Fixed(Precision::Int8) };
    let calibrated = Model::load_with(bundle("minilm-int8.blt"), int8).expect("bundle loads");
    assert!(calibrated.metadata().encoder.int8_calibrated, "the default bundle is calibrated");
    let nearest = load_f32("minilm-int8-nearest.blt");
    assert!(!nearest.metadata().encoder.int8_calibrated);
    let (mean, min) = mean_min(&golden_cosines(&calibrated));
    let (mean_f32, min_f32) = mean_min(&golden_cosines(&nearest));
    eprintln!(
        "golden sentences: calibrated int8 compute {mean:.5} / {min:.5}, f32 compute on \
         nearest rounding {mean_f32:.5} / {min_f32:.5}"
    );
    assert!(mean >= mean_f32 && min >= min_f32, "{mean} / {min} vs {mean_f32} / {min_f32}");
    let (mean_cal_f32, _) = mean_min(&golden_cosines(&load_f32("minilm-int8.blt")));
    assert!(mean_cal_f32 > mean_f32, "calibration helps f32 compute too: {mean_cal_f32}");
}

#[test]
fn int8_compute_close_to_reference() {
    let options = EncoderOptions { threads: 2, precision: PrecisionChoice::Fixed(Precision::Int8) };
    let model = Model::load_with(bundle("minilm-int8.blt"), options).expect("bundle loads");
    assert_eq!(model.encoder().precision().precision, Precision::Int8);
    let cos = golden_cosines(&model);
    let (mean, min) = mean_min(&cos);
    eprintln!(
        "int8 compute cosine to fp64 reference over {} sentences: mean {mean:.5}, min {min:.5}",
        cos.len()
    );
    assert!(mean >= INT8_COMPUTE_MEAN_COSINE, "mean cosine {mean}");
    assert!(min >= INT8_COMPUTE_MIN_COSINE, "min cosine {min}: {cos:?}");
}

/// Rows are independent in every op, so splitting them over threads changes nothing, bit for
/// bit (the 80-word text and the batch are long enough to be split, the short texts run on one
/// thread); batching pads, and the padded keys are masked out (bound: `INT8_BATCH_MIN_COSINE`).
#[test]
fn int8_compute_same_on_threads_and_in_batches() {
    let (one, two, four) = (load_int8(1), load_int8(2), load_int8(4));
    let texts =
        ["a", "The quick brown fox jumps over the lazy dog.", "Café crème", &"word ".repeat(80)];
    let batch = two.embed_batch(&texts).unwrap();
    // A batch is split by texts (4 ≥ threads) or by heads and rows: the same values as on one.
    assert_eq!(batch, one.embed_batch(&texts).unwrap(), "batch: 1 vs 2 threads");
    assert_eq!(batch, four.embed_batch(&texts).unwrap(), "batch: 2 vs 4 threads");
    for (t, b) in texts.iter().zip(&batch) {
        let single = one.embed(t).unwrap();
        assert_eq!(single, two.embed(t).unwrap(), "{t:?}: 1 vs 2 threads");
        assert_eq!(single, four.embed(t).unwrap(), "{t:?}: 1 vs 4 threads");
        let c = cosine(&single, b);
        assert!(c >= INT8_BATCH_MIN_COSINE, "{t:?}: batched, cosine {c}");
    }
}

/// A batch of more rows than the encoder runs at once goes in parts of whole texts
/// (`encoder::PART_ROWS`); texts of one length need no padding, so each must get exactly its
/// own answer, on one thread and on two.
#[test]
fn a_batch_run_in_parts_gives_each_text_its_own_answer() {
    let texts: Vec<String> = ["alpha", "beta", "gamma", "delta", "epsilon"]
        .iter()
        .map(|w| format!("{w} ").repeat(100))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for threads in [1, 2] {
        let model = load_int8(threads);
        let lengths: Vec<usize> = texts.iter().map(|t| model.encode(t).unwrap().len()).collect();
        assert!(lengths.iter().all(|&l| l == lengths[0]), "{lengths:?}");
        assert!(lengths[0] * texts.len() > bertlite::internal::PART_ROWS, "{lengths:?}");
        let batch = model.embed_batch(&texts).unwrap();
        for (t, b) in texts.iter().zip(&batch) {
            assert_eq!(&model.embed(t).unwrap(), b, "{threads} thread(s): {}", &t[..6]);
        }
    }
}

/// One model on a pool of two (four) threads, called from four (eight) threads at once, as a
/// server or the C API's callers would: every inference runs on a pool thread with the others
/// kept awake (`platform::threads::run_on_pool`), so concurrent callers queue for the pool and
/// nest in each other's waits. They must all finish, each with the one-thread answer bit for
/// bit.
#[test]
fn one_pooled_model_serves_concurrent_callers() {
    let one = load_int8(1);
    // Long enough to be split everywhere (≥ 32 token rows), one split on x86_64 only (≥ 8),
    // and one that is not split.
    let long = "several words in a row ".repeat(12);
    let texts = [long.as_str(), "a dozen or so tokens make this sentence split on x86", "a short"];
    let want: Vec<Vec<f32>> = texts.iter().map(|t| one.embed(t).unwrap()).collect();
    for threads in [2, 4] {
        let model = load_int8(threads);
        std::thread::scope(|s| {
            for caller in 0..2 * threads {
                let (model, texts, want) = (&model, &texts, &want);
                s.spawn(move || {
                    for i in 0..6 {
                        let t = (caller + i) % texts.len();
                        let got = model.embed(texts[t]).unwrap();
                        assert_eq!(got, want[t], "{threads} threads, caller {caller}");
                    }
                    assert_eq!(model.embed_batch(texts).unwrap().len(), texts.len());
                });
            }
        });
    }
}

#[test]
fn int8_bundle_is_small() {
    let fp32 = std::fs::metadata(model_dir().join("model.safetensors")).unwrap().len() as f64;
    let int8 = std::fs::metadata(bundle("minilm-bbc.blt")).unwrap().len() as f64;
    eprintln!("bundle {:.2} MB = {:.1}% of {:.2} MB", int8 / 1e6, 100.0 * int8 / fp32, fp32 / 1e6);
    assert!(
        int8 / fp32 <= MAX_SIZE_RATIO,
        "bundle is {:.1}% of the checkpoint",
        100.0 * int8 / fp32
    );
}

#[test]
fn batching_does_not_change_embeddings() {
    let model = load_f32("minilm-int8.blt");
    let texts =
        ["a", "The quick brown fox jumps over the lazy dog.", "Café crème", &"word ".repeat(80)];
    let batch = model.embed_batch(&texts).unwrap();
    for (t, b) in texts.iter().zip(&batch) {
        let single = model.embed(t).unwrap();
        assert!(cosine(&single, b) >= BATCH_MIN_COSINE, "{t:?}");
    }
}

/// Accuracy of a model (its head) on BBC News test split; texts batched by length.
fn accuracy(model: &Model, rows: &[(String, String)]) -> (f64, Vec<String>) {
    let encodings: Vec<Encoding> = rows.iter().map(|(t, _)| model.encode(t).unwrap()).collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| encodings[i].len());
    let mut preds = vec![String::new(); rows.len()];
    for chunk in order.chunks(8) {
        let batch: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
        for (&i, e) in chunk.iter().zip(model.embed_encodings(&batch).unwrap()) {
            preds[i] = model.classify_embedding(&e).unwrap().top().0.to_owned();
        }
    }
    let correct = preds.iter().zip(rows).filter(|(p, (_, l))| *p == l).count();
    (correct as f64 / rows.len() as f64, preds)
}

#[test]
fn bbc_accuracy_fp32_and_int8() {
    let rows: Vec<(String, String)> = read_jsonl(&bbc_test())
        .iter()
        .map(|r| (r["text"].as_str().unwrap().to_owned(), r["label"].as_str().unwrap().to_owned()))
        .collect();
    let int8 = load_f32("minilm-bbc.blt");
    // The fp32 encoder with the same trained head.
    let trained = Bundle::read(&bundle("minilm-bbc.blt")).unwrap();
    let mut fp32 = Bundle::read(&bundle("minilm-f32.blt")).unwrap();
    fp32.metadata.head = trained.metadata.head.clone();
    fp32.head = trained.head.clone();
    let options = EncoderOptions { threads: 2, precision: PrecisionChoice::Fixed(Precision::F32) };
    let fp32 = Model::from_bundle(fp32, options).unwrap();
    let (acc8, p8) = accuracy(&int8, &rows);
    let (acc32, p32) = accuracy(&fp32, &rows);
    let agree = p8.iter().zip(&p32).filter(|(a, b)| a == b).count() as f64 / rows.len() as f64;
    eprintln!(
        "BBC test ({} articles): fp32 {acc32:.4}, int8 {acc8:.4}, agreement {agree:.4}",
        rows.len()
    );
    assert!(acc32 >= 0.96 && acc8 >= 0.96, "fp32 {acc32}, int8 {acc8}");
    assert!((acc32 - acc8).abs() <= 0.005, "fp32 {acc32} vs int8 {acc8}");

    // The int8 compute path (what Pi 5 / Orin run by default), same bundle and head. Only where
    // our AVX2 kernel runs it at speed: tract's x86 int8 kernel would take ~45 min here.
    if !bertlite::internal::gemm_i8::available() {
        eprintln!("no AVX2: int8-compute BBC accuracy not measured");
        return;
    }
    let options = EncoderOptions { threads: 2, precision: PrecisionChoice::Fixed(Precision::Int8) };
    let int8c = Model::load_with(bundle("minilm-bbc.blt"), options).unwrap();
    let (acc8c, p8c) = accuracy(&int8c, &rows);
    let agree8c = p8c.iter().zip(&p8).filter(|(a, b)| a == b).count() as f64 / rows.len() as f64;
    eprintln!("BBC test, int8 compute: {acc8c:.4}, agreement with f32 compute {agree8c:.4}");
    assert!(acc8c >= 0.96, "int8 compute {acc8c}");
    assert!((acc32 - acc8c).abs() <= 0.005, "fp32 {acc32} vs int8 compute {acc8c}");
}
