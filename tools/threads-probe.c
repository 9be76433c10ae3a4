// What a second thread can gain on this machine, apart from bertlite: each of two threads sums
// its own buffer (L2-, L3- and DRAM-sized), then runs a register-only AVX-512 VNNI loop; each
// is timed on one thread and on two (twice the work). Quoted in results/performance.md
// (session 25: why batch 8 gains less from the second thread).
//   gcc -O2 -mavx2 -mavx512f -mavx512bw -mavx512vnni tools/threads-probe.c -o /tmp/threads-probe -lpthread && /tmp/threads-probe
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct { float *a; size_t n; int reps; float sum; } job;

static void *sum_buffer(void *p) {
  job *j = p;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int r = 0; r < j->reps; r++)
    for (size_t i = 0; i < j->n; i += 32) {
      acc0 = _mm256_add_ps(acc0, _mm256_load_ps(j->a + i));
      acc1 = _mm256_add_ps(acc1, _mm256_load_ps(j->a + i + 8));
      acc2 = _mm256_add_ps(acc2, _mm256_load_ps(j->a + i + 16));
      acc3 = _mm256_add_ps(acc3, _mm256_load_ps(j->a + i + 24));
    }
  float o[8];
  _mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  j->sum = o[0];
  return 0;
}

static void *vnni_loop(void *p) {
  __m512i a[10], b = _mm512_set1_epi8(3), c = _mm512_set1_epi8(5);
  for (int i = 0; i < 10; i++) a[i] = _mm512_set1_epi32(i);
  for (long it = 0; it < 20000000; it++)
    for (int i = 0; i < 10; i++) a[i] = _mm512_dpbusd_epi32(a[i], b, c);
  int s = 0;
  for (int i = 0; i < 10; i++) s += _mm512_reduce_add_epi32(a[i]);
  *(int *)p = s;
  return 0;
}

// Seconds for f on one thread, and for f on each of two threads at once.
static void time_both(void *(*f)(void *), void *arg0, void *arg1, double *one, double *two) {
  double t0 = now();
  f(arg0);
  double t1 = now();
  pthread_t th[2];
  pthread_create(&th[0], 0, f, arg0);
  pthread_create(&th[1], 0, f, arg1);
  pthread_join(th[0], 0);
  pthread_join(th[1], 0);
  *one = t1 - t0;
  *two = now() - t1;
}

int main(void) {
  size_t sizes[] = {256 << 10, 4 << 20, 12 << 20, 128 << 20};
  for (int k = 0; k < 4; k++) {
    size_t bytes = sizes[k], n = bytes / 4;
    int reps = (int)((1L << 32) / bytes);
    job j[2];
    for (int t = 0; t < 2; t++) {
      j[t].a = aligned_alloc(64, bytes);
      for (size_t i = 0; i < n; i++) j[t].a[i] = 1;
      j[t].n = n;
      j[t].reps = reps;
    }
    double one, two;
    time_both(sum_buffer, &j[0], &j[1], &one, &two);
    printf("read %6zu KB per thread: 1 thread %.1f GB/s, 2 threads %.1f GB/s (x%.2f)\n", bytes >> 10,
           reps * (double)bytes / one / 1e9, 2 * reps * (double)bytes / two / 1e9, 2 * one / two);
    free(j[0].a);
    free(j[1].a);
  }
  int r[2];
  double one, two;
  time_both(vnni_loop, &r[0], &r[1], &one, &two);
  printf("VNNI in registers: 1 thread %.3f s, 2 threads (twice the work) %.3f s (x%.2f)\n", one, two,
         2 * one / two);
  return 0;
}
