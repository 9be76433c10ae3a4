/* Classifies each argument after the bundle with the bertlite C API and prints one JSON line
 * per text (label, score) like `bertlite classify --json`; then checks the API's errors.
 *   cc classify.c -I../include -L<target>/release -lbertlite -o classify
 *   ./classify minilm-bbc.blt "Shares fell after the profit warning." */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bertlite.h"

int main(int argc, char **argv) {
    char err[256];
    if (argc < 3) {
        fprintf(stderr, "usage: %s BUNDLE TEXT...\n", argv[0]);
        return 2;
    }
    bertlite_model *model = bertlite_load(argv[1], 1, NULL, err, sizeof err);
    if (!model) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    int n_labels = bertlite_label_count(model);
    int dim = bertlite_embedding_dim(model);
    float *probs = calloc(n_labels > 0 ? n_labels : 1, sizeof(float));
    float *embedding = calloc(dim, sizeof(float));
    int status = 0;
    for (int i = 2; i < argc; i++) {
        int best = bertlite_classify(model, argv[i], probs, n_labels, err, sizeof err);
        if (best < 0) {
            fprintf(stderr, "error: %s\n", err);
            status = 1;
            continue;
        }
        int written = bertlite_embed(model, argv[i], embedding, dim, err, sizeof err);
        if (written != dim) {
            fprintf(stderr, "error: %s\n", err);
            status = 1;
            continue;
        }
        printf("{\"label\":\"%s\",\"score\":%.6f,\"embedding0\":%.6f}\n",
               bertlite_label(model, best), probs[best], embedding[0]);
    }
    free(probs);
    free(embedding);
    bertlite_free(model);
    return status;
}
