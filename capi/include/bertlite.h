/* bertlite C API: BERT text classification and embeddings from one bundle file.
 *
 * Conventions (every function):
 *   - texts are NUL-terminated UTF-8; text that is not UTF-8 is an error;
 *   - fallible functions return >= 0 on success and -1 on error, and then write a
 *     NUL-terminated message naming the problem into err (err_len bytes; err may be NULL);
 *   - output arrays belong to the caller, who passes their length;
 *   - a loaded model is read-only: it may be used from several threads at once.
 *
 * Link: -lbertlite (libbertlite.so), or libbertlite.a with -lpthread -ldl -lm.
 */
#ifndef BERTLITE_H
#define BERTLITE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct BertliteModel bertlite_model;

/* The library's version, e.g. "0.1.0" (static). */
const char *bertlite_version(void);

/* Loads a bundle (.blt). threads: threads for the matrix multiplies, 0 = one per core.
 * precision: NULL or "auto", "f32", "f16", "int8". Returns NULL on error. */
bertlite_model *bertlite_load(const char *path, int threads, const char *precision,
                              char *err, size_t err_len);

/* Frees a model; NULL is a no-op. */
void bertlite_free(bertlite_model *model);

/* Length of an embedding (the model's hidden size); -1 for NULL. */
int bertlite_embedding_dim(const bertlite_model *model);

/* Number of labels of the classification head; 0 if the bundle has none, -1 for NULL. */
int bertlite_label_count(const bertlite_model *model);

/* Label `index`, in the order of bertlite_classify's probabilities; NULL if out of range.
 * Owned by the model. */
const char *bertlite_label(const bertlite_model *model, int index);

/* Classifies text: writes each label's probability (label order) into probs
 * (probs_len >= bertlite_label_count) and returns the index of the most probable label,
 * or -1 on error (empty text, bundle without a head, short array, ...). */
int bertlite_classify(const bertlite_model *model, const char *text, float *probs,
                      size_t probs_len, char *err, size_t err_len);

/* Writes text's pooled embedding into out (out_len >= bertlite_embedding_dim) and returns
 * the number of floats written, or -1 on error. */
int bertlite_embed(const bertlite_model *model, const char *text, float *out, size_t out_len,
                   char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* BERTLITE_H */
