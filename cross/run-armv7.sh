#!/usr/bin/env bash
# Cargo runner for armv7 (32-bit Raspberry Pi OS) under qemu-user, Cortex-A15 (NEON, VFPv4).
# qemu does not emulate /proc/cpuinfo, so tract would not see NEON: tell it, as a real Pi's
# kernel would.
export TRACT_CPU_ARM32_NEON=${TRACT_CPU_ARM32_NEON:-true}
exec qemu-arm -cpu "${QEMU_CPU:-cortex-a15}" -L /usr/arm-linux-gnueabihf "$@"
