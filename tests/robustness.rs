//! What an embedding program needs to promise: one `Model` shared by many threads answers every
//! request as one thread would, bad requests included; the fuzzers' crash inputs stay errors.
//! (Memory over many requests: tools/memory.sh.)

use std::sync::Arc;

use bertlite::{EncoderOptions, Model, PrecisionChoice};

use crate::common::*;

const TEXTS: [&str; 6] = [
    "Shares in the carmaker fell 5% after it cut its profit forecast.",
    "The striker scored twice as United won the cup final.",
    "Ministers will publish the election manifesto on Monday.",
    "The film's soundtrack topped the charts in its first week.",
    "A new chip doubles the battery life of mobile phones.",
    "naïve café — 日本語 and emoji 😀",
];

/// One request and its answer, as text, so answers compare exactly (floats by their bits).
fn request(model: &Model, kind: u32, i: usize) -> String {
    let text = TEXTS[i % TEXTS.len()];
    let other = TEXTS[(i + 1) % TEXTS.len()];
    let bits = |v: &[f32]| v.iter().map(|x| format!("{:08x}", x.to_bits())).collect::<String>();
    match kind {
        0 => match model.classify(text) {
            Ok(c) => c.scores.iter().map(|(l, p)| format!("{l}:{:08x} ", p.to_bits())).collect(),
            Err(e) => format!("error {e}"),
        },
        1 => model.embed(text).map(|e| bits(&e)).unwrap_or_else(|e| format!("error {e}")),
        2 => format!("{:?}", model.encode(text).map(|e| e.ids.to_vec())),
        3 => match model.encode_pair(text, other) {
            Ok(e) => model
                .embed_encodings(&[&e])
                .map(|v| bits(&v[0]))
                .unwrap_or_else(|e| format!("error {e}")),
            Err(e) => format!("error {e}"),
        },
        // Bad input: empty, control characters only.
        _ => format!(
            "{:?}",
            model.classify(["", " \t\n", "\u{1}\u{7f}"][i % 3]).err().map(|e| e.to_string())
        ),
    }
}

/// 10 000 mixed requests (`BERTLITE_STRESS_REQUESTS`) from 8 threads on one `Arc<Model>`: every
/// answer equals the single-threaded answer to the same request.
#[test]
fn one_model_many_threads_same_answers() {
    let options = EncoderOptions { threads: 1, precision: PrecisionChoice::Auto };
    let model = Arc::new(Model::load_with(bundle("minilm-bbc.blt"), options).unwrap());
    let expected: Vec<Vec<String>> =
        (0..5).map(|k| (0..TEXTS.len()).map(|i| request(&model, k, i)).collect()).collect();
    assert!(expected[4].iter().all(|a| a.contains("empty")), "{:?}", expected[4]);
    const THREADS: usize = 8;
    // Fewer under ThreadSanitizer (results/fuzz.md says how it is run), which is many times slower.
    let requests: usize = std::env::var("BERTLITE_STRESS_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let model = Arc::clone(&model);
            let expected = expected.clone();
            std::thread::spawn(move || {
                let mut seed = t as u64 + 1;
                for _ in 0..requests.div_ceil(THREADS) {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    // Model runs are what costs: 2 in 10 requests are tokenizer-only, 1 in 10 bad.
                    let kind = [0, 0, 0, 1, 1, 2, 2, 3, 3, 4][(seed >> 33) as usize % 10];
                    let i = (seed >> 40) as usize % TEXTS.len();
                    assert_eq!(
                        request(&model, kind, i),
                        expected[kind as usize][i],
                        "kind {kind} text {i}"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a thread's answer differed");
    }
}

/// Inputs that once crashed a fuzz target (fuzz/regressions/<target>/), each now an error.
#[test]
fn fuzz_regressions_are_errors() {
    let dir = repo().join("fuzz/regressions/bundle");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        fix_header(&mut bytes);
        for precision in ["f32", "int8"] {
            let options = EncoderOptions { threads: 1, precision: precision.parse().unwrap() };
            let loaded =
                bertlite::Bundle::from_bytes(&bytes).and_then(|b| Model::from_bundle(b, options));
            assert!(loaded.is_err(), "{} loads with {precision}", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());

    // Graphs alone, read with the tiny fixture's metadata (as the nnef target does).
    let tiny = std::fs::read(repo().join("fuzz/seeds/bundle/tiny-int8.blt")).unwrap();
    let shape = bertlite::Bundle::from_bytes(&tiny).unwrap().metadata.encoder;
    let dir = repo().join("fuzz/regressions/nnef");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let graph = std::fs::read(&path).unwrap();
        let options = EncoderOptions { threads: 1, precision: PrecisionChoice::Auto };
        let loaded = bertlite::internal::Encoder::load(&graph, &shape, options);
        assert!(loaded.is_err(), "{} loads", path.display());
    }
}

/// As fuzz/fuzz_targets/common.rs: the header's length and checksum made to match the bytes.
fn fix_header(bytes: &mut [u8]) {
    if bytes.len() < 32 {
        return;
    }
    let len = bytes.len() as u64;
    bytes[16..24].copy_from_slice(&len.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..24]);
    h.update(&bytes[28..]);
    let crc = h.finalize();
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
}

/// Encodings built by hand through the public fields get errors, not tract's unchecked gathers.
#[test]
fn hand_made_encodings_are_checked() {
    use bertlite::Encoding;
    let model = Model::load(bundle("minilm-int8.blt")).unwrap();
    let encoding = |ids: &[u32], types: &[u32]| {
        let mut e = Encoding::default();
        for (&id, &t) in ids.iter().zip(types) {
            e.ids.push(id).unwrap();
            e.type_ids.push(t).unwrap();
        }
        e
    };
    let message = |e: &Encoding| model.embed_encodings(&[e]).unwrap_err().to_string();
    assert_eq!(
        message(&encoding(&[101, 30522, 102], &[0, 0, 0])),
        "token id 30522 is outside the vocabulary of 30522"
    );
    assert_eq!(message(&encoding(&[101, 2000, 102], &[0, 2, 0])), "token type 2 is not 0 or 1");
    assert_eq!(message(&Encoding::default()), "an empty batch or an encoding with no tokens");
    let long = encoding(&[2000; 512], &[0; 512]);
    assert!(model.embed_encodings(&[&long]).is_ok(), "512 tokens fit the 512 positions");
}
