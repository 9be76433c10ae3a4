//! Mutated bundles, with the header's length and checksum fixed so the mutations reach META,
//! VOCB, GRPH, HEAD and TASK: reading and loading either fail with an error or give a model that
//! answers (or refuses) a text, and never panic or abort.
#![no_main]

mod common;

use bertlite::Bundle;
use bertlite::{EncoderOptions, Model, Precision, PrecisionChoice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    common::fix_header(&mut bytes);
    let Ok(bundle) = Bundle::from_bytes(&bytes) else { return };
    // Both of the runtime's graph paths: tract's f32, and our int8 rewrite.
    let precision = match bytes.len() % 2 {
        0 => PrecisionChoice::Fixed(Precision::F32),
        _ => PrecisionChoice::Fixed(Precision::Int8),
    };
    let Ok(model) = Model::from_bundle(bundle, EncoderOptions { threads: 1, precision }) else {
        return;
    };
    for text in ["the movie was great", "a\tb", "[MASK] x"] {
        let _ = model.classify(text);
        // The task heads (tiny-tasks-int8.blt has a pooler in its TASK section).
        let _ = model.fill_mask(text, 3);
        let _ = model.entities(text);
        let _ = model.pooled_output(text);
        let _ = model.next_sentence(text, "b");
        let _ = model.answer("where?", text);
        let _ = model.choose(text, &["x", "y"]);
    }
    let _ = model.embed_batch(&["short", "a somewhat longer text than the other one"]);
});
