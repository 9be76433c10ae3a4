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
    /// The whole chain with backtrace, for `-v` (tract's errors carry one).
    detail: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), detail: None, source: None }
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
    pub(crate) fn inference(
        message: impl Into<String>,
        e: impl fmt::Display + fmt::Debug,
    ) -> Error {
        // tract errors are anyhow errors: their alternate Display is the chain of causes on one
        // line; their Debug adds a backtrace, kept for `detail()` only.
        let mut error =
            Error::new(ErrorKind::Inference, one_line(&format!("{}: {e:#}", message.into())));
        error.detail = Some(format!("{e:?}"));
        error
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// Everything known about the failure (the dependency's full error chain and backtrace),
    /// when there is more than the message: what `bertlite -v` prints.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

/// A message fit for one line of a terminal: whitespace runs collapsed, and at most
/// `MAX_MESSAGE` characters (a graph error can quote a whole tensor).
fn one_line(message: &str) -> String {
    const MAX_MESSAGE: usize = 400;
    let mut out = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = out.char_indices().nth(MAX_MESSAGE) {
        out.truncate(cut);
        out.push('…');
    }
    out
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
