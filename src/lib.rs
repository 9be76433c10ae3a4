//! bertlite: BERT text classification on edge devices.
//!
//! A bundle (one file, written by `bertlite-tool`) holds an encoder graph, the tokenizer, the
//! pooling rule and an optional classification head. The data path, one module per step:
//!
//! text → [`tokenizer`] → [`encoder::Batch`] → [`encoder`] (tract, NEON on ARM) → [`pooling`]
//! → [`head`] → [`Classification`].
//!
//! ```no_run
//! let model = bertlite::Model::load("minilm-bbc.blt")?;
//! let answer = model.classify("Shares in the carmaker fell after a profit warning")?;
//! println!("{} {:.3}", answer.top().0, answer.top().1);
//! let embedding = model.embed("A sentence to embed")?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

#[macro_use]
mod simd;

pub mod attention;
pub mod bundle;
pub mod cpu;
pub mod encoder;
mod error;
pub mod fused;
pub mod gemm_i8;
mod graph_check;
pub mod head;
pub mod int8;
mod model;
pub mod nnef_reader;
pub mod pooling;
pub mod precision;
pub mod report;
pub mod tokenizer;

pub use encoder::EncoderOptions;
pub use error::{Error, ErrorKind, Result};
pub use model::{Classification, Model};
pub use precision::{Precision, PrecisionChoice};
