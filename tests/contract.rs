//! The contract between `bertlite-tool`'s graph writer (tools/src/graph.rs) and the runtime's
//! rewrites (src/rewrite/): every bundle the tool writes must get the fused ops and int8
//! kernels its precision and this CPU call for. A change on either side that breaks a pattern
//! would otherwise pass the accuracy tests and only run slower. cross/check.sh asserts the same
//! through `bertlite info` under qemu for the boards' CPUs.

use bertlite::{EncoderOptions, Model, Precision, PrecisionChoice, Rewrites};

use crate::common::bundle;

/// What each bundle's rewrites must find at `precision` on this CPU.
fn expected(layers: usize, precision: Precision) -> Rewrites {
    let cpu = std::env::consts::ARCH;
    // The fused attention runs where its kernel does (x86_64 with AVX2 + FMA, aarch64);
    // elsewhere the masked softmax is fused on its own.
    let attention = cpu == "aarch64" || bertlite::internal::gemm_i8::available();
    let int8 = precision == Precision::Int8;
    let kernel = bertlite::internal::gemm_i8::Kernel::native();
    let f16 = precision == Precision::F16;
    Rewrites {
        attentions: if attention && !f16 { layers } else { 0 },
        layer_norms: if f16 { 0 } else { 2 * layers + 1 },
        masked_softmaxes: if attention || f16 { 0 } else { layers },
        int8_linears: if int8 { 6 * layers } else { 0 },
        int8_kernel: int8.then(|| match kernel {
            bertlite::internal::gemm_i8::Kernel::Portable => "tract",
            k => k.name(),
        }),
    }
}

fn rewrites(name: &str, precision: Precision) -> Rewrites {
    let options = EncoderOptions { threads: 1, precision: PrecisionChoice::Fixed(precision) };
    let model = Model::load_with(bundle(name), options).expect("bundle loads");
    assert_eq!(model.precision().precision, precision, "{name}");
    *model.rewrites()
}

#[test]
fn every_bundle_the_tool_writes_gets_the_fast_paths() {
    // (bundle, layers, int8 weights): the real checkpoint, its two ONNX exports, and a pruned
    // bundle (heads, FFN neurons and two whole layers removed).
    let cases = [
        ("minilm-int8.blt", 6, true),
        ("minilm-f32.blt", 6, false),
        ("minilm-bbc.blt", 6, true),
        ("onnx-int8w-int8.blt", 6, true),
        ("onnx-paraphrase-int8.blt", 3, true),
        ("onnx-paraphrase-f32.blt", 3, false),
        ("minilm-pruned.blt", 4, true),
        ("minilm-layers-int8.blt", 6, true),
    ];
    for (name, layers, int8_weights) in cases {
        let mut precisions = vec![Precision::F32, Precision::F16];
        if int8_weights {
            precisions.push(Precision::Int8);
        }
        for precision in precisions {
            let got = rewrites(name, precision);
            assert_eq!(got, expected(layers, precision), "{name} at {precision}: {got}");
        }
    }
}

#[test]
fn auto_gets_the_fast_paths_of_what_it_picks() {
    let model = Model::load(bundle("minilm-int8.blt")).expect("bundle loads");
    let picked = model.precision().precision;
    assert_eq!(*model.rewrites(), expected(6, picked), "auto picked {picked}");
}
