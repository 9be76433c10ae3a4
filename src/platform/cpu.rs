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
    /// x86_64 AMX-TILE and AMX-INT8 (`tdpbusd`), granted to this process by the OS, with
    /// everything [`Features::avx512_vnni`] says (the AMX kernel's epilogue and tails).
    pub amx_int8: bool,
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
        let avx512_vnni = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni");
        Features {
            amx_int8: avx512_vnni && amx::int8() && amx::granted(),
            avx2_fma: std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"),
            avx512_vnni,
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

/// AMX: whether the CPU has it, and the process's permission to use it.
#[cfg(target_arch = "x86_64")]
mod amx {
    /// CPUID leaf 7's AMX-TILE (EDX bit 24) and AMX-INT8 (bit 25). `is_x86_feature_detected!`
    /// does not take AMX's names on stable Rust.
    pub(super) fn int8() -> bool {
        // Leaf 7 exists where leaf 0 says so.
        let max = std::arch::x86_64::__cpuid(0).eax;
        if max < 7 {
            return false;
        }
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        let want = (1 << 24) | (1 << 25);
        edx & want == want
    }

    /// Asks Linux for AMX's tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
    /// XFEATURE_XTILEDATA)`): without it the first tile instruction kills the process with
    /// SIGILL. The permission is the whole process's, asked once (`features` is cached).
    /// Refused (a kernel before 5.16, or a C host whose alternate signal stack is too small
    /// for the 8 KB of tile state: ENOSPC), the VNNI kernel runs instead.
    #[cfg(target_os = "linux")]
    pub(super) fn granted() -> bool {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: a system call that only sets a permission; it clobbers rcx and r11, and
        // returns 0 or a negative errno (EINVAL on a kernel without AMX support).
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            )
        };
        ret == 0
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn granted() -> bool {
        false
    }
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
