/* The C API under bad input and concurrency, as firmware would call it:
 *   robustness BUNDLE [REQUESTS]
 * 1. Every entry point with bad arguments (NULL pointers, invalid UTF-8, empty texts, short
 *    arrays, tiny or NULL message buffers, absurd thread counts, a 10 MB text) returns its
 *    error value and a message naming the problem; nothing crashes or aborts.
 * 2. One handle shared by 8 pthreads answering REQUESTS (default 10000) mixed requests
 *    (classify, embed, bad input): every answer equals the single-threaded answer, bit for bit.
 * Prints one summary line; exits 1 with the failing line on stderr. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bertlite.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FAIL (line %d): ", __LINE__);                                             \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

/* rc must be -1 and err must name the problem. */
static void expect_error(int line, int rc, const char *err, const char *needle) {
    if (rc != -1 || strstr(err, needle) == NULL) {
        fprintf(stderr, "FAIL (line %d): expected -1 and \"%s\", got %d and \"%s\"\n", line, needle,
                rc, err);
        exit(1);
    }
}
#define EXPECT_ERROR(rc, needle) expect_error(__LINE__, (rc), err, (needle))

static const char *TEXTS[] = {
    "Shares in the carmaker fell 5% after it cut its profit forecast.",
    "The striker scored twice as United won the cup final.",
    "Ministers will publish the election manifesto on Monday.",
    "The film's soundtrack topped the charts in its first week.",
    "A new chip doubles the battery life of mobile phones.",
    "naïve café — 日本語 and emoji 😀",
};
#define N_TEXTS (sizeof TEXTS / sizeof TEXTS[0])
#define MAX_LABELS 64
#define MAX_DIM 4096

struct answer {
    int best;
    float probs[MAX_LABELS];
    float embedding[MAX_DIM];
};

static const bertlite_model *shared;
static struct answer expected[N_TEXTS];
static int n_labels, dim, requests_per_thread;

static void answer(const bertlite_model *m, const char *text, struct answer *a) {
    char err[256];
    a->best = bertlite_classify(m, text, a->probs, MAX_LABELS, err, sizeof err);
    if (a->best < 0) FAIL("classify: %s", err);
    if (bertlite_embed(m, text, a->embedding, MAX_DIM, err, sizeof err) != dim)
        FAIL("embed: %s", err);
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    char err[128];
    for (int i = 0; i < requests_per_thread; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t t = (seed >> 8) % N_TEXTS;
        switch ((seed >> 16) % 5) {
        case 0:
        case 1: {
            float probs[MAX_LABELS];
            int best = bertlite_classify(shared, TEXTS[t], probs, MAX_LABELS, err, sizeof err);
            if (best != expected[t].best ||
                memcmp(probs, expected[t].probs, n_labels * sizeof(float)) != 0)
                FAIL("thread answer for text %zu differs from the single-threaded one", t);
            break;
        }
        case 2:
        case 3: {
            float e[MAX_DIM];
            if (bertlite_embed(shared, TEXTS[t], e, MAX_DIM, err, sizeof err) != dim ||
                memcmp(e, expected[t].embedding, dim * sizeof(float)) != 0)
                FAIL("thread embedding for text %zu differs from the single-threaded one", t);
            break;
        }
        default: {
            float probs[MAX_LABELS];
            if (bertlite_classify(shared, " \t ", probs, MAX_LABELS, err, sizeof err) != -1 ||
                strstr(err, "empty") == NULL)
                FAIL("thread: an empty text gave no error (%s)", err);
        }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    char err[256];
    if (argc < 2) {
        fprintf(stderr, "usage: %s BUNDLE [REQUESTS]\n", argv[0]);
        return 2;
    }
    const char *bundle = argv[1];
    int requests = argc > 2 ? atoi(argv[2]) : 10000;

    /* Loading. */
    if (bertlite_load(NULL, 1, NULL, err, sizeof err) != NULL) FAIL("NULL path loaded");
    EXPECT_ERROR(-1, "path is NULL");
    if (bertlite_load("/nonexistent.blt", 1, NULL, err, sizeof err)) FAIL("missing file loaded");
    EXPECT_ERROR(-1, "cannot load /nonexistent.blt");
    if (bertlite_load("\xff\xfe.blt", 1, NULL, err, sizeof err)) FAIL("non-UTF-8 path loaded");
    EXPECT_ERROR(-1, "path is not valid UTF-8");
    if (bertlite_load(bundle, 1 << 30, NULL, err, sizeof err)) FAIL("2^30 threads accepted");
    EXPECT_ERROR(-1, "threads must be between 1 and 256");
    if (bertlite_load(bundle, -4, NULL, err, sizeof err)) FAIL("-4 threads accepted");
    EXPECT_ERROR(-1, "threads must be");
    if (bertlite_load(bundle, 1, "int4", err, sizeof err)) FAIL("precision int4 accepted");
    EXPECT_ERROR(-1, "int4");
    /* Message buffers: NULL, empty, one byte, too short (truncated, NUL-terminated). */
    if (bertlite_load(NULL, 1, NULL, NULL, 100)) FAIL("NULL path loaded (NULL err)");
    err[0] = 'x';
    if (bertlite_load(NULL, 1, NULL, err, 0) || err[0] != 'x') FAIL("err_len 0 was written");
    if (bertlite_load(NULL, 1, NULL, err, 1) || err[0] != 0) FAIL("err_len 1: not an empty string");
    memset(err, 'x', sizeof err);
    if (bertlite_load("/nonexistent.blt", 1, NULL, err, 10) || strlen(err) != 9)
        FAIL("err_len 10: message not cut to 9 bytes + NUL (%zu)", strlen(err));

    bertlite_model *m = bertlite_load(bundle, 1, NULL, err, sizeof err);
    if (!m) FAIL("load %s: %s", bundle, err);
    n_labels = bertlite_label_count(m);
    dim = bertlite_embedding_dim(m);
    if (n_labels < 1 || n_labels > MAX_LABELS || dim < 1 || dim > MAX_DIM)
        FAIL("%d labels, %d dimensions", n_labels, dim);

    /* NULL handles. */
    float probs[MAX_LABELS], e[MAX_DIM];
    EXPECT_ERROR(bertlite_classify(NULL, "text", probs, MAX_LABELS, err, sizeof err), "model is NULL");
    EXPECT_ERROR(bertlite_embed(NULL, "text", e, MAX_DIM, err, sizeof err), "model is NULL");
    if (bertlite_embedding_dim(NULL) != -1 || bertlite_label_count(NULL) != -1 ||
        bertlite_label(NULL, 0) != NULL)
        FAIL("NULL model accepted by an accessor");
    bertlite_free(NULL);

    /* Texts. */
    EXPECT_ERROR(bertlite_classify(m, NULL, probs, MAX_LABELS, err, sizeof err), "text is NULL");
    EXPECT_ERROR(bertlite_classify(m, "caf\xc3(", probs, MAX_LABELS, err, sizeof err), "not valid UTF-8");
    EXPECT_ERROR(bertlite_embed(m, "\x80", e, MAX_DIM, err, sizeof err), "not valid UTF-8");
    EXPECT_ERROR(bertlite_classify(m, "", probs, MAX_LABELS, err, sizeof err), "empty");
    EXPECT_ERROR(bertlite_embed(m, " \t\r\n ", e, MAX_DIM, err, sizeof err), "empty");
    EXPECT_ERROR(bertlite_classify(m, "\x01\x02\x7f", probs, MAX_LABELS, err, sizeof err), "empty");

    /* Output arrays. */
    EXPECT_ERROR(bertlite_classify(m, "text", NULL, MAX_LABELS, err, sizeof err), "array is NULL");
    EXPECT_ERROR(bertlite_classify(m, "text", probs, (size_t)n_labels - 1, err, sizeof err), "floats,");
    EXPECT_ERROR(bertlite_embed(m, "text", e, 0, err, sizeof err), "embedding array holds 0 floats");
    EXPECT_ERROR(bertlite_embed(m, "text", NULL, MAX_DIM, err, sizeof err), "array is NULL");
    if (bertlite_label(m, -1) != NULL || bertlite_label(m, n_labels) != NULL)
        FAIL("label index out of range answered");

    /* Task heads this bundle (a classifier) lacks, and bad arguments to them. */
    int ids[4];
    float scores[4];
    bertlite_entity ents[2];
    size_t s0, s1;
    float sc;
    EXPECT_ERROR(bertlite_fill_mask(m, "a [MASK]", 2, ids, scores, 4, err, sizeof err), "no fill-mask head");
    EXPECT_ERROR(bertlite_fill_mask(m, "a [MASK]", 0, ids, scores, 4, err, sizeof err), "k must be > 0");
    EXPECT_ERROR(bertlite_fill_mask(NULL, "a [MASK]", 2, ids, scores, 4, err, sizeof err), "model is NULL");
    EXPECT_ERROR(bertlite_entities(m, "Berlin", ents, 2, err, sizeof err), "no token-classification head");
    EXPECT_ERROR(bertlite_entities(m, NULL, ents, 2, err, sizeof err), "text is NULL");
    EXPECT_ERROR(bertlite_answer(m, "Where?", "Berlin", &s0, &s1, &sc, err, sizeof err), "no question-answering head");
    EXPECT_ERROR(bertlite_answer(m, "Where?", "Berlin", NULL, &s1, &sc, err, sizeof err), "is NULL");
    if (bertlite_next_sentence(m, "a", "b", err, sizeof err) != -1.0f || !strstr(err, "no next-sentence head"))
        FAIL("next sentence without a head: %s", err);
    if (bertlite_entity_group_count(m) != 0 || bertlite_entity_group(m, 0) != NULL)
        FAIL("entity groups of a bundle without token classification");
    char tok[8];
    if (bertlite_token(m, -1, tok, sizeof tok) != -1 || bertlite_token(m, 1 << 30, tok, sizeof tok) != -1)
        FAIL("token id out of range answered");
    if (bertlite_token(m, 101, tok, 3) != 5 || strcmp(tok, "[C") != 0) FAIL("token truncation: %s", tok);

    /* A 10 MB text (one line of words): truncated to the bundle's length, answered. */
    size_t big = 10u << 20;
    char *huge = malloc(big + 1);
    if (!huge) FAIL("malloc");
    for (size_t i = 0; i < big; i++) huge[i] = "word "[i % 5];
    huge[big] = 0;
    if (bertlite_classify(m, huge, probs, MAX_LABELS, err, sizeof err) < 0) FAIL("10 MB text: %s", err);
    free(huge);

    /* One handle, 8 threads, mixed requests, answers equal to the single-threaded ones. */
    for (size_t t = 0; t < N_TEXTS; t++) answer(m, TEXTS[t], &expected[t]);
    shared = m;
    enum { THREADS = 8 };
    requests_per_thread = (requests + THREADS - 1) / THREADS;
    pthread_t threads[THREADS];
    for (size_t i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)(i + 1))) FAIL("pthread_create");
    for (size_t i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);

    bertlite_free(m);
    printf("C API: bad input refused with messages; %d requests from %d threads, answers identical\n",
           requests_per_thread * THREADS, THREADS);
    return 0;
}
