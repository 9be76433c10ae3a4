//! The C API: load a bundle, classify and embed texts. The header is `include/bertlite.h`;
//! `capi/README.md` shows how to build and link it.
//!
//! Conventions, the same for every function:
//! - Texts are NUL-terminated UTF-8. A text that is not UTF-8 is an error, never a panic.
//! - Fallible functions return 0 (or a count/index ≥ 0) on success and -1 on error, and then
//!   write a NUL-terminated message naming the problem into `err` (`err_len` bytes, truncated
//!   on a character boundary; `err` may be NULL).
//! - Output arrays are the caller's; their length is passed, and a too-short array is an error.
//! - A `bertlite_model` is read-only once loaded: one may be used from several threads at once.
//!
//! Nothing here panics on input, and a panic that would happen anyway (a bug) is caught and
//! reported as an error rather than unwinding into C. That needs `panic = "unwind"`, which the
//! release profile has; a build with `panic = "abort"` (the `board` profile of the CLI) would
//! turn any bug into an abort of the host program, so it is refused at compile time.

#[cfg(panic = "abort")]
compile_error!(
    "the C library needs panic = \"unwind\" to turn a panic into an error code: build it with \
     --release (not --profile board)"
);

use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use runtime::{EncoderOptions, Model, PrecisionChoice, Task};

/// An opaque loaded model (`bertlite_model` in C).
pub struct BertliteModel {
    model: Model,
    /// The head's labels as C strings, in the head's order (empty without a head).
    labels: Vec<CString>,
    /// The token-classification head's entity groups (tags without `B-`/`I-`, `O` left out),
    /// in first-seen order: what `bertlite_entity.group` indexes.
    groups: Vec<CString>,
}

/// One entity found by `bertlite_entities` (`bertlite_entity` in C).
#[repr(C)]
pub struct BertliteEntity {
    /// Index of the entity group, for `bertlite_entity_group`.
    pub group: c_int,
    /// Mean probability of its tokens' tags.
    pub score: f32,
    /// Byte offsets into the text: the entity is `text[start..end]`.
    pub start: usize,
    pub end: usize,
}

/// Runs `f`, turning its error or a panic into -1 and a message in `err`.
fn guarded(err: *mut c_char, err_len: usize, f: impl FnOnce() -> Result<c_int, String>) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("internal error (a bug in bertlite: please report it)".into()));
    match outcome {
        Ok(v) => {
            write_message(err, err_len, "");
            v
        }
        Err(message) => {
            write_message(err, err_len, &message);
            -1
        }
    }
}

/// Copies `message` into the caller's buffer, truncated on a character boundary, NUL-terminated.
fn write_message(err: *mut c_char, err_len: usize, message: &str) {
    if err.is_null() || err_len == 0 {
        return;
    }
    let mut n = message.len().min(err_len - 1);
    while !message.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: the caller promises `err` holds `err_len` bytes; n + 1 ≤ err_len.
    unsafe {
        ptr::copy_nonoverlapping(message.as_ptr(), err as *mut u8, n);
        *err.add(n) = 0;
    }
}

/// A borrowed C string as UTF-8, or an error naming `what`.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, String> {
    if s.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-null and NUL-terminated (the caller's contract).
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|e| format!("{what} is not valid UTF-8: {e}"))
}

/// The model behind a handle, or an error if it is NULL.
///
/// # Safety
/// `model` is NULL or a pointer returned by [`bertlite_load`] and not yet freed.
unsafe fn model<'a>(model: *const BertliteModel) -> Result<&'a BertliteModel, String> {
    // SAFETY: see above.
    unsafe { model.as_ref() }.ok_or_else(|| "model is NULL".to_string())
}

/// The pooled embedding of a C text: what classify and embed both start from.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string.
unsafe fn embed_text(m: &BertliteModel, text: *const c_char) -> Result<Vec<f32>, String> {
    // SAFETY: see above.
    let text = unsafe { self::text(text, "text") }?;
    m.model.embed(text).map_err(|e| e.to_string())
}

/// Copies `values` into the caller's array of `len` floats.
fn write_floats(values: &[f32], out: *mut f32, len: usize, what: &str) -> Result<(), String> {
    if out.is_null() {
        return Err(format!("{what} array is NULL"));
    }
    if len < values.len() {
        return Err(format!("{what} array holds {len} floats, {} are needed", values.len()));
    }
    // SAFETY: the caller promises `out` holds `len` ≥ values.len() floats.
    unsafe { ptr::copy_nonoverlapping(values.as_ptr(), out, values.len()) };
    Ok(())
}

/// The library's version, e.g. "0.1.0" (static; do not free).
#[unsafe(no_mangle)]
pub extern "C" fn bertlite_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// Loads a bundle. `threads` is the number of threads for the matrix multiplies (0: one per
/// core; at most 256, more is an error); `precision` is NULL or "auto", "f32", "f16", "int8". Returns NULL on error.
///
/// # Safety
/// `path` and `precision` are NULL or NUL-terminated; `err` is NULL or holds `err_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_load(
    path: *const c_char,
    threads: c_int,
    precision: *const c_char,
    err: *mut c_char,
    err_len: usize,
) -> *mut BertliteModel {
    let mut loaded = None;
    guarded(err, err_len, || {
        // SAFETY: the caller's contract.
        let path = unsafe { text(path, "path") }?;
        let precision = match precision.is_null() {
            true => PrecisionChoice::Auto,
            // SAFETY: the caller's contract.
            false => unsafe { text(precision, "precision") }?
                .parse()
                .map_err(|e: runtime::Error| e.to_string())?,
        };
        let threads = match usize::try_from(threads) {
            Ok(0) => runtime::default_threads(),
            Ok(n) => n,
            Err(_) => return Err(format!("threads must be ≥ 0, got {threads}")),
        };
        let model = Model::load_with(path, EncoderOptions { threads, precision })
            .map_err(|e| format!("cannot load {path}: {e}"))?;
        let labels = model
            .head()
            .map(|h| h.info.labels.iter().map(|l| c_string(l)).collect())
            .unwrap_or_default();
        let mut groups: Vec<CString> = Vec::new();
        let tags = model.metadata().tasks.iter().filter(|t| t.task == Task::TokenClassification);
        for tag in tags.flat_map(|t| &t.labels) {
            let group = c_string(tag.strip_prefix("B-").or(tag.strip_prefix("I-")).unwrap_or(tag));
            if group.as_bytes() != b"O" && !groups.contains(&group) {
                groups.push(group);
            }
        }
        loaded = Some(Box::new(BertliteModel { model, labels, groups }));
        Ok(0)
    });
    loaded.map_or(ptr::null_mut(), Box::into_raw)
}

/// A label as a C string (a NUL inside a label, impossible from the host tool, becomes U+FFFD).
fn c_string(label: &str) -> CString {
    CString::new(label.replace('\0', "\u{fffd}")).unwrap_or_default()
}

/// Frees a model (NULL is a no-op).
///
/// # Safety
/// `model` is NULL or a pointer from [`bertlite_load`], freed at most once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_free(model: *mut BertliteModel) {
    if !model.is_null() {
        // SAFETY: it came from Box::into_raw in bertlite_load (the caller's contract).
        drop(unsafe { Box::from_raw(model) });
    }
}

/// The embedding's length (the model's hidden size), or -1 for a NULL model.
///
/// # Safety
/// `model` is NULL or a live pointer from [`bertlite_load`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_embedding_dim(model: *const BertliteModel) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { model.as_ref() }.map_or(-1, |m| m.model.encoder().hidden() as c_int)
}

/// How many labels the bundle's classification head has (0 without a head; -1 for NULL).
///
/// # Safety
/// `model` is NULL or a live pointer from [`bertlite_load`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_label_count(model: *const BertliteModel) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { model.as_ref() }.map_or(-1, |m| m.labels.len() as c_int)
}

/// Entry `index` of one of the model's string lists (`pick`), or NULL for a NULL model or an
/// index out of range. Owned by the model.
///
/// # Safety
/// `model` is NULL or a live pointer from [`bertlite_load`].
unsafe fn c_str_at(
    model: *const BertliteModel,
    index: c_int,
    pick: impl Fn(&BertliteModel) -> &[CString],
) -> *const c_char {
    // SAFETY: the caller's contract.
    let s = unsafe { model.as_ref() }
        .and_then(|m| usize::try_from(index).ok().and_then(|i| pick(m).get(i)));
    s.map_or(ptr::null(), |s| s.as_ptr())
}

/// Label `index` (in the head's order, the order of `bertlite_classify`'s probabilities), or
/// NULL if out of range. Owned by the model: valid until `bertlite_free`.
///
/// # Safety
/// `model` is NULL or a live pointer from [`bertlite_load`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_label(
    model: *const BertliteModel,
    index: c_int,
) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { c_str_at(model, index, |m| &m.labels) }
}

/// Classifies `text`: writes every label's probability, in label order, into `probs`
/// (`probs_len` ≥ `bertlite_label_count`) and returns the index of the most probable label,
/// or -1 on error (empty text, no head, ...).
///
/// # Safety
/// `model` is a live pointer from [`bertlite_load`] (or NULL: an error); `text` is
/// NUL-terminated; `probs` holds `probs_len` floats; `err` is NULL or holds `err_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_classify(
    model: *const BertliteModel,
    text: *const c_char,
    probs: *mut f32,
    probs_len: usize,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    guarded(err, err_len, || {
        // SAFETY: the caller's contract.
        let m = unsafe { self::model(model) }?;
        let head = m.model.head().ok_or(
            "this bundle has no classification head (compile it with --train FILE)".to_string(),
        )?;
        // SAFETY: the caller's contract.
        let p = head.probabilities(&unsafe { embed_text(m, text) }?);
        write_floats(&p, probs, probs_len, "probabilities")?;
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
        Ok(best as c_int)
    })
}

/// Writes `text`'s pooled embedding (as the bundle's pooling and normalization say) into `out`
/// (`out_len` ≥ `bertlite_embedding_dim`). Returns the number of floats written, or -1.
///
/// # Safety
/// As [`bertlite_classify`], with `out` holding `out_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_embed(
    model: *const BertliteModel,
    text: *const c_char,
    out: *mut f32,
    out_len: usize,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    guarded(err, err_len, || {
        // SAFETY: the caller's contract.
        let embedding = unsafe { embed_text(self::model(model)?, text) }?;
        write_floats(&embedding, out, out_len, "embedding")?;
        Ok(embedding.len() as c_int)
    })
}

/// Byte offset of character `chars` in `text` (its length if past the end).
fn byte_offset(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i)
}

/// Fill-mask: for each `[MASK]` in `text`, in text order, the `k` most likely token ids and
/// their probabilities, best first: mask `i`'s candidates are `ids[i*k .. (i+1)*k]` and
/// `scores[i*k .. (i+1)*k]` (`len` entries each). Returns the number of masks, or -1 (no mask
/// in the text, no fill-mask head, arrays too short, ...). `bertlite_token` gives the strings.
///
/// # Safety
/// As [`bertlite_classify`], with `ids` and `scores` holding `len` values each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_fill_mask(
    model: *const BertliteModel,
    text: *const c_char,
    k: c_int,
    ids: *mut c_int,
    scores: *mut f32,
    len: usize,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    guarded(err, err_len, || {
        // SAFETY: the caller's contract.
        let (m, text) = unsafe { (self::model(model)?, self::text(text, "text")?) };
        let k =
            usize::try_from(k).ok().filter(|&k| k > 0).ok_or(format!("k must be > 0, got {k}"))?;
        let masks = m.model.fill_mask(text, k).map_err(|e| e.to_string())?;
        let k_found = masks.first().map_or(0, Vec::len);
        let found: Vec<f32> = masks.iter().flatten().map(|p| p.score).collect();
        if ids.is_null() {
            return Err("ids array is NULL".into());
        }
        write_floats(&found, scores, len, "scores")?;
        // Every mask has the same number of candidates (min(k, vocabulary)).
        for (i, p) in masks.iter().flatten().enumerate() {
            // SAFETY: write_floats checked len ≥ found.len(); `ids` holds `len` values.
            unsafe { *ids.add(i) = p.token as c_int };
        }
        debug_assert!(masks.iter().all(|m| m.len() == k_found));
        Ok(masks.len() as c_int)
    })
}

/// Writes token `id`'s string (e.g. "london", "##s") into `out` (`out_len` bytes, NUL-terminated,
/// truncated on a character boundary) and returns its full length in bytes, or -1 if `id` is
/// outside the vocabulary.
///
/// # Safety
/// `model` is NULL or a live pointer from [`bertlite_load`]; `out` holds `out_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_token(
    model: *const BertliteModel,
    id: c_int,
    out: *mut c_char,
    out_len: usize,
) -> c_int {
    // SAFETY: the caller's contract.
    let Some(m) = (unsafe { model.as_ref() }) else { return -1 };
    let token = u32::try_from(id).ok().and_then(|id| m.model.tokenizer().token(id));
    match token {
        Some(t) => {
            write_message(out, out_len, t);
            t.len() as c_int
        }
        None => -1,
    }
}

/// Named entities in `text` (token-classification head): writes up to `len` of them into
/// `out`, returns how many were found (possibly more than `len`: call again with a larger
/// array), or -1.
///
/// # Safety
/// As [`bertlite_classify`], with `out` holding `len` entities (NULL if `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_entities(
    model: *const BertliteModel,
    text: *const c_char,
    out: *mut BertliteEntity,
    len: usize,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    guarded(err, err_len, || {
        // SAFETY: the caller's contract.
        let (m, text) = unsafe { (self::model(model)?, self::text(text, "text")?) };
        let entities = m.model.entities(text).map_err(|e| e.to_string())?;
        if out.is_null() && len > 0 {
            return Err("entities array is NULL".into());
        }
        for (i, e) in entities.iter().take(len).enumerate() {
            let group = c_string(&e.entity_group);
            let group = m.groups.iter().position(|g| *g == group).map_or(-1, |g| g as c_int);
            let entity = BertliteEntity {
                group,
                score: e.score,
                start: byte_offset(text, e.start),
                end: byte_offset(text, e.end),
            };
            // SAFETY: i < len, and `out` holds `len` entities.
            unsafe { out.add(i).write(entity) };
        }
        Ok(entities.len() as c_int)
    })
}

/// Number of entity groups of the token-classification head (0 without one; -1 for NULL).
///
/// # Safety
/// `model` is NULL or a live pointer from [`bertlite_load`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_entity_group_count(model: *const BertliteModel) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { model.as_ref() }.map_or(-1, |m| m.groups.len() as c_int)
}

/// Entity group `index` ("PER", "LOC", ...), or NULL if out of range. Owned by the model.
///
/// # Safety
/// `model` is NULL or a live pointer from [`bertlite_load`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_entity_group(
    model: *const BertliteModel,
    index: c_int,
) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { c_str_at(model, index, |m| &m.groups) }
}

/// Question answering: the best answer to `question` in `context`, as byte offsets
/// `context[*start .. *end]` and its score. Returns 0, or -1 (empty question or context, no
/// question-answering head, ...).
///
/// # Safety
/// As [`bertlite_classify`]; `question` and `context` are NUL-terminated; `start`, `end` and
/// `score` point to writable values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_answer(
    model: *const BertliteModel,
    question: *const c_char,
    context: *const c_char,
    start: *mut usize,
    end: *mut usize,
    score: *mut f32,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    guarded(err, err_len, || {
        // SAFETY: the caller's contract.
        let (m, q, c) = unsafe {
            (self::model(model)?, text(question, "question")?, text(context, "context")?)
        };
        if start.is_null() || end.is_null() || score.is_null() {
            return Err("start, end or score is NULL".into());
        }
        let a = m.model.answer(q, c).map_err(|e| e.to_string())?;
        // SAFETY: non-null, writable (the caller's contract).
        unsafe {
            *start = byte_offset(c, a.start);
            *end = byte_offset(c, a.end);
            *score = a.score;
        }
        Ok(0)
    })
}

/// Next-sentence prediction: the probability that `b` follows `a` (IsNext), or -1 on error
/// (a negative value is never a probability).
///
/// # Safety
/// As [`bertlite_classify`]; `a` and `b` are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bertlite_next_sentence(
    model: *const BertliteModel,
    a: *const c_char,
    b: *const c_char,
    err: *mut c_char,
    err_len: usize,
) -> f32 {
    let mut p = -1.0;
    guarded(err, err_len, || {
        // SAFETY: the caller's contract.
        let (m, a, b) = unsafe { (self::model(model)?, text(a, "a")?, text(b, "b")?) };
        let c = m.model.next_sentence(a, b).map_err(|e| e.to_string())?;
        p = c.scores.iter().find(|(l, _)| l == "IsNext").map_or(0.0, |s| s.1);
        Ok(0)
    });
    p
}

// The C API promises that one model may serve several threads.
const _: () = {
    const fn sync<T: Sync + Send>() {}
    sync::<BertliteModel>()
};
