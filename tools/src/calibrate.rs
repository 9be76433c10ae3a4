//! Calibration text for the int8 rounding ([`crate::gptq`]): the statistics of each Linear's
//! input, gathered by running the f32 model with taps.

use anyhow::{Result, ensure};
use bertlite::Encoding;
use rayon::prelude::*;
use tract_core::internal::*;

use crate::gptq::{LayerHessians, add_outer_products};
use crate::graph::{self, Precision, TAPS_PER_LAYER};
use crate::model::Bert;

/// Calibration text when the user gives none: one text per line, varied on purpose (news,
/// questions, code, numbers, markup, many scripts, one-word and 150-word texts), written for
/// this and not drawn from any test set.
pub const BUILTIN_CALIBRATION: &str = include_str!("../data/calibration.txt");

/// Runs the f32 model on the calibration texts and sums each Linear input's outer products.
pub fn collect(bert: &Bert, calibration: &[Encoding]) -> Result<Vec<LayerHessians>> {
    ensure!(!calibration.is_empty(), "calibrated rounding needs calibration texts");
    let plan = graph::build_with_outputs(bert, Precision::F32, graph::Outputs::Taps)?
        .into_optimized()?
        .into_runnable()?;
    let widths = |l: &crate::model::Layer| {
        [bert.hidden, l.heads * bert.head_dim, bert.hidden, l.ffn_in.weight.rows]
    };
    // Per layer and input: token rows waiting to be summed, and the sums.
    let mut pending: Vec<[Vec<f32>; 4]> = bert.layers.iter().map(|_| Default::default()).collect();
    let mut totals: Vec<[Vec<f64>; 4]> =
        bert.layers.iter().map(|l| widths(l).map(|k| vec![0f64; k * k])).collect();
    let pb = crate::embed::progress(calibration.len(), "calibrating the int8 rounding");
    // Each text's taps, as f32 rows: layer input, context, GELU activations, attention
    // LayerNorm output.
    let taps = |e: &Encoding| -> Result<Vec<[Vec<f32>; 4]>> {
        let outputs = crate::graph::run_text(&plan, e)?;
        (0..bert.layers.len())
            .map(|l| {
                let tap = |tap: usize| crate::graph::values(&outputs, tap + l * TAPS_PER_LAYER);
                Ok([tap(1)?, tap(2)?, tap(4)?, tap(3)?])
            })
            .collect()
    };
    let mut waiting = 0;
    // The texts' forward passes on the threads, a few at a time (their taps are large); the
    // rows are summed in the texts' order, so the bundle is the same whatever the threads.
    let group = rayon::current_num_threads().max(1);
    for (g, texts) in calibration.chunks(group).enumerate() {
        let outputs: Vec<Vec<[Vec<f32>; 4]>> = texts.par_iter().map(taps).collect::<Result<_>>()?;
        for (i, (e, layers)) in texts.iter().zip(outputs).enumerate() {
            for (bufs, taps) in pending.iter_mut().zip(layers) {
                for (buf, tap) in bufs.iter_mut().zip(taps) {
                    buf.extend(tap);
                }
            }
            waiting += e.len();
            // Many tokens per product: short texts alone would leave the matrix multiply idle.
            if waiting >= 512 || g * group + i + 1 == calibration.len() {
                for (bufs, sums) in pending.iter_mut().zip(&mut totals) {
                    for (buf, sum) in bufs.iter_mut().zip(sums.iter_mut()) {
                        add_outer_products(buf, waiting, sum)?;
                        buf.clear();
                    }
                }
                waiting = 0;
            }
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(totals
        .into_iter()
        .map(|[qkv, attn_out, ffn_in, ffn_out]| LayerHessians { qkv, attn_out, ffn_in, ffn_out })
        .collect())
}
