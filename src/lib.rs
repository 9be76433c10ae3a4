//! bertlite: BERT text classification and embeddings on edge devices.
//!
//! A bundle (one file, written by `bertlite-tool`) holds an encoder graph, the tokenizer, the
//! pooling rule and an optional classification head. [`Model`] loads one and answers:
//!
//! ```no_run
//! let model = bertlite::Model::load("minilm-bbc.blt")?;
//! let answer = model.classify("Shares in the carmaker fell after a profit warning")?;
//! println!("{} {:.3}", answer.top().0, answer.top().1);
//! let embedding = model.embed("A sentence to embed")?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! The layers, each importing only those below it (docs/architecture.md; tests/layers.rs
//! checks it):
//!
//! ```text
//! report                         what `bertlite info` prints
//! model                          text → tokenizer → encoder → pooling → head → answer
//! encoder                        bundle graph → checked, rewritten, optimized tract plan
//! rewrite                        graph patterns → our ops          bundle    file format
//! ops                            our tract ops                     tokenizer WordPiece
//! kernels                        per-architecture numeric loops
//! platform, error                CPU features, threads; errors
//! ```

mod bundle;
mod encoder;
mod error;
mod kernels;
mod model;
mod ops;
mod platform;
pub(crate) mod report;
mod rewrite;
mod tokenizer;

pub use bundle::{
    Bundle, EncoderInfo, HeadInfo, HeadKind, Metadata, Pooling, PoolingMode, Task, TaskInfo,
};
pub use encoder::EncoderOptions;
pub use encoder::precision::{Decision, Precision, PrecisionChoice};
pub use error::{Error, ErrorKind, Result};
pub use model::pooling::cosine;
pub use model::{Answer, AnswerOptions, Classification, Entity, MaskPrediction, Model, Tokens};
pub use platform::threads::{MAX_THREADS, default_threads};
pub use rewrite::Rewrites;
pub use tokenizer::{Encoding, Span};

/// For bertlite's own tools, tests, benchmarks and fuzz targets: the parts below [`Model`].
/// Not a stable API.
#[doc(hidden)]
pub mod internal {
    pub use crate::bundle::{FORMAT_VERSION, write_atomic};
    pub use crate::encoder::{Batch, Encoder, PART_ROWS};
    pub use crate::kernels::gemm_i8;
    pub use crate::model::head::{Dense, Head};
    pub use crate::report::{info, plan_details};
    pub use crate::tokenizer::{MAX_SEQ_LEN, Tokenizer, TokenizerConfig};
}
