//! Compile-time helpers for hand-vectorized loops.

/// Runs `$body` compiled for AVX2 + FMA when the CPU has them (the default x86_64 target is
/// SSE2 only), else as plain code; NEON is the aarch64 baseline, so there it vectorizes as is.
macro_rules! simd_dispatch {
    ($vis:vis $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                if crate::platform::cpu::features().avx2_fma {
                    // SAFETY: both features are present.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
