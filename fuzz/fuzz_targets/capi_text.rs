//! The C API's text entry points with any bytes as the text and varied buffer sizes: every
//! call returns a result or -1 with a message, never a panic; a success leaves `err` empty.
#![no_main]

mod common;

use std::ffi::{CString, c_char};
use std::sync::OnceLock;

use capi::{BertliteModel, bertlite_classify, bertlite_embed, bertlite_label, bertlite_load};
use libfuzzer_sys::fuzz_target;

struct Handle(*mut BertliteModel);
// SAFETY: the C API documents a loaded model as usable from several threads.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn model() -> *const BertliteModel {
    static MODEL: OnceLock<Handle> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path =
                std::env::temp_dir().join(format!("bertlite-fuzz-{}.blt", std::process::id()));
            std::fs::write(&path, common::TINY_BUNDLE).expect("write the tiny bundle");
            let c_path = CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
            let mut err = [0 as c_char; 256];
            // SAFETY: NUL-terminated strings and a buffer of the stated length.
            let m = unsafe {
                bertlite_load(c_path.as_ptr(), 1, std::ptr::null(), err.as_mut_ptr(), err.len())
            };
            assert!(!m.is_null(), "the tiny bundle loads");
            let _ = std::fs::remove_file(&path);
            Handle(m)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    let [sizes, rest @ ..] = data else { return };
    let text: Vec<u8> = rest.iter().copied().take_while(|&b| b != 0).collect();
    let text = CString::new(text).expect("no interior NUL");
    // Output arrays of 0 .. 40 floats (3 labels, 32 dimensions) and message buffers of 0 .. 31.
    let out_len = usize::from(sizes & 0x0f) * 3;
    let err_len = usize::from(sizes >> 4) * 2;
    let mut out = vec![0f32; out_len.max(1)];
    let mut err = vec![1 as c_char; err_len.max(1)];
    let m = model();
    // SAFETY: live model; NUL-terminated text; arrays at least as long as stated.
    let best = unsafe {
        bertlite_classify(m, text.as_ptr(), out.as_mut_ptr(), out_len, err.as_mut_ptr(), err_len)
    };
    check(best, &err, err_len);
    if best >= 0 {
        // SAFETY: as above.
        assert!(!unsafe { bertlite_label(m, best) }.is_null());
    }
    // SAFETY: as above.
    let n = unsafe {
        bertlite_embed(m, text.as_ptr(), out.as_mut_ptr(), out_len, err.as_mut_ptr(), err_len)
    };
    check(n, &err, err_len);
});

/// -1 leaves a NUL-terminated message within the buffer; a success leaves it empty.
fn check(rc: i32, err: &[c_char], err_len: usize) {
    assert!(rc >= -1);
    if err_len == 0 {
        return;
    }
    let nul = err[..err_len].iter().position(|&c| c == 0).expect("message is NUL-terminated");
    assert_eq!(rc >= 0, nul == 0, "rc {rc} with a message of {nul} bytes");
}
