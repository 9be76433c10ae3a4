//! Any bytes as the bundle's graph (an NNEF tar), with the tiny bundle's metadata: loading
//! fails with an error or gives an encoder that runs, never a panic or an abort.
#![no_main]

mod common;

use std::sync::OnceLock;

use bertlite::EncoderInfo;
use bertlite::internal::{Batch, Encoder};
use bertlite::Encoding;
use bertlite::{EncoderOptions, Precision, PrecisionChoice};
use libfuzzer_sys::fuzz_target;

fn shape() -> &'static EncoderInfo {
    static SHAPE: OnceLock<EncoderInfo> = OnceLock::new();
    SHAPE.get_or_init(|| common::tiny().metadata.encoder)
}

fuzz_target!(|data: &[u8]| {
    let precision = match data.len() % 2 {
        0 => PrecisionChoice::Fixed(Precision::F32),
        _ => PrecisionChoice::Fixed(Precision::Int8),
    };
    let options = EncoderOptions { threads: 1, precision };
    let Ok(encoder) = Encoder::load(data, shape(), options) else { return };
    let mut e = Encoding::default();
    for id in [2u32, 5, 6, 3] {
        let _ = e.ids.push(id);
        let _ = e.type_ids.push(0);
    }
    let _ = encoder.run(&Batch::new(&[&e], 0));
});
