//! The task heads (fill-mask, next sentence, pooled output, entities, answers, multiple choice)
//! on the real all-MiniLM-L6-v2 encoder with the seeded heads of
//! tools/reference/make_task_checkpoints.py, against tests/golden/tasks.jsonl: the float64
//! numpy forward pass, HF `tokenizers` (tokens, offsets, QA windows, decoding) and the
//! pipelines' post-processing written again in Python (tools/reference/task_reference.py).
//!
//! Tolerances: f32 weights and compute differ from float64 by rounding and summation order,
//! 1e-6 relative on the hidden states (tests/token_outputs.rs: cosine ≥ 0.99999); after a
//! softmax that is at most ~1e-5 relative on a probability, so probabilities are checked to
//! 1e-4 relative and every argmax / top-k / span whose reference margin exceeds that is
//! required to be identical. int8 is reported as agreement with the f32 answers.

use bertlite::{AnswerOptions, EncoderOptions, ErrorKind, Model, PrecisionChoice, cosine};
use serde_json::Value;

use crate::common::*;

fn golden_tasks(task: &str) -> Vec<Value> {
    read_jsonl(&golden("tasks.jsonl")).into_iter().filter(|r| r["task"] == task).collect()
}

fn load(name: &str, precision: PrecisionChoice) -> Model {
    Model::load_with(bundle(name), EncoderOptions { threads: 1, precision }).expect("loads")
}

fn f32_model(task: &str) -> Model {
    load(&format!("task-{task}-f32.blt"), PrecisionChoice::Fixed(bertlite::Precision::F32))
}

/// What `auto` runs for the int8 bundle on this CPU (int8 compute on AVX2 / dot-product CPUs).
fn int8_model(task: &str) -> Model {
    load(&format!("task-{task}-int8.blt"), PrecisionChoice::Auto)
}

fn close(got: f32, want: f64, what: &str) {
    let err = (f64::from(got) - want).abs();
    assert!(err <= 1e-4 * want.abs() + 1e-7, "{what}: {got} vs reference {want} (error {err:e})");
}

#[test]
fn fill_mask_matches_the_reference() {
    let f32m = f32_model("pretraining");
    let int8 = int8_model("pretraining");
    let pruned = load("task-pretraining-pruned.blt", PrecisionChoice::Auto);
    let (mut masks, mut int8_top1, mut pruned_top1) = (0, 0, 0);
    for row in golden_tasks("fill-mask") {
        let text = row["text"].as_str().expect("text");
        let got = f32m.fill_mask(text, 5).expect("fill-mask runs");
        let want = row["masks"].as_array().expect("masks");
        assert_eq!(got.len(), want.len(), "{text}: number of masks");
        let got_int8 = int8.fill_mask(text, 1).expect("int8 runs");
        let got_pruned = pruned.fill_mask(text, 1).expect("pruned runs");
        for (m, (g, w)) in got.iter().zip(want).enumerate() {
            let preds = w["predictions"].as_array().expect("predictions");
            let scores: Vec<f64> =
                preds.iter().map(|p| p["score"].as_f64().expect("score")).collect();
            let next = w["sixth_score"].as_f64().expect("sixth");
            for (i, (p, r)) in g.iter().zip(preds).enumerate() {
                let below = scores.get(i + 1).copied().unwrap_or(next);
                // Identical order wherever the reference's gap is above the tolerance.
                if scores[i] - below > 2e-4 * scores[i] {
                    assert_eq!(
                        p.token,
                        r["token"].as_u64().expect("id") as u32,
                        "{text} mask {m} #{i}"
                    );
                    assert_eq!(p.token_str, r["token_str"].as_str().expect("str"));
                    assert_eq!(p.sequence, r["sequence"].as_str().expect("sequence"), "{text}");
                }
                close(p.score, scores[i], &format!("{text} mask {m} #{i}"));
            }
            masks += 1;
            int8_top1 += usize::from(got_int8[m][0].token == g[0].token);
            pruned_top1 += usize::from(got_pruned[m][0].token == g[0].token);
        }
    }
    eprintln!(
        "fill-mask: {masks} masks; top-1 as f32: int8 {int8_top1}/{masks}, pruned int8 {pruned_top1}/{masks}"
    );
    assert_eq!(int8_top1, masks, "int8 top-1 differs from f32");
}

#[test]
fn next_sentence_and_pooled_output_match_the_reference() {
    let f32m = f32_model("pretraining");
    let int8 = int8_model("pretraining");
    let mut worst_int8 = 0f32;
    for row in golden_tasks("nsp") {
        let (a, b) = (row["a"].as_str().expect("a"), row["b"].as_str().expect("b"));
        let want = floats(&row["probs"]);
        let got = f32m.next_sentence(a, b).expect("nsp runs");
        for (label, w) in ["IsNext", "NotNext"].iter().zip(&want) {
            let p = got.scores.iter().find(|(l, _)| l == label).expect("label").1;
            close(p, f64::from(*w), &format!("{a} / {b}: {label}"));
            let q = int8.next_sentence(a, b).expect("int8 runs");
            let pi = q.scores.iter().find(|(l, _)| l == label).expect("label").1;
            worst_int8 = worst_int8.max((pi - w).abs());
        }
    }
    eprintln!("nsp: int8 probabilities within {worst_int8:.4} of the reference");
    assert!(worst_int8 < 0.05, "int8 NSP probability off by {worst_int8}");
    for row in golden_tasks("pooled") {
        let text = row["text"].as_str().expect("text");
        let got = f32m.pooled_output(text).expect("pooled_output");
        let c = cosine(&got, &floats(&row["pooled"]));
        assert!(c >= 0.99999, "{text}: pooled_output cosine {c}");
    }
}

#[test]
fn entities_match_the_reference() {
    let f32m = f32_model("ner");
    let int8 = int8_model("ner");
    let (mut tokens, mut same_tags) = (0, 0);
    for row in golden_tasks("ner") {
        let text = row["text"].as_str().expect("text");
        let got = f32m.entities(text).expect("ner runs");
        let want = row["entities"].as_array().expect("entities");
        assert_eq!(got.len(), want.len(), "{text}: {got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.entity_group, w["entity_group"].as_str().expect("group"), "{text}");
            assert_eq!(g.word, w["word"].as_str().expect("word"), "{text}");
            assert_eq!(g.start as u64, w["start"].as_u64().expect("start"), "{text}");
            assert_eq!(g.end as u64, w["end"].as_u64().expect("end"), "{text}");
            close(g.score, w["score"].as_f64().expect("score"), text);
        }
        // int8: the same entities, compared token by token through the groups' spans.
        let tags = |entities: &[bertlite::Entity]| -> Vec<(String, usize, usize)> {
            entities.iter().map(|e| (e.entity_group.clone(), e.start, e.end)).collect()
        };
        let (a, b) = (tags(&got), tags(&int8.entities(text).expect("int8 runs")));
        tokens += a.len();
        same_tags += a.iter().filter(|e| b.contains(e)).count();
    }
    eprintln!("ner: int8 keeps {same_tags} of the {tokens} f32 entities exactly");
    assert!(same_tags * 10 >= tokens * 7, "int8 keeps only {same_tags}/{tokens} entities");
}

#[test]
fn answers_match_the_reference() {
    let f32m = f32_model("qa");
    let int8 = int8_model("qa");
    let mut same = 0;
    let rows = golden_tasks("qa");
    for row in &rows {
        let q = row["question"].as_str().expect("question");
        let c = row["context"].as_str().expect("context");
        let options = AnswerOptions {
            max_len: row["max_len"].as_u64().expect("max_len") as usize,
            stride: row["stride"].as_u64().expect("stride") as usize,
            ..Default::default()
        };
        let windows: Vec<Vec<u32>> = f32m
            .tokenizer()
            .encode_windows(q, c, options.max_len, options.stride)
            .expect("windows")
            .iter()
            .map(|e| e.ids.to_vec())
            .collect();
        let want_windows: Vec<Vec<u32>> =
            row["windows"].as_array().expect("windows").iter().map(ids).collect();
        assert_eq!(windows, want_windows, "{q}: windows differ from HF's overflowing tokens");
        let got = f32m.answer_with(q, c, options).expect("qa runs");
        assert_eq!(got.answer, row["answer"].as_str().expect("answer"), "{q}");
        assert_eq!(got.start as u64, row["start"].as_u64().expect("start"));
        assert_eq!(got.end as u64, row["end"].as_u64().expect("end"));
        close(got.score, row["score"].as_f64().expect("score"), q);
        let i = int8.answer_with(q, c, options).expect("int8 runs");
        same += usize::from((i.start, i.end) == (got.start, got.end));
    }
    eprintln!("qa: int8 gives the f32 span on {same} of {} questions", rows.len());
    assert!(same + 1 >= rows.len(), "int8 spans differ on {} questions", rows.len() - same);
}

#[test]
fn multiple_choice_matches_the_reference() {
    let f32m = f32_model("choice");
    for row in golden_tasks("choice") {
        let context = row["context"].as_str().expect("context");
        let choices: Vec<&str> =
            row["choices"].as_array().expect("choices").iter().filter_map(Value::as_str).collect();
        let got = f32m.choose(context, &choices).expect("choose runs");
        for (g, w) in got.iter().zip(floats(&row["probs"])) {
            close(*g, f64::from(w), context);
        }
    }
}

#[test]
fn task_errors_are_clear() {
    let pre = f32_model("pretraining");
    let err = |r: bertlite::Result<()>| {
        let e = r.expect_err("an error");
        assert_eq!(e.kind(), ErrorKind::Input);
        e.to_string()
    };
    assert!(err(pre.fill_mask("no mask here", 5).map(|_| ())).contains("no [MASK] token"));
    let missing = err(pre.entities("Berlin").map(|_| ()));
    assert!(
        missing.contains("no token-classification head")
            && missing.contains("pooler, fill-mask, next-sentence"),
        "{missing}"
    );
    let qa = f32_model("qa");
    assert!(err(qa.answer("Where?", " \t").map(|_| ())).contains("context is empty"));
    assert!(err(qa.answer("", "Berlin").map(|_| ())).contains("question is empty"));
    let long_question = "why ".repeat(400);
    assert!(err(qa.answer(&long_question, "Berlin").map(|_| ())).contains("shorten the question"));
    let mc = f32_model("choice");
    assert!(err(mc.choose("context", &["one"]).map(|_| ())).contains("at least two choices"));
    // The fill-mask decoder reuses the int8 word table: the heads add their own floats only
    // (transform, LayerNorm, vocabulary bias, pooler, NSP), not a second 11.7 MB table.
    let size = |n: &str| std::fs::metadata(bundle(n)).expect("bundle").len();
    let added = size("task-pretraining-int8.blt") - size("minilm-int8.blt");
    let (h, v) = (384u64, 30522u64);
    let head_bytes = 4 * ((h * h + h) * 2 + 2 * h + v + 2 * h + 2);
    assert!(added < head_bytes + 4096, "the heads add {added} bytes, their floats {head_bytes}");
}
