/*
 * A QEMU TCG plugin that counts, per translated block, how often it ran: with the block's
 * address and size, cross/insn-profile.sh turns two runs into instructions per inference by
 * function (which part of an inference costs what on a board's CPU).
 *
 * Declarations as in insn_count.c (Debian ships no plugin headers). Writes "vaddr insns count"
 * lines to $PROF_OUT (default /tmp/prof.txt) at exit. One counter per block, shared by
 * threads: profile with --threads 1.
 */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
typedef struct { uint64_t vaddr, n, count; } blk;
static blk **blks; static size_t nb, cap;
static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  if (nb == cap) {
    cap = cap ? cap * 2 : 65536;
    blks = realloc(blks, cap * sizeof(blk *));
    if (!blks) abort();
  }
  /* Each block's counter lives in its own cell: qemu keeps its address. */
  blk *b = malloc(sizeof *b);
  if (!b) abort();
  b->vaddr = qemu_plugin_tb_vaddr(tb);
  b->n = qemu_plugin_tb_n_insns(tb);
  b->count = 0;
  blks[nb++] = b;
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
}
static void at_exit(qemu_plugin_id_t id, void *u) {
  (void)id; (void)u;
  FILE *f = fopen(getenv("PROF_OUT") ? getenv("PROF_OUT") : "/tmp/prof.txt", "w");
  if (!f) return;
  for (size_t i = 0; i < nb; i++) { blk *b = blks[i]; if (b->count) fprintf(f, "%lx %lu %lu\n", b->vaddr, b->n, b->count); }
  fclose(f);
}
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info; (void)argc; (void)argv;
  qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
  qemu_plugin_register_atexit_cb(id, at_exit, NULL);
  return 0;
}
