//! Graph rewrites: find, in the graph as loaded, the structures `bertlite-tool` writes
//! (tools/src/graph.rs) and swap in our ops. Anything that does not match exactly is left to
//! tract, so a rewrite that stops matching would only slow the encoder down, silently; hence
//! [`Rewrites`], what they found, which `bertlite info` prints and tests assert
//! (tests/contract.rs).
//!
//! ```text
//! attention   q,k,v einsums + mask + softmax + context    → ops::attention::Attention
//! norms       a + b → LayerNorm (5 tract ops)             → ops::layer_norm::AddLayerNorm
//!             scores + mask → Softmax                      → ops::softmax::MaskedSoftmax
//! int8        x · (cast(i8 W) · scale) (+ bias)            → ops::int8::LinearI8 (our kernels)
//!                                                            or QuantizeRows, i8 EinSum,
//!                                                            DequantizeRows (tract's)
//! ```

use std::fmt;

use tract_nnef::internal::TypedModel;

use crate::error::{Error, Result};

mod attention;
mod int8;
mod norm_softmax;
mod pattern;

pub(crate) use int8::has_int8_linears;

/// What the rewrites found in one loaded graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// Self-attention blocks run by our fused op (one per layer).
    pub attentions: usize,
    /// Residual add + LayerNorm run by our fused op (embeddings, then two per layer).
    pub layer_norms: usize,
    /// Masked softmaxes run by our fused op (only where attention was not fused).
    pub masked_softmaxes: usize,
    /// Linears computed in int8 (query, key, value, attention output, FFN in, FFN out: six
    /// per layer).
    pub int8_linears: usize,
    /// The int8 matrix-multiply kernel those linears run on: ours for this CPU, or tract's.
    pub int8_kernel: Option<&'static str>,
}

impl fmt::Display for Rewrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} attention, {} layer norm, {} masked softmax, {} int8 linear",
            self.attentions, self.layer_norms, self.masked_softmaxes, self.int8_linears
        )?;
        if let Some(kernel) = self.int8_kernel {
            write!(f, " ({kernel})")?;
        }
        Ok(())
    }
}

/// Which rewrites to run: the f32 fusions (not on the f16 path, which keeps tract's ops), and
/// the int8 linears.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub fuse_f32: bool,
    pub int8: bool,
}

/// Runs the rewrites `plan` asks for on `model`; returns what they found.
pub(crate) fn apply(model: &mut TypedModel, plan: Plan) -> Result<Rewrites> {
    let mut found = Rewrites::default();
    if plan.fuse_f32 {
        // On the int8 path the scores are int8 too where the CPU has dot-product.
        found.attentions = attention::rewrite(model, plan.int8)
            .map_err(|e| Error::inference("cannot fuse the attention", e))?;
        let norms = norm_softmax::rewrite(model)
            .map_err(|e| Error::inference("cannot fuse the layer norms and softmaxes", e))?;
        found.layer_norms = norms.layer_norms;
        found.masked_softmaxes = norms.softmaxes;
    }
    if plan.int8 {
        found.int8_linears = int8::rewrite_linears(model)
            .map_err(|e| Error::inference("cannot set up the int8 linears", e))?;
        if found.int8_linears > 0 {
            found.int8_kernel = Some(int8::kernel_name());
        }
    }
    Ok(found)
}
