/* The task heads from C: fill-mask, named entities, question answering.
 *
 *   tasks PRETRAINING.blt NER.blt QA.blt
 *
 * Prints one line per answer; exits 1 with a message on any error. */
#include <stdio.h>
#include <stdlib.h>

#include "bertlite.h"

#define K 5

static bertlite_model *load(const char *path) {
    char err[512];
    bertlite_model *m = bertlite_load(path, 1, NULL, err, sizeof err);
    if (!m) {
        fprintf(stderr, "error: %s\n", err);
        exit(1);
    }
    return m;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PRETRAINING.blt NER.blt QA.blt\n", argv[0]);
        return 2;
    }
    char err[512], token[64];
    bertlite_model *mlm = load(argv[1]);
    const char *text = "where are you from? i'm from [MASK].";
    int ids[2 * K];
    float scores[2 * K];
    int masks = bertlite_fill_mask(mlm, text, K, ids, scores, 2 * K, err, sizeof err);
    if (masks < 0) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    for (int i = 0; i < masks * K; i++) {
        bertlite_token(mlm, ids[i], token, sizeof token);
        printf("fill-mask %d %s %.6f\n", ids[i], token, scores[i]);
    }
    /* A head the bundle lacks is a message, not a crash. */
    bertlite_entity none[1];
    if (bertlite_entities(mlm, "Berlin", none, 1, err, sizeof err) != -1) return 1;
    printf("no-head %s\n", err);
    bertlite_free(mlm);

    bertlite_model *ner = load(argv[2]);
    const char *sentence = "Apple's CEO Tim Cook visited Zürich on Monday.";
    bertlite_entity entities[32];
    int n = bertlite_entities(ner, sentence, entities, 32, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    for (int i = 0; i < n && i < 32; i++) {
        const bertlite_entity *e = &entities[i];
        printf("entity %s %.*s %zu %zu %.6f\n", bertlite_entity_group(ner, e->group),
               (int)(e->end - e->start), sentence + e->start, e->start, e->end, e->score);
    }
    bertlite_free(ner);

    bertlite_model *qa = load(argv[3]);
    const char *context = "Hugging Face is based in New York City.";
    size_t start, end;
    float score;
    if (bertlite_answer(qa, "Where is it based?", context, &start, &end, &score, err,
                        sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    printf("answer %.*s %zu %zu %.6f\n", (int)(end - start), context + start, start, end, score);
    bertlite_free(qa);
    return 0;
}
