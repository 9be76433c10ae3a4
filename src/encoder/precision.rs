//! How the encoder computes, chosen at load for the CPU it runs on. The bundle stores int8
//! weights either way; this decides what happens to them in memory:
//!
//! - [`Precision::F32`]: weights dequantized once to f32 (tract folds `cast → mul(scale)` at
//!   load), f32 kernels, multithreaded. The most faithful; the default on ARM without
//!   dot-product.
//! - [`Precision::F16`]: as F32, then the graph translated to f16 (tract's `f32_to_f16`): half
//!   the weight memory of f32; native fp16 kernels where the CPU has them. Never chosen by
//!   `Auto` (no fewer instructions than f32 at 128 tokens on a Cortex-A76, less faithful).
//! - [`Precision::Int8`]: every linear layer runs on int8 kernels: activations are quantized per
//!   token (dynamic, 0..=127 with a zero point), the i32 result scaled back per token × per
//!   channel ([`crate::ops::int8`]), on our own kernels ([`crate::kernels::gemm_i8`]: AVX2 on x86_64, SDOT
//!   on aarch64 with dot-product, SMULL on aarch64 without), tract's elsewhere. The default
//!   with dot-product ARM and with AVX2.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for: a fixed precision, or the runtime's choice for this CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrecisionChoice {
    #[default]
    Auto,
    Fixed(Precision),
}

impl FromStr for PrecisionChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => PrecisionChoice::Auto,
            "f32" => PrecisionChoice::Fixed(Precision::F32),
            "f16" => PrecisionChoice::Fixed(Precision::F16),
            "int8" => PrecisionChoice::Fixed(Precision::Int8),
            _ => {
                return Err(Error::input(format!(
                    "unknown precision {s:?} (expected auto, f32, f16 or int8)"
                )));
            }
        })
    }
}

/// The precision the encoder runs at, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub precision: Precision,
    pub reason: String,
}

/// How a bundle stores its Linear weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    F32,
    /// Int8, each weight rounded to its nearest step (bundles from before calibrated rounding,
    /// or `bertlite-tool compile --round-to-nearest`).
    Int8,
    /// Int8, rounded by calibration (GPTQ; [`crate::EncoderInfo::int8_calibrated`]).
    Int8Calibrated,
}

/// Resolves `choice` for a CPU with the given tract ISA feature names (see
/// [`crate::platform::cpu::isa_names`]) and a bundle's weights.
///
/// `Auto` follows what was measured (the figures and their commands: results/precision.md,
/// results/boards.md): int8 where the CPU has the dot-product instructions (SDOT:
/// Cortex-A76/A78, Pi 5, Orin) and on x86_64 with AVX2 ([`crate::kernels::gemm_i8`]).
/// Without dot-product (Cortex-A72: Pi 4; 32-bit ARM) our SMULL / VMULL kernels also need
/// fewer instructions than f32, but int8 activations cost fidelity: `auto` picks int8 there
/// only on calibrated weights, where int8 compute is more faithful than f32 compute on plainly
/// rounded weights (the golden sentences: 0.99943 / 0.99839 against 0.99936 / 0.99684), and
/// keeps f32 on plainly rounded ones. Never f16: it measured no cheaper than f32 at 128 tokens
/// on a Cortex-A76 with fp16, and less faithful; it is an explicit choice (half the weight
/// memory of f32).
pub fn decide(choice: PrecisionChoice, cpu: &[String], weights: Weights) -> Decision {
    let has = |f: &str| cpu.iter().any(|c| c == f);
    let decision = |precision, reason: &str| Decision { precision, reason: reason.to_owned() };
    let int8_bundle = weights != Weights::F32;
    match choice {
        PrecisionChoice::Fixed(Precision::Int8) if !int8_bundle => {
            decision(Precision::F32, "int8 asked for, but the bundle has f32 weights: running f32")
        }
        PrecisionChoice::Fixed(p) => decision(p, "asked for (--precision)"),
        PrecisionChoice::Auto if int8_bundle && has("aarch64") && has("dotprod") => {
            decision(Precision::Int8, "auto: int8 weights and a CPU with dot-product (SDOT)")
        }
        PrecisionChoice::Auto if int8_bundle && has("x86_64") && has("avx512vnni") => decision(
            Precision::Int8,
            "auto: int8 weights and AVX-512 VNNI (bertlite's u8×s8 kernels, AMX tiles where present)",
        ),
        PrecisionChoice::Auto if int8_bundle && has("x86_64") && has("avx2") => {
            decision(Precision::Int8, "auto: int8 weights and AVX2 (bertlite's u8×s8 kernel)")
        }
        PrecisionChoice::Auto
            if weights == Weights::Int8Calibrated && (has("aarch64") || has("neon")) =>
        {
            decision(
                Precision::Int8,
                "auto: calibrated int8 weights (int8 compute as faithful as f32 on plainly \
                 rounded ones) and bertlite's NEON int8 kernels",
            )
        }
        PrecisionChoice::Auto if int8_bundle => decision(
            Precision::F32,
            "auto: no int8 dot-product and plainly rounded int8 weights: f32 keeps f32 fidelity \
             (--precision int8 runs bertlite's int8 kernels: fewer instructions, int8 fidelity)",
        ),
        PrecisionChoice::Auto => decision(Precision::F32, "auto: f32 bundle"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_choice_and_names_a_bad_one() {
        assert_eq!("auto".parse::<PrecisionChoice>().unwrap(), PrecisionChoice::Auto);
        assert_eq!(
            "int8".parse::<PrecisionChoice>().unwrap(),
            PrecisionChoice::Fixed(Precision::Int8)
        );
        let err = "fp8".parse::<PrecisionChoice>().unwrap_err().to_string();
        assert!(err.contains("fp8"), "{err}");
    }

    fn cpu(features: &[&str]) -> Vec<String> {
        features.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn auto_picks_int8_with_dot_product_avx2_or_calibrated_weights() {
        use Weights::*;
        let pick = |f: &[&str], w| decide(PrecisionChoice::Auto, &cpu(f), w).precision;
        for w in [Int8, Int8Calibrated] {
            assert_eq!(pick(&["aarch64", "fp16", "dotprod"], w), Precision::Int8);
            assert_eq!(pick(&["x86_64", "avx2", "fma"], w), Precision::Int8);
            assert_eq!(pick(&["x86_64", "avx2", "fma", "avx512vnni"], w), Precision::Int8);
            assert_eq!(pick(&["x86_64"], w), Precision::F32);
        }
        assert_eq!(pick(&["aarch64", "fp16", "dotprod"], F32), Precision::F32);
        assert_eq!(pick(&["x86_64", "avx2", "fma"], F32), Precision::F32);
        // Without dot-product: int8 only on calibrated weights.
        assert_eq!(pick(&["aarch64", "fp16"], Int8), Precision::F32);
        assert_eq!(pick(&["aarch64"], Int8), Precision::F32);
        assert_eq!(pick(&["arm", "neon"], Int8), Precision::F32);
        assert_eq!(pick(&["aarch64"], Int8Calibrated), Precision::Int8);
        assert_eq!(pick(&["arm", "neon"], Int8Calibrated), Precision::Int8);
        assert_eq!(pick(&["arm"], Int8Calibrated), Precision::F32);
        assert_eq!(pick(&["aarch64"], F32), Precision::F32);
    }

    #[test]
    fn a_fixed_choice_wins_but_int8_needs_int8_weights() {
        let cpu = vec!["neon".to_string()];
        let d = decide(PrecisionChoice::Fixed(Precision::F16), &cpu, Weights::Int8);
        assert_eq!(d.precision, Precision::F16);
        let d = decide(PrecisionChoice::Fixed(Precision::Int8), &cpu, Weights::F32);
        assert_eq!(d.precision, Precision::F32);
        assert!(d.reason.contains("f32 weights"));
    }
}
