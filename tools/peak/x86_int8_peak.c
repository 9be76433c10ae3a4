/* Peak throughput of the x86 AVX2 instruction mixes an int8 matmul can be built from, in
 * G products (MACs) per second on one core: what bounds src/gemm_i8.rs and ONNX Runtime's
 * AVX2 kernel on this machine. Independent accumulators, no loads unless stated, so each
 * line is the best a kernel of that shape can do.
 *
 *   gcc -O2 -mavx2 -mfma tools/peak/x86_int8_peak.c -o /tmp/x86_int8_peak && /tmp/x86_int8_peak
 *
 * Measured on this project's 2-core AMD EPYC (Zen 3) VM, results/performance.md. */
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define N 100000000L
#define RUN(label, macs_per_iter, body)                                                  \
    do {                                                                                 \
        double t = now();                                                                \
        for (long n = 0; n < N; n++) __asm__ volatile(body ::: "memory");                \
        double dt = now() - t;                                                           \
        printf("%-58s %6.1f G MAC/s\n", label, N * (double)(macs_per_iter) / dt / 1e9); \
    } while (0)

/* i16 x i16 -> i32 pairs, then accumulate: 16 products per vpmaddwd (the previous kernel). */
#define WD(a, acc) "vpmaddwd %%ymm1,%%ymm2,%%ymm" #a "\n vpaddd %%ymm" #a ",%%ymm" #acc ",%%ymm" #acc "\n"
/* u8 x s8 -> i16 pairs, widened by vpmaddwd against ones: ONNX Runtime's AVX2 u8s8 shape. */
#define UB(a, acc) "vpmaddubsw %%ymm1,%%ymm2,%%ymm" #a "\n vpmaddwd %%ymm0,%%ymm" #a ",%%ymm" #a "\n vpaddd %%ymm" #a ",%%ymm" #acc ",%%ymm" #acc "\n"
/* Two vpmaddubsw summed in i16 before widening: 64 products per 3 multiplies (our kernel). */
#define UB2(a, b, acc) "vpmaddubsw %%ymm1,%%ymm2,%%ymm" #a "\n vpmaddubsw %%ymm1,%%ymm2,%%ymm" #b "\n vpaddw %%ymm" #a ",%%ymm" #b ",%%ymm" #a "\n vpmaddwd %%ymm0,%%ymm" #a ",%%ymm" #a "\n vpaddd %%ymm" #a ",%%ymm" #acc ",%%ymm" #acc "\n"
#define WD_ALONE(i) "vpmaddwd %%ymm1,%%ymm2,%%ymm" #i "\n"
#define FMA(i) "vfmadd231ps %%ymm1,%%ymm2,%%ymm" #i "\n"
#define ADD(i) "vpaddd %%ymm1,%%ymm2,%%ymm" #i "\n"
#define X8(M) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)

int main(void) {
    RUN("vpmaddwd alone (no accumulation: the multiplier ports)", 8 * 16,
        X8(WD_ALONE));
    RUN("vpmaddwd + vpaddd (i16 products, the previous kernel)", 8 * 16,
        WD(3, 8) WD(4, 9) WD(5, 10) WD(6, 11) WD(7, 12) WD(3, 13) WD(4, 14) WD(5, 15));
    RUN("vpmaddubsw + vpmaddwd(ones) + vpaddd (ORT's AVX2 u8s8)", 8 * 32,
        UB(3, 8) UB(4, 9) UB(5, 10) UB(6, 11) UB(7, 12) UB(3, 13) UB(4, 14) UB(5, 15));
    RUN("2 vpmaddubsw + vpaddw + vpmaddwd + vpaddd (bertlite)", 8 * 64,
        UB2(3, 4, 8) UB2(5, 6, 9) UB2(7, 3, 10) UB2(4, 5, 11) UB2(6, 7, 12) UB2(3, 4, 13)
        UB2(5, 6, 14) UB2(7, 3, 15));
    RUN("vfmadd231ps (f32)", 8 * 8, X8(FMA));
    double t = now();
    for (long n = 0; n < N; n++) __asm__ volatile(X8(ADD) ::: "memory");
    double per_s = N * 8.0 / (now() - t);
    printf("vpaddd: %.2f G/s, i.e. a %.2f GHz clock if 4 per cycle\n", per_s / 1e9, per_s / 4e9);
    return 0;
}
