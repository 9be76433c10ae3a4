//! Criterion benches of the runtime's hot paths, on the host (x86_64 here; the boards'
//! speed is compared by instruction counts, cross/insn-count.sh).
//!
//! - `linear_i8/<m>x<n>x<k>`: the int8 linear (quantized rows × packed int8 weights, exact in
//!   i32, rescaled to f32) at every all-MiniLM-L6-v2 shape, for 16 and 128 tokens.
//! - `encoder/<t>`: the whole encoder + pooling on the real bundle at 16 and 128 tokens,
//!   int8 compute, one thread (skipped with a message when the bundle is not fetched:
//!   `tools/setup.sh` makes it).
//!
//! `cargo bench -p bertlite-tool --bench runtime`. Side by side with ONNX Runtime, with ratios,
//! is tools/bench.py; these are for before/after comparisons of one change.

use std::hint::black_box;
use std::path::PathBuf;

use bertlite::internal::gemm_i8::{self, PackedWeights, Rescale};
use bertlite::{EncoderOptions, Model, Precision, PrecisionChoice};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// (n, k) of MiniLM's linears: q/k/v fused (3 × 384), attention output, FFN up, FFN down.
const SHAPES: [(usize, usize); 4] = [(1152, 384), (384, 384), (1536, 384), (384, 1536)];

fn linear_i8(c: &mut Criterion) {
    let mut group = c.benchmark_group("linear_i8");
    for m in [16, 128] {
        for (n, k) in SHAPES {
            let w = bell_shaped_weights(n * k);
            let packed = PackedWeights::pack(&w, n, k, gemm_i8::Kernel::native());
            if m == 16 {
                eprintln!("{n}x{k}: {} weights corrected", packed.corrections());
            }
            let kp = gemm_i8::padded_k(k);
            let x = activations(m * kp);
            let rows = vec![0.01f32; m];
            let zeros = vec![64i32; m];
            let channels = vec![0.02f32; n];
            let bias = vec![0.5f32; n];
            let rescale = Rescale {
                rows: &rows,
                zeros: &zeros,
                channels: &channels,
                bias: Some(&bias),
                outliers: None,
            };
            let mut y = vec![0f32; m * n];
            group.throughput(Throughput::Elements((m * n * k) as u64));
            group.bench_function(BenchmarkId::from_parameter(format!("{m}x{n}x{k}")), |b| {
                b.iter(|| gemm_i8::linear(black_box(&x), m, &packed, &rescale, &mut y))
            });
        }
    }
    group.finish();

    // The six layers' 24 linears in a row: 10.6 MB of weights, more than L2, streamed from
    // L3 or memory as in the real encoder (one shape alone stays in L2 and flatters).
    let mut group = c.benchmark_group("linear_i8_6_layers");
    let layers: Vec<PackedWeights> = (0..6)
        .flat_map(|_| {
            SHAPES.map(|(n, k)| {
                PackedWeights::pack(&bell_shaped_weights(n * k), n, k, gemm_i8::Kernel::native())
            })
        })
        .collect();
    group.sample_size(10);
    // 1024 rows: a batch of 8 texts of 128 tokens.
    for m in [16, 128, 1024] {
        let (rows, zeros) = (vec![0.01f32; m], vec![64i32; m]);
        let x = activations(m * 1536);
        let mut y = vec![0f32; m * 1536];
        let (channels, bias) = (vec![0.02f32; 1536], vec![0.5f32; 1536]);
        let macs: usize = layers.iter().map(|w| m * w.n * w.k).sum();
        group.throughput(Throughput::Elements(macs as u64));
        group.bench_function(BenchmarkId::from_parameter(m), |b| {
            b.iter(|| {
                for w in &layers {
                    let rescale = Rescale {
                        rows: &rows,
                        zeros: &zeros,
                        channels: &channels[..w.n],
                        bias: Some(&bias[..w.n]),
                        outliers: None,
                    };
                    let (x, y) = (&x[..m * gemm_i8::padded_k(w.k)], &mut y[..m * w.n]);
                    gemm_i8::linear(black_box(x), m, w, &rescale, y);
                }
            })
        });
    }
    group.finish();
}

/// Deterministic quantized activations over 0..=127.
fn activations(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 40503) >> 5) as u8 & 127).collect()
}

/// Deterministic int8 weights shaped like a trained layer's after per-channel quantization:
/// bell-shaped around 0 (a sum of four uniforms), reaching ±127 only rarely. Uniform random
/// bytes would be unrealistic: a quarter of the kernel's lanes would need corrections, where
/// MiniLM has 0.03% of its weights in them.
fn bell_shaped_weights(len: usize) -> Vec<i8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    (0..len)
        .map(|_| ((uniform() + uniform() + uniform() + uniform()) * 31.75).round() as i8)
        .collect()
}

fn bundle() -> PathBuf {
    let cache = std::env::var_os("BERTLITE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/bertlite")
    });
    cache.join("bundles/minilm-bbc.blt")
}

fn encoder(c: &mut Criterion) {
    let path = bundle();
    if !path.exists() {
        eprintln!("encoder benches skipped: {} not found (run tools/setup.sh)", path.display());
        return;
    }
    let options = EncoderOptions { threads: 1, precision: PrecisionChoice::Fixed(Precision::Int8) };
    let model = match Model::load_with(&path, options) {
        Ok(model) => model,
        Err(e) => {
            eprintln!("encoder benches skipped: {e}");
            return;
        }
    };
    // A real BBC business sentence, long enough for 128 tokens.
    let text = "Ad sales boost Time Warner profit. Quarterly profits at US media giant TimeWarner \
        jumped 76% to $1.13bn (£600m) for the three months to December, from $639m year-earlier. \
        The firm, which is now one of the biggest investors in Google, benefited from sales of \
        high-speed internet connections and higher advert sales. TimeWarner said fourth quarter \
        sales rose 2% to $11.1bn from $10.9bn. Its profits were buoyed by one-off gains which \
        offset a profit dip at Warner Bros, and less users for AOL. Time Warner said on Friday \
        that it now owns 8% of search-engine Google. But its own internet business, AOL, had has \
        mixed fortunes. It lost 464,000 subscribers in the fourth quarter profits were lower \
        than in the preceding three quarters.";
    let mut group = c.benchmark_group("encoder");
    for tokens in [16, 128] {
        let Ok(mut encoding) = model.encode(text) else { return };
        encoding.truncate(tokens);
        group.bench_function(BenchmarkId::from_parameter(tokens), |b| {
            b.iter(|| model.embed_encodings(&[black_box(&encoding)]))
        });
    }
    group.finish();
}

criterion_group!(benches, linear_i8, encoder);
criterion_main!(benches);
