/*
 * A QEMU TCG plugin that counts guest instructions executed, for comparing the cost of an
 * inference deterministically under qemu-user (wall time under emulation says nothing).
 *
 * Debian ships qemu-user with plugin support (-plugin) but neither the plugin headers nor the
 * sample plugins, so the few entry points used here are declared below, as documented in QEMU's
 * include/qemu/qemu-plugin.h (API version 1, QEMU 7.x; the calls used are unchanged since 4.2).
 *
 * Counting is inline (one add per translated block executed), so the emulation stays fast.
 * Options (QEMU_PLUGIN="file=...,OPTION"):
 *  - atomic=on: the inline add is not atomic, and qemu-user runs guest threads in parallel, so
 *    with several guest threads increments are lost; this counts through a callback per block
 *    that adds atomically (slower, exact with threads).
 *  - profile=PATH: also counts each translated block on its own and writes "vaddr insns count"
 *    lines to PATH at exit (cross/insn-profile.sh maps them to functions). Per-block counters
 *    are inline too, or atomic with atomic=on (for profiles of several guest threads).
 * Prints "insns: N" to stderr at exit.
 */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One counter for all vCPUs (exact with several guest threads only in atomic mode). */
static uint64_t insns;
static int atomic_mode;

/* profile=PATH: one counter per translated block, each in its own cell (qemu keeps its
 * address), listed in `blocks`. */
static const char *profile_path;
typedef struct {
    uint64_t vaddr, n, count;
} block;
static block **blocks;
static size_t n_blocks, cap_blocks;

static void tb_exec_atomic(unsigned int vcpu_index, void *userdata) {
    (void)vcpu_index;
    __atomic_fetch_add(&insns, (uint64_t)(uintptr_t)userdata, __ATOMIC_RELAXED);
}

static void block_exec_atomic(unsigned int vcpu_index, void *userdata) {
    (void)vcpu_index;
    __atomic_fetch_add(&((block *)userdata)->count, 1, __ATOMIC_RELAXED);
}

static void profile_block(struct qemu_plugin_tb *tb, size_t n) {
    if (n_blocks == cap_blocks) {
        cap_blocks = cap_blocks ? cap_blocks * 2 : 65536;
        blocks = realloc(blocks, cap_blocks * sizeof *blocks);
        if (!blocks) abort();
    }
    block *b = malloc(sizeof *b);
    if (!b) abort();
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n = n;
    b->count = 0;
    blocks[n_blocks++] = b;
    if (atomic_mode)
        qemu_plugin_register_vcpu_tb_exec_cb(tb, block_exec_atomic, QEMU_PLUGIN_CB_NO_REGS, b);
    else
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (atomic_mode) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec_atomic, QEMU_PLUGIN_CB_NO_REGS,
                                             (void *)(uintptr_t)n);
    } else {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
    }
    if (profile_path) profile_block(tb, n);
}

static void at_exit(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    fprintf(stderr, "insns: %llu\n", (unsigned long long)insns);
    if (!profile_path) return;
    FILE *f = fopen(profile_path, "w");
    if (!f) {
        fprintf(stderr, "insn_count: cannot write %s\n", profile_path);
        return;
    }
    for (size_t i = 0; i < n_blocks; i++) {
        const block *b = blocks[i];
        if (b->count)
            fprintf(f, "%llx %llu %llu\n", (unsigned long long)b->vaddr,
                    (unsigned long long)b->n, (unsigned long long)b->count);
    }
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "atomic=on") == 0) atomic_mode = 1;
        if (strncmp(argv[i], "profile=", 8) == 0) profile_path = argv[i] + 8;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
