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
    /// x86_64 AVX-512 F (the fused attention's 16-wide tiles).
    pub avx512f: bool,
    /// aarch64 dot-product instructions (SDOT: Cortex-A76/A78, Pi 5, Jetson Orin).
    pub dotprod: bool,
    /// aarch64 (NEON is part of the base architecture there).
    pub aarch64: bool,
    /// 32-bit ARM with NEON and VFPv4 (fused multiply-add): every Pi that runs armv7 Pi OS
    /// (Cortex-A7 on, in AArch32).
    pub arm_neon: bool,
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
            avx512f: std::arch::is_x86_feature_detected!("avx512f"),
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
    #[cfg(target_arch = "arm")]
    {
        Features { arm_neon: arm_hwcap::neon_vfpv4(), ..Features::default() }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")))]
    {
        Features::default()
    }
}

/// Every CPU feature tract detected on this machine (e.g. `neon`, `dotprod`, `fp16`,
/// `avx512`): what the precision choice and `bertlite info` read.
pub fn isa_names() -> Vec<String> {
    tract_linalg::isa::native().iter().map(|isa| isa.name().to_owned()).collect()
}

/// The kernel's hardware capabilities for this process (`AT_HWCAP` in `/proc/self/auxv`,
/// what `getauxval` reads): unlike `/proc/cpuinfo`, qemu-user emulates it.
#[cfg(target_arch = "arm")]
mod arm_hwcap {
    const AT_HWCAP: u32 = 16;
    const HWCAP_NEON: u32 = 1 << 12;
    const HWCAP_VFPV4: u32 = 1 << 16;

    pub(super) fn neon_vfpv4() -> bool {
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let hwcap = auxv
            .chunks_exact(8)
            .find(|entry| word(&entry[..4]) == AT_HWCAP)
            .map_or(0, |entry| word(&entry[4..]));
        let want = HWCAP_NEON | HWCAP_VFPV4;
        hwcap & want == want
    }
}

#[cfg(test)]
mod tests {
    /// Under qemu's Cortex-A15 (NEON, VFPv4: how CI runs the armv7 tests), the armv7 kernels
    /// must be found, or their tests would only check the fallbacks.
    #[test]
    #[cfg(target_arch = "arm")]
    fn armv7_kernels_found_on_a_cortex_a15() {
        if std::env::var("QEMU_CPU").is_ok_and(|cpu| cpu == "cortex-a15") {
            assert!(super::features().arm_neon, "NEON + VFPv4 not detected");
        }
    }
}
