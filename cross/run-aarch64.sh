#!/usr/bin/env bash
# Cargo runner for aarch64 under qemu-user. QEMU_CPU picks the board:
#   cortex-a72 (default): Raspberry Pi 4, close to Jetson Nano's A57 — NEON, no dotprod, no fp16
#   cortex-a76: Raspberry Pi 5, closest to Jetson Orin's A78AE — dotprod and fp16
# qemu does not emulate /proc/cpuinfo, so tract cannot see fp16 there: set TRACT_CPU_ISA=+fp16
# yourself on an A76 model to exercise the fp16 kernels (real boards detect it).
exec qemu-aarch64 -cpu "${QEMU_CPU:-cortex-a72}" -L /usr/aarch64-linux-gnu "$@"
