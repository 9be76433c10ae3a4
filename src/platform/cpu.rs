//! What this CPU can do, detected once: the one place the kernels, the graph rewrites and the
//! precision choice ask.

use std::sync::OnceLock;

/// The instruction-set features our own kernels use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// x86_64 AVX2 and FMA (the u8 × s8 int8 kernel, the fused attention and LayerNorm).
    pub avx2_fma: bool,
    /// x86_64 AVX-512 F, BW and VNNI (`vpdpbusd`: the int8 kernel where the CPU has it).
    pub avx512_vnni: bool,
    /// aarch64 dot-product instructions (SDOT: Cortex-A76/A78, Pi 5, Jetson Orin).
    pub dotprod: bool,
    /// aarch64 (NEON is part of the base architecture there).
    pub aarch64: bool,
}

/// The features of the CPU this process runs on.
pub fn features() -> Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    *FEATURES.get_or_init(detect)
}

fn detect() -> Features {
    #[cfg(target_arch = "x86_64")]
    {
        Features {
            avx2_fma: std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"),
            avx512_vnni: std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni"),
            ..Features::default()
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        Features {
            dotprod: std::arch::is_aarch64_feature_detected!("dotprod"),
            aarch64: true,
            ..Features::default()
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Features::default()
    }
}

/// Every CPU feature tract detected on this machine (e.g. `neon`, `dotprod`, `fp16`,
/// `avx512`): what the precision choice and `bertlite info` read.
pub fn isa_names() -> Vec<String> {
    tract_linalg::isa::native().iter().map(|isa| isa.name().to_owned()).collect()
}
