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

use runtime::{EncoderOptions, Model, PrecisionChoice};

/// An opaque loaded model (`bertlite_model` in C).
pub struct BertliteModel {
    model: Model,
    /// The head's labels as C strings, in the head's order (empty without a head).
    labels: Vec<CString>,
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
        loaded = Some(Box::new(BertliteModel { model, labels }));
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
    let label = unsafe { model.as_ref() }
        .and_then(|m| usize::try_from(index).ok().and_then(|i| m.labels.get(i)));
    label.map_or(ptr::null(), |l| l.as_ptr())
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

// The C API promises that one model may serve several threads.
const _: () = {
    const fn sync<T: Sync + Send>() {}
    sync::<BertliteModel>()
};
