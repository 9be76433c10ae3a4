//! Typed errors: a board application must tell "bundle too new" from "text empty".

use std::fmt;

/// What went wrong, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing a file failed.
    Io,
    /// The bundle is not a bertlite bundle, is truncated, corrupt, or inconsistent.
    Bundle,
    /// The bundle was written by a newer (or older, incompatible) format version.
    Version,
    /// The text cannot be processed (empty, invalid UTF-8...).
    Input,
    /// tract failed to build or run the graph.
    Inference,
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }
    pub fn bundle(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Bundle, message)
    }
    pub fn input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Input, message)
    }
    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        self.source = Some(source.into());
        self
    }
    pub(crate) fn inference(message: impl Into<String>, e: impl fmt::Debug) -> Error {
        // tract errors are anyhow errors: keep their whole chain in the message.
        Error::new(ErrorKind::Inference, format!("{}: {e:?}", message.into()))
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
