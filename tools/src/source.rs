//! Where a checkpoint comes from, and opening it with the reader for its kind.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::model::Checkpoint;

/// Where a checkpoint comes from: a Hugging Face folder or an ONNX export.
#[derive(Clone, Debug)]
pub enum Source {
    Dir(PathBuf),
    Onnx(PathBuf, crate::onnx::OnnxOptions),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Dir(p) | Source::Onnx(p, _) => p,
        }
    }
}

impl Checkpoint {
    pub fn open(source: &Source, max_len: Option<usize>) -> Result<Checkpoint> {
        match source {
            Source::Dir(dir) => Checkpoint::load(dir, max_len),
            Source::Onnx(path, opts) => crate::onnx::load(path, max_len, opts),
        }
        .with_context(|| format!("cannot read checkpoint {}", source.path().display()))
    }
}
