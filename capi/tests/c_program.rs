//! The C API from C: compiles examples/classify.c against include/bertlite.h and the static
//! library cargo built for this test, runs it on the real bundle, and compares its answers
//! with the Rust API's (same library code, so labels equal and scores within f32 printing).

use std::path::{Path, PathBuf};
use std::process::Command;

fn bundle() -> Option<PathBuf> {
    let cache = std::env::var_os("BERTLITE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/bertlite")))?;
    let path = cache.join("bundles/minilm-bbc.blt");
    path.exists().then_some(path)
}

/// target/<profile>/deps/, where cargo put libbertlite.a for this test (beside the test).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().expect("target/<profile>/deps").to_path_buf()
}

fn compile(source: &str, out: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = lib_dir().join("libbertlite.a");
    assert!(lib.exists(), "{} not built", lib.display());
    let status = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Werror", "-O1"])
        .arg(dir.join(source))
        .arg("-I")
        .arg(dir.join("include"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-Wl,-z,noexecstack", "-o"])
        .arg(out)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
}

#[test]
fn c_program_classifies_like_the_rust_api_and_reports_errors() {
    let Some(bundle) = bundle() else {
        panic!("the real bundle is missing: run tools/test.sh (it compiles minilm-bbc.blt)");
    };
    let exe = std::env::temp_dir().join(format!("bertlite-capi-{}", std::process::id()));
    compile("examples/classify.c", &exe);
    let texts = [
        "Shares in the carmaker fell 5% after it cut its profit forecast.",
        "The striker scored twice as United won the cup final.",
        "Ministers will publish the election manifesto on Monday.",
    ];
    let out = Command::new(&exe).arg(&bundle).args(texts).output().expect("run the C program");
    assert!(out.status.success(), "C program failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> =
        String::from_utf8(out.stdout).expect("utf-8").lines().map(String::from).collect();
    assert_eq!(lines.len(), texts.len(), "one line per text: {lines:?}");

    let model = runtime::Model::load(&bundle).expect("load the bundle in Rust");
    for (text, line) in texts.iter().zip(&lines) {
        let answer = model.classify(text).expect("classify");
        let (label, score) = answer.top();
        let embedding = model.embed(text).expect("embed");
        let want_prefix = format!("{{\"label\":\"{label}\",\"score\":");
        assert!(line.starts_with(&want_prefix), "{text}: C said {line}, Rust {label} {score}");
        let value = |key: &str| -> f32 {
            let rest = &line[line.find(key).expect(key) + key.len()..];
            rest.trim_end_matches('}').split(',').next().unwrap_or("").parse().expect(key)
        };
        // Printed with 6 decimals: equal to 1e-6 (same code, same process-independent plan).
        assert!((value("\"score\":") - score).abs() <= 1e-6, "{line} vs {score}");
        assert!((value("\"embedding0\":") - embedding[0]).abs() <= 1e-6, "{line}");
    }

    // Errors are messages, not crashes: an empty text, and a missing bundle.
    let out = Command::new(&exe).arg(&bundle).arg("   ").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error:") && stderr.contains("empty"), "{stderr}");
    let out = Command::new(&exe).args(["/nonexistent.blt", "text"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot load /nonexistent.blt"), "{stderr}");
    let _ = std::fs::remove_file(&exe);
}

/// examples/tasks.c: fill-mask, entities (byte offsets) and an answer from C, equal to the
/// Rust API's on the task bundles of tools/test.sh.
#[test]
fn c_program_runs_the_task_heads_like_the_rust_api() {
    let Some(cache) = bundle().and_then(|b| b.parent().map(Path::to_path_buf)) else {
        panic!("the real bundle is missing: run tools/test.sh");
    };
    let name = |task: &str| cache.join(format!("task-{task}-int8.blt"));
    let exe = std::env::temp_dir().join(format!("bertlite-tasks-{}", std::process::id()));
    compile("examples/tasks.c", &exe);
    let out = Command::new(&exe)
        .args([name("pretraining"), name("ner"), name("qa")])
        .output()
        .expect("run the C program");
    let _ = std::fs::remove_file(&exe);
    assert!(out.status.success(), "C program failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");

    let mut want = Vec::new();
    let mlm = runtime::Model::load(name("pretraining")).expect("loads");
    for p in &mlm.fill_mask("where are you from? i'm from [MASK].", 5).expect("fill-mask")[0] {
        want.push(format!("fill-mask {} {} {:.6}", p.token, p.token_str, p.score));
    }
    want.push(
        "no-head this bundle has no token-classification head (its heads: pooler, fill-mask, \
         next-sentence); compile it from a checkpoint that has one"
            .into(),
    );
    let ner = runtime::Model::load(name("ner")).expect("loads");
    let sentence = "Apple's CEO Tim Cook visited Zürich on Monday.";
    for e in ner.entities(sentence).expect("entities") {
        let byte = |c: usize| sentence.char_indices().nth(c).map_or(sentence.len(), |(i, _)| i);
        let (s, t) = (byte(e.start), byte(e.end));
        want.push(format!("entity {} {} {s} {t} {:.6}", e.entity_group, &sentence[s..t], e.score));
    }
    let qa = runtime::Model::load(name("qa")).expect("loads");
    let a = qa.answer("Where is it based?", "Hugging Face is based in New York City.").expect("qa");
    want.push(format!("answer {} {} {} {:.6}", a.answer, a.start, a.end, a.score));
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got, want);
}

/// tests/robustness.c: every entry point with bad input, then one handle shared by 8 pthreads
/// for 10 000 mixed requests, answers compared bit for bit with the single-threaded ones.
#[test]
fn c_api_refuses_bad_input_and_serves_threads() {
    let Some(bundle) = bundle() else {
        panic!("the real bundle is missing: run tools/test.sh (it compiles minilm-bbc.blt)");
    };
    let exe = std::env::temp_dir().join(format!("bertlite-robustness-{}", std::process::id()));
    compile("tests/robustness.c", &exe);
    let out = Command::new(&exe).arg(&bundle).arg("10000").output().expect("run robustness");
    let _ = std::fs::remove_file(&exe);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("10000 requests from 8 threads"));
}
