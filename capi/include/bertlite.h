/* bertlite C API: BERT text classification, embeddings and task heads from one bundle file.
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

/* ---- Task heads (bundles compiled from BertForMaskedLM / PreTraining / TokenClassification /
 * QuestionAnswering checkpoints; `bertlite info` lists a bundle's heads). Without the head a
 * function needs, it returns -1 with a message naming the heads the bundle has. */

/* Fill-mask: for each [MASK] in text (text order), the k most likely token ids and their
 * probabilities, best first: mask i's candidates are ids[i*k .. i*k+k-1] and the same range of
 * scores (both arrays hold len values). Returns the number of masks, or -1 (no [MASK] in the
 * text, arrays shorter than masks * k, ...). */
int bertlite_fill_mask(const bertlite_model *model, const char *text, int k, int *ids,
                       float *scores, size_t len, char *err, size_t err_len);

/* Writes token id's string ("london", "##s") into out (out_len bytes, NUL-terminated, truncated
 * if needed) and returns its full length in bytes; -1 if id is outside the vocabulary. */
int bertlite_token(const bertlite_model *model, int id, char *out, size_t out_len);

/* One named entity: group indexes bertlite_entity_group; start/end are BYTE offsets into the
 * text (the entity is text[start, end)); score is its tokens' mean tag probability. */
typedef struct bertlite_entity {
    int group;
    float score;
    size_t start;
    size_t end;
} bertlite_entity;

/* Named entities (BIO tags grouped as Hugging Face's "simple" aggregation, O dropped): writes
 * up to len into out and returns how many there are (call again with a larger array if that
 * is more than len), or -1. */
int bertlite_entities(const bertlite_model *model, const char *text, bertlite_entity *out,
                      size_t len, char *err, size_t err_len);

/* Number of entity groups ("PER", "LOC", ...) of the token-classification head; 0 without one,
 * -1 for NULL. */
int bertlite_entity_group_count(const bertlite_model *model);

/* Entity group index; NULL if out of range. Owned by the model. */
const char *bertlite_entity_group(const bertlite_model *model, int index);

/* Question answering: the best answer span, context[*start, *end) in BYTES, and its score.
 * Long contexts are read in 384-token windows sharing 128 tokens. Returns 0, or -1. */
int bertlite_answer(const bertlite_model *model, const char *question, const char *context,
                    size_t *start, size_t *end, float *score, char *err, size_t err_len);

/* Next-sentence prediction: the probability that b follows a, or -1 on error. */
float bertlite_next_sentence(const bertlite_model *model, const char *a, const char *b,
                             char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* BERTLITE_H */
