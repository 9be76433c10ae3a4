//! Batch-1 latency of every task next to plain `embed`, on the task bundles tools/test.sh
//! compiles (the real all-MiniLM-L6-v2 encoder with seeded heads), at exact token counts:
//!
//!     cargo run --release --example task_latency -- ~/.cache/bertlite/bundles > results/tasks.md
//!
//! One thread, `--precision auto`, median of 30 timed calls after 3 warm-ups, per bundle
//! precision (f32 and int8 weights). Texts are "the" repeated: one token per word.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bertlite::{EncoderOptions, Model};

const RUNS: usize = 30;

fn median_ms(mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut t: Vec<f64> = (0..RUNS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[RUNS / 2]
}

fn words(n: usize) -> String {
    vec!["the"; n].join(" ")
}

fn load(dir: &Path, name: &str) -> Model {
    let path = dir.join(name);
    Model::load_with(&path, EncoderOptions { threads: 1, ..Default::default() })
        .unwrap_or_else(|e| panic!("{}: {e} (run tools/test.sh first)", path.display()))
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: task_latency BUNDLE_DIR"));
    println!("# Task latency (batch 1, one thread, `--precision auto`)\n");
    println!(
        "Regenerate: `cargo run --release --example task_latency -- ~/.cache/bertlite/bundles > results/tasks.md`"
    );
    println!("(after tools/test.sh has compiled the task bundles). Median of {RUNS} calls, ms.");
    println!("Each task's text has exactly the stated number of tokens, special tokens included;");
    println!("multiple choice runs two (context, choice) pairs of that length.\n");
    for weights in ["f32", "int8"] {
        let pre = load(&dir, &format!("task-pretraining-{weights}.blt"));
        let ner = load(&dir, &format!("task-ner-{weights}.blt"));
        let qa = load(&dir, &format!("task-qa-{weights}.blt"));
        let mc = load(&dir, &format!("task-choice-{weights}.blt"));
        println!("## {weights} weights (runs {})\n", pre.precision().precision.name());
        println!("| task | call | 16 tokens | 128 tokens |");
        println!("|---|---|---|---|");
        let mut rows: Vec<(&str, &str, Vec<f64>)> = Vec::new();
        let sizes = [16usize, 128];
        let time =
            |f: &dyn Fn(usize)| sizes.iter().map(|&n| median_ms(|| f(n))).collect::<Vec<_>>();
        rows.push((
            "embed (pooled)",
            "`Model::embed`",
            time(&|n| {
                pre.embed(&words(n - 2)).expect("embed");
            }),
        ));
        rows.push((
            "sequence_output",
            "`Model::tokens`",
            time(&|n| {
                pre.tokens(&words(n - 2)).expect("tokens");
            }),
        ));
        rows.push((
            "pooled_output",
            "`Model::pooled_output`",
            time(&|n| {
                pre.pooled_output(&words(n - 2)).expect("pooled");
            }),
        ));
        rows.push((
            "fill-mask, 1 mask, top 5",
            "`Model::fill_mask`",
            time(&|n| {
                pre.fill_mask(&format!("{} [MASK]", words(n - 3)), 5).expect("fill-mask");
            }),
        ));
        rows.push((
            "next sentence",
            "`Model::next_sentence`",
            time(&|n| {
                let a = words((n - 3) / 2);
                pre.next_sentence(&a, &words(n - 3 - (n - 3) / 2)).expect("nsp");
            }),
        ));
        rows.push((
            "entities",
            "`Model::entities`",
            time(&|n| {
                ner.entities(&words(n - 2)).expect("ner");
            }),
        ));
        rows.push((
            "answer",
            "`Model::answer`",
            time(&|n| {
                qa.answer("where is it?", &words(n - 3 - 4)).expect("qa");
            }),
        ));
        rows.push((
            "multiple choice, 2 choices",
            "`Model::choose`",
            time(&|n| {
                let c = words(n - 4);
                mc.choose(&c, &["the", "a"]).expect("choose");
            }),
        ));
        for (task, call, t) in rows {
            println!("| {task} | {call} | {:.2} | {:.2} |", t[0], t[1]);
        }
        println!();
    }
}
