//! Pooled embeddings of many texts with a loaded runtime model, with a progress bar.

use anyhow::{Context, Result};
use bertlite::Encoding;
use indicatif::{ProgressBar, ProgressStyle};

/// Progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// Pooled embeddings of many texts with a loaded model, batched by similar length.
pub fn embed_all(model: &bertlite::Model, texts: &[&str], what: &str) -> Result<Vec<Vec<f32>>> {
    let encodings: Vec<Encoding> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            model.encode(t).with_context(|| format!("example {} cannot be embedded", i + 1))
        })
        .collect::<Result<_>>()?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| encodings[i].len());
    let mut out = vec![Vec::new(); texts.len()];
    let pb = progress(texts.len(), what);
    for chunk in order.chunks(8) {
        let batch: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
        for (&i, e) in chunk.iter().zip(model.embed_encodings(&batch)?) {
            out[i] = e;
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}
