//! `bertlite-tool compile` on the committed tiny BertForSequenceClassification fixture
//! (models/tiny-bert-cls, made by models/make_tiny.py), checked against the float64 numpy
//! reference in tests/golden/tiny-classify.jsonl; and its errors on bad checkpoints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bertlite::{EncoderOptions, Model, Precision};
use serde_json::Value;

/// f32 graph vs float64 reference on a random tiny model: f32 rounding only.
const FP32_PROB_TOLERANCE: f32 = 1e-4;
/// int8 weights on a random (not trained, so not outlier-shaped) tiny model: probabilities
/// move by at most a few hundredths.
const INT8_PROB_TOLERANCE: f32 = 0.03;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bertlite-tool")).args(args).output().expect("tool runs")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bertlite-tool-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn compile(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["compile", "--model-dir", dir.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    tool(&args)
}

fn golden() -> Vec<(Value, Value)> {
    let texts = std::fs::read_to_string(repo().join("tests/golden/tiny-texts.jsonl")).unwrap();
    let want = std::fs::read_to_string(repo().join("tests/golden/tiny-classify.jsonl")).unwrap();
    texts
        .lines()
        .zip(want.lines())
        .map(|(t, w)| (serde_json::from_str(t).unwrap(), serde_json::from_str(w).unwrap()))
        .collect()
}

fn check_against_reference(bundle: &Path, tolerance: f32) {
    let model = Model::load_with(bundle, EncoderOptions::default()).unwrap();
    // The tool↔runtime contract on the fixture too (tests/contract.rs: the real model): both
    // layers' attention (or its softmax), all five LayerNorms, and at int8 all twelve linears
    // take the fast paths.
    let r = model.rewrites();
    assert_eq!((r.layer_norms, r.attentions + r.masked_softmaxes), (5, 2), "{r}");
    if model.precision().precision == Precision::Int8 {
        assert_eq!(r.int8_linears, 12, "{r}");
    }
    let head = model.head().expect("checkpoint head kept");
    assert_eq!(head.info.labels, ["negative", "neutral", "positive"]);
    for (text, want) in golden() {
        let enc = match &text {
            Value::String(s) => model.encode(s).unwrap(),
            Value::Array(p) => {
                model.encode_pair(p[0].as_str().unwrap(), p[1].as_str().unwrap()).unwrap()
            }
            _ => unreachable!(),
        };
        let want_ids: Vec<u32> =
            want["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(enc.ids.as_slice(), want_ids.as_slice(), "{text}");
        let pooled = model.embed_encodings(&[&enc]).unwrap().remove(0);
        let probs = head.probabilities(&pooled);
        for (got, want) in probs.iter().zip(want["probs"].as_array().unwrap()) {
            let want = want.as_f64().unwrap() as f32;
            assert!((got - want).abs() <= tolerance, "{text}: {probs:?} vs {}", want);
        }
    }
}

#[test]
fn tiny_checkpoint_fp32_and_int8_match_reference() {
    let dir = repo().join("models/tiny-bert-cls");
    let f32_out = temp("tiny-f32.blt");
    let out = compile(&dir, &f32_out, &["--no-quantize"]);
    assert_ok(&out);
    check_against_reference(&f32_out, FP32_PROB_TOLERANCE);
    let int8_out = temp("tiny-int8.blt");
    let out = compile(&dir, &int8_out, &[]);
    assert_ok(&out);
    check_against_reference(&int8_out, INT8_PROB_TOLERANCE);
}

#[test]
fn vocab_txt_without_tokenizer_json_gives_same_tokens() {
    let src = repo().join("models/tiny-bert-cls");
    let dir = temp("tiny-vocab-only");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let out_path = temp("tiny-vocab.blt");
    let out = compile(&dir, &out_path, &["--no-quantize"]);
    assert_ok(&out);
    check_against_reference(&out_path, FP32_PROB_TOLERANCE);
}

#[test]
fn trains_a_head_from_csv() {
    let csv = temp("train.csv");
    let mut text = String::from("text,label\n");
    for i in 0..20 {
        text.push_str(&format!(
            "\"good great love best happy {i}\",pos\n\"bad terrible hate worst sad {i}\",neg\n"
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let out_path = temp("tiny-trained.blt");
    let out = compile(
        &repo().join("models/tiny-bert-cls"),
        &out_path,
        &["--train", csv.to_str().unwrap(), "--threads", "1"],
    );
    assert_ok(&out);
    let model = Model::load(&out_path).unwrap();
    assert_eq!(model.head().unwrap().info.labels, ["neg", "pos"]);
    assert_eq!(model.classify("great love best").unwrap().top().0, "pos");
    assert_eq!(model.classify("terrible worst hate").unwrap().top().0, "neg");
}

fn expect_error(out: Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let src = repo().join("models/tiny-bert-cls");
    let out_path = temp("never.blt");
    expect_error(compile(Path::new("/nonexistent/dir"), &out_path, &[]), "does not exist");

    let gpt = temp("gpt2-like");
    std::fs::create_dir_all(&gpt).unwrap();
    std::fs::write(gpt.join("config.json"), r#"{"model_type": "gpt2", "n_layer": 2}"#).unwrap();
    expect_error(compile(&gpt, &out_path, &[]), "not a BERT checkpoint");

    let broken = temp("broken-weights");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), broken.join(f)).unwrap();
    }
    let weights = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    expect_error(compile(&broken, &out_path, &[]), "not a valid safetensors file");

    std::fs::write(broken.join("model.safetensors"), &weights).unwrap();
    std::fs::write(broken.join("config.json"), "{not json").unwrap();
    expect_error(compile(&broken, &out_path, &[]), "config.json is not valid JSON");

    // A NaN in the classifier's bias (safetensors: u64 header length, JSON header, data).
    std::fs::copy(src.join("config.json"), broken.join("config.json")).unwrap();
    let mut nan = weights.clone();
    let header_len = u64::from_le_bytes(nan[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&nan[8..8 + header_len]).unwrap();
    let at =
        8 + header_len + header["classifier.bias"]["data_offsets"][0].as_u64().unwrap() as usize;
    nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(broken.join("model.safetensors"), &nan).unwrap();
    expect_error(
        compile(&broken, &out_path, &[]),
        "tensor classifier.bias in model.safetensors holds a non-finite value",
    );

    // No tokenizer files at all.
    std::fs::write(broken.join("model.safetensors"), &weights).unwrap();
    for f in ["vocab.txt", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::remove_file(broken.join(f)).unwrap();
    }
    expect_error(compile(&broken, &out_path, &[]), "tokenizer");

    expect_error(compile(&src, &out_path, &["--max-len", "100000"]), "max length");
    assert!(!out_path.exists(), "nothing written on failure");
}

/// The pruning tests' calibration texts.
const CALIBRATION_TEXTS: [&str; 4] =
    ["the market rose", "terrible film", "good music award", "shares fell at the bank"];

/// [`CALIBRATION_TEXTS`] as a JSONL calibration file.
fn calibration_file(name: &str) -> PathBuf {
    let cal = temp(name);
    let lines: String = CALIBRATION_TEXTS
        .iter()
        .map(|t| format!("{{\"text\": \"{t}\", \"label\": \"x\"}}\n"))
        .collect();
    std::fs::write(&cal, lines).unwrap();
    cal
}

#[test]
fn pruning_shrinks_the_graph_and_still_runs() {
    let cal = calibration_file("calibration.jsonl");
    let out_path = temp("tiny-pruned.blt");
    let dir = repo().join("models/tiny-bert-cls");
    let args = [
        "--calibration",
        cal.to_str().unwrap(),
        "--prune-ffn",
        "0.5",
        "--prune-heads",
        "0.5",
        "--drop-layers",
        "1",
    ];
    let out = compile(&dir, &out_path, &args);
    assert_ok(&out);
    let model = Model::load(&out_path).unwrap();
    let enc = &model.metadata().encoder;
    assert_eq!(enc.heads, vec![2], "4 heads halved, one of two layers dropped");
    assert_eq!(enc.intermediate, vec![32]);
    let full = Model::load({
        let p = temp("tiny-full.blt");
        assert!(compile(&dir, &p, &[]).status.success());
        p
    })
    .unwrap();
    assert!(enc.flops(32) * 3 < full.metadata().encoder.flops(32), "at least 3x fewer FLOPs");
    assert!(model.metadata().pruning.as_deref().unwrap_or("").contains("ffn -50%"));
    let c = model.classify("the market rose").unwrap();
    assert_eq!(c.scores.len(), 3);
    // Pruning without calibration text is a clear error.
    expect_error(compile(&dir, &temp("never2.blt"), &["--prune-ffn", "0.5"]), "--calibration");
}

/// `--distill`: the pruned tiny model is trained layer by layer toward the unpruned one, then
/// end to end, and says so in its metadata; asked without pruning, or its epochs or end-to-end
/// passes without it, a clear error.
#[test]
fn distilling_a_pruned_model() {
    let cal = calibration_file("calibration-distill.jsonl");
    let dir = repo().join("models/tiny-bert-cls");
    let out_path = temp("tiny-distilled.blt");
    let cal = cal.to_str().unwrap();
    let prune = ["--calibration", cal, "--prune-ffn", "0.5", "--drop-layers", "1"];
    let distill = [
        "--distill",
        "--distill-epochs",
        "3",
        "--calibration-tokens",
        "16",
        "--distill-end-to-end",
        "2",
    ];
    let out = compile(&dir, &out_path, &[&prune[..], &distill[..]].concat());
    assert_ok(&out);
    let model = Model::load(&out_path).unwrap();
    let pruning = model.metadata().pruning.clone().unwrap_or_default();
    assert!(
        pruning.contains("distilled layer by layer")
            && pruning.contains("3 epochs")
            && pruning.contains("cut at 16 tokens")
            && pruning.contains("then end to end on")
            && pruning.contains("(2 epochs"),
        "{pruning}"
    );
    assert_eq!(model.classify("the market rose").unwrap().scores.len(), 3);
    let never = temp("never-distilled.blt");
    expect_error(
        compile(&dir, &never, &["--calibration", cal, "--distill"]),
        "--distill trains a pruned encoder",
    );
    expect_error(
        compile(&dir, &never, &[&prune[..], &["--distill-epochs", "3"]].concat()),
        "--distill",
    );
    expect_error(
        compile(&dir, &never, &[&prune[..], &["--distill-end-to-end", "1"]].concat()),
        "--distill",
    );
    expect_error(
        compile(&dir, &never, &[&prune[..], &["--calibration-tokens", "2"]].concat()),
        "--calibration-tokens 2",
    );
    assert!(!never.exists(), "nothing written on failure");
}

/// The tiny fixture as a sentence-transformers folder (mean pooling + normalize), in `name`.
fn mean_pooled_tiny(name: &str) -> PathBuf {
    let dir = temp(name);
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for f in std::fs::read_dir(repo().join("models/tiny-bert-cls")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;
    std::fs::write(dir.join("modules.json"), modules).unwrap();
    std::fs::write(dir.join("1_Pooling/config.json"), r#"{"pooling_mode_mean_tokens": true}"#)
        .unwrap();
    dir
}

/// `--finetune-epochs`: the encoder, pruned or not, trained on the labels; the head says what
/// fine-tuning did. Without labels, or through a pooling it does not train, a clear error.
#[test]
fn finetuning_the_encoder_on_labels() {
    let dir = mean_pooled_tiny("tiny-mean");
    let train = temp("finetune-train.jsonl");
    let texts = [
        ("the market rose", "business"),
        ("shares fell at the bank", "business"),
        ("profits rose at the bank", "business"),
        ("the market fell", "business"),
        ("bank shares rose", "business"),
        ("terrible film", "arts"),
        ("good music award", "arts"),
        ("a good film", "arts"),
        ("terrible music", "arts"),
        ("film award", "arts"),
        ("the film won an award", "arts"),
        ("market shares fell", "business"),
    ];
    let lines: String =
        texts.iter().map(|(t, l)| format!("{{\"text\": \"{t}\", \"label\": \"{l}\"}}\n")).collect();
    std::fs::write(&train, lines).unwrap();
    let train = train.to_str().unwrap();
    for (name, extra) in [("pruned", &["--prune-ffn", "0.5"][..]), ("full", &[][..])] {
        let out_path = temp(&format!("tiny-finetuned-{name}.blt"));
        let args = [&["--train", train, "--finetune-epochs", "2"][..], extra].concat();
        let out = compile(&dir, &out_path, &args);
        assert_ok(&out);
        let model = Model::load(&out_path).unwrap();
        let origin = model.metadata().head.as_ref().map(|h| h.origin.clone()).unwrap_or_default();
        assert!(
            origin.contains("encoder fine-tuned on 10 of the texts (2 epochs")
                && origin.contains(" on 2"),
            "{origin}"
        );
        assert_eq!(model.classify("the market rose").unwrap().scores.len(), 2);
    }
    let never = temp("never-finetuned.blt");
    expect_error(
        compile(&dir, &never, &["--finetune-epochs", "1"]),
        "--finetune-epochs trains the encoder on labeled text: give --train FILE",
    );
    expect_error(
        compile(
            &repo().join("models/tiny-bert-cls"),
            &never,
            &["--train", train, "--finetune-epochs", "1"],
        ),
        "trains through mean pooling; this model pools with Cls",
    );
    for (flag, message) in [
        ("--finetune-lr=-1", "--finetune-lr must be a positive number, got -1"),
        ("--finetune-lr=NaN", "--finetune-lr must be a positive number, got NaN"),
        ("--finetune-kd=-0.5", "--finetune-kd must be 0 or more, got -0.5"),
    ] {
        expect_error(
            compile(&dir, &never, &["--train", train, "--finetune-epochs", "1", flag]),
            message,
        );
    }
    assert!(!never.exists(), "nothing written on failure");
}

/// `--target-flops`: the plan stays within the budget and the bundle says how it was chosen;
/// a budget no pruning can reach, or one mixed with fractions, is a clear error.
#[test]
fn pruning_to_a_flops_budget() {
    let cal = calibration_file("calibration-budget.jsonl");
    let dir = repo().join("models/tiny-bert-cls");
    let full = Model::load({
        let p = temp("tiny-full-budget.blt");
        assert!(compile(&dir, &p, &[]).status.success());
        p
    })
    .unwrap();
    let out_path = temp("tiny-budget.blt");
    let out = compile(
        &dir,
        &out_path,
        &["--calibration", cal.to_str().unwrap(), "--target-flops", "0.5"],
    );
    assert_ok(&out);
    let model = Model::load(&out_path).unwrap();
    // The budget counts at the calibration texts' own lengths (the file has no others to
    // hold out), as `compile` reports.
    let at_lengths = |m: &Model| -> u64 {
        CALIBRATION_TEXTS
            .iter()
            .map(|t| m.metadata().encoder.flops(full.encode(t).unwrap().len()))
            .sum()
    };
    let (pruned, unpruned) = (at_lengths(&model), at_lengths(&full));
    assert!(pruned * 2 <= unpruned, "{pruned} FLOPs against {unpruned}: over the budget");
    assert!(pruned * 4 > unpruned, "{pruned} FLOPs against {unpruned}: far under the budget");
    assert!(model.metadata().pruning.as_deref().unwrap_or("").contains("budget: 50%"));
    assert_eq!(model.classify("the market rose").unwrap().scores.len(), 3);
    let cal = cal.to_str().unwrap();
    expect_error(
        compile(&dir, &temp("never3.blt"), &["--calibration", cal, "--target-flops", "1.5"]),
        "--target-flops",
    );
    expect_error(
        compile(
            &dir,
            &temp("never4.blt"),
            &["--calibration", cal, "--target-flops", "0.5", "--prune-ffn", "0.5"],
        ),
        "--target-flops",
    );
}

/// `--prune-score task`: the budget's cuts are scored by a head fitted to the labeled
/// calibration texts, within the same budget, and the bundle says so; with one label, or
/// without a budget to score, a clear error.
#[test]
fn pruning_to_a_budget_scored_by_the_task() {
    let dir = repo().join("models/tiny-bert-cls");
    let cal = temp("calibration-task.jsonl");
    let lines: String = CALIBRATION_TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{{\"text\": \"{t}\", \"label\": \"{}\"}}\n", ["a", "b"][i % 2]))
        .collect();
    std::fs::write(&cal, lines).unwrap();
    let cal = cal.to_str().unwrap();
    let out_path = temp("tiny-budget-task.blt");
    let args = ["--calibration", cal, "--target-flops", "0.5", "--prune-score", "task"];
    assert_ok(&compile(&dir, &out_path, &args));
    let model = Model::load(&out_path).unwrap();
    let pruning = model.metadata().pruning.clone().unwrap_or_default();
    assert!(
        pruning.contains("budget: 50%") && pruning.contains("change of a head's logits"),
        "{pruning}"
    );
    let full = temp("tiny-full-task.blt");
    assert!(compile(&dir, &full, &[]).status.success());
    let flops = |m: &Model| m.metadata().encoder.flops(16);
    let (pruned, unpruned) = (flops(&model), flops(&Model::load(&full).unwrap()));
    // Half at the calibration texts' lengths; at 16 tokens the attention's share differs a little.
    assert!(pruned * 10 <= unpruned * 6, "{pruned} FLOPs against {unpruned}");
    let one_label = calibration_file("calibration-task-one.jsonl");
    let never = temp("never-task.blt");
    expect_error(
        compile(
            &dir,
            &never,
            &[
                "--calibration",
                one_label.to_str().unwrap(),
                "--target-flops",
                "0.5",
                "--prune-score",
                "task",
            ],
        ),
        "two distinct labels",
    );
    expect_error(
        compile(
            &dir,
            &never,
            &["--calibration", cal, "--prune-ffn", "0.5", "--prune-score", "task"],
        ),
        "--prune-score",
    );
    assert!(!never.exists(), "nothing written on failure");
}

/// `--prune-select repair`: each layer's neurons and heads are chosen by greedy least-squares
/// removal (`prune::removal_ranks`, held to brute force in its unit test), the bundle says so
/// and classifies; with `--no-repair` the norms choose, since the greedy order assumes the refit.
#[test]
fn pruning_with_structures_chosen_for_the_repair() {
    let cal = calibration_file("calibration-select.jsonl");
    let cal = cal.to_str().unwrap();
    let dir = repo().join("models/tiny-bert-cls");
    let cut = ["--calibration", cal, "--prune-ffn", "0.5", "--prune-heads", "0.5"];
    let pruning = |extra: &[&str], name: &str| {
        let path = temp(name);
        assert_ok(&compile(&dir, &path, &[&cut[..], extra].concat()));
        let model = Model::load(&path).unwrap();
        assert_eq!(model.classify("the market rose").unwrap().scores.len(), 3);
        model.metadata().pruning.clone().unwrap_or_default()
    };
    let chosen = pruning(&["--prune-select", "repair"], "tiny-select.blt");
    assert!(chosen.contains("chosen by greedy least-squares removal"), "{chosen}");
    let plain = pruning(&["--prune-select", "repair", "--no-repair"], "tiny-select-plain.blt");
    assert!(plain.contains("activation x weight norm"), "{plain}");
}

/// `--target-latency`, alone and beside `--target-flops`: the plan the bundle describes
/// reaches both shares it was asked for, and a share no pruning reaches is a clear error.
#[test]
fn pruning_to_a_latency_budget() {
    let cal = calibration_file("calibration-latency.jsonl");
    let cal = cal.to_str().unwrap();
    let dir = repo().join("models/tiny-bert-cls");
    // "…, 48.1% of the FLOPs and 55.0% of the estimated latency reached …" → (48.1, 55.0).
    let reached = |args: &[&str]| -> (f64, f64) {
        let path = temp(&format!("tiny-latency-{}.blt", args.len()));
        let mut all = vec!["--calibration", cal];
        all.extend_from_slice(args);
        assert_ok(&compile(&dir, &path, &all));
        let model = Model::load(&path).unwrap();
        assert_eq!(model.classify("the market rose").unwrap().scores.len(), 3);
        let text = model.metadata().pruning.clone().unwrap_or_default();
        let share = |after: &str| -> f64 {
            let head = text.split(after).next().unwrap_or("");
            let number = head.rsplit(' ').next().unwrap_or("");
            number.parse().unwrap_or_else(|_| panic!("no share before {after:?} in {text}"))
        };
        (share("% of the FLOPs and"), share("% of the estimated latency reached"))
    };
    let (_, latency) = reached(&["--target-latency", "0.6"]);
    assert!(latency <= 60.0, "latency {latency}% over 60%");
    let (flops, latency) = reached(&["--target-flops", "0.7", "--target-latency", "0.6"]);
    assert!(flops <= 70.0 && latency <= 60.0, "{flops}% of the FLOPs, {latency}% of the time");
    expect_error(
        compile(&dir, &temp("never5.blt"), &["--calibration", cal, "--target-latency", "0"]),
        "--target-latency",
    );
}

#[test]
fn trains_a_multi_label_sigmoid_head() {
    let data = temp("multi.jsonl");
    let mut text = String::new();
    for i in 0..15 {
        text.push_str(&format!("{{\"text\": \"good great {i}\", \"label\": [\"pos\"]}}\n"));
        text.push_str(&format!(
            "{{\"text\": \"market shares bank {i}\", \"label\": [\"finance\"]}}\n"
        ));
        text.push_str(&format!(
            "{{\"text\": \"good great market shares {i}\", \"label\": [\"pos\", \"finance\"]}}\n"
        ));
    }
    std::fs::write(&data, text).unwrap();
    let out_path = temp("tiny-multi.blt");
    let dir = repo().join("models/tiny-bert-cls");
    let args = ["--train", data.to_str().unwrap(), "--multi-label", "--threads", "1"];
    let out = compile(&dir, &out_path, &args);
    assert_ok(&out);
    let model = Model::load(&out_path).unwrap();
    assert_eq!(model.head().unwrap().info.kind, bertlite::HeadKind::MultiLabel);
    let c = model.classify("good great market shares").unwrap();
    assert!(c.scores.iter().all(|(_, p)| *p > 0.5), "both labels: {c:?}");
    // Several labels without --multi-label is a clear error.
    expect_error(
        compile(&dir, &temp("never3.blt"), &["--train", data.to_str().unwrap()]),
        "--multi-label",
    );
}

fn compile_onnx(onnx: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["compile", "--onnx", onnx.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    tool(&args)
}

/// The same tiny classifier as an ONNX export (models/make_tiny_onnx.py: Gemm head, embedding
/// tables found by role, config.json beside it) answers as the safetensors checkpoint does.
#[test]
fn tiny_onnx_export_fp32_and_int8_match_reference() {
    let onnx = repo().join("models/tiny-bert-cls-onnx/model.onnx");
    let f32_out = temp("tiny-onnx-f32.blt");
    let out = compile_onnx(&onnx, &f32_out, &["--no-quantize"]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("against the ONNX file run by tract: cosine"), "{stdout}");
    check_against_reference(&f32_out, FP32_PROB_TOLERANCE);
    let int8_out = temp("tiny-onnx-int8.blt");
    let out = compile_onnx(&onnx, &int8_out, &[]);
    assert_ok(&out);
    check_against_reference(&int8_out, INT8_PROB_TOLERANCE);

    // Without config.json: heads read off the graph's reshapes, labels LABEL_i, same numbers.
    let bare = temp("bare-onnx");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(&onnx, bare.join("model.onnx")).unwrap();
    std::fs::copy(onnx.with_file_name("tokenizer.json"), bare.join("tokenizer.json")).unwrap();
    let bare_out = temp("tiny-onnx-bare.blt");
    let out = compile_onnx(&bare.join("model.onnx"), &bare_out, &["--no-quantize"]);
    assert_ok(&out);
    let (a, b) = (
        Model::load_with(&f32_out, EncoderOptions::default()).unwrap(),
        Model::load_with(&bare_out, EncoderOptions::default()).unwrap(),
    );
    assert_eq!(b.metadata().encoder.heads, vec![4, 4]);
    assert_eq!(b.head().unwrap().info.labels, ["LABEL_0", "LABEL_1", "LABEL_2"]);
    let text = "the market rose";
    assert_eq!(a.embed(text).unwrap(), b.embed(text).unwrap());
}

/// Bad ONNX input, on the real paraphrase-MiniLM-L3-v2 export tools/setup.sh fetches (its
/// successful compiles are checked against ONNX Runtime in tests/onnx_import.rs).
#[test]
fn bad_onnx_inputs_are_clear_errors() {
    let onnx = repo().join("models/paraphrase-MiniLM-L3-v2-onnx/paraphrase-MiniLM-L3-v2.onnx");
    assert!(onnx.exists(), "{} is missing: run tools/setup.sh", onnx.display());
    let tokenizer = repo().join("models/all-MiniLM-L6-v2/tokenizer.json");
    let tok = tokenizer.to_str().unwrap();
    let out_path = temp("never-onnx.blt");

    expect_error(compile_onnx(Path::new("/nonexistent/model.onnx"), &out_path, &[]), "cannot read");
    // An ONNX file carries no tokenizer and none sits beside this one.
    expect_error(compile_onnx(&onnx, &out_path, &[]), "give --tokenizer");
    // The tiny fixture's vocabulary does not fit the real embedding table.
    let tiny_vocab = repo().join("models/tiny-bert-cls/vocab.txt");
    expect_error(
        compile_onnx(&onnx, &out_path, &["--tokenizer", tiny_vocab.to_str().unwrap()]),
        "vocabulary has",
    );
    expect_error(
        compile_onnx(&onnx, &out_path, &["--tokenizer", tok, "--heads", "5"]),
        "divisible",
    );
    // A wrong head count that divides: the check against the file itself catches it.
    expect_error(
        compile_onnx(&onnx, &out_path, &["--tokenizer", tok, "--heads", "6"]),
        "does not reproduce",
    );

    let bytes = std::fs::read(&onnx).unwrap();
    let truncated = temp("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(compile_onnx(&truncated, &out_path, &["--tokenizer", tok]), "not an ONNX model");
    let empty = temp("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    expect_error(compile_onnx(&empty, &out_path, &["--tokenizer", tok]), "no graph");
    // A valid ONNX file of another model (a two-layer MLP, models/not-bert-onnx/make.py).
    let mlp = repo().join("models/not-bert-onnx/model.onnx");
    expect_error(compile_onnx(&mlp, &out_path, &["--tokenizer", tok]), "is this a BERT export");
    // Options that only mean something for ONNX input.
    let dir = repo().join("models/tiny-bert-cls");
    expect_error(compile(&dir, &out_path, &["--tokenizer", tok]), "--onnx");
    assert!(!out_path.exists(), "nothing written on failure");
}
