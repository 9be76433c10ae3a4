//! The encoder: an NNEF graph (with tract extensions) loaded from the bundle, optimized for this
//! CPU at load, run on a padded batch of token ids.
//!
//! Graph contract (written by `bertlite-tool`): inputs `input_ids`, `attention_mask`,
//! `token_type_ids`, all i64 `[batch, seq]` with symbolic `batch` and `seq`; one output, the last
//! hidden state, f32 `[batch, seq, hidden]`.

use std::sync::Arc;

use tract_nnef::internal::*;
use tract_nnef::prelude::{Framework, TypedRunnableModel};

use crate::bundle::EncoderInfo;
use crate::error::{Error, Result};
use crate::platform::threads;
use crate::rewrite::{self, Rewrites};
use crate::tokenizer::Encoding;
use precision::{Decision, Precision, PrecisionChoice};

mod graph_check;
pub(crate) mod nnef_reader;
pub(crate) mod precision;

/// How the runtime executes the graph.
#[derive(Clone, Copy, Debug)]
pub struct EncoderOptions {
    /// Threads for the matrix multiplies (1 = run on the calling thread).
    pub threads: usize,
    /// Compute precision; `Auto` picks the fastest measured for this CPU.
    pub precision: PrecisionChoice,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions { threads: 1, precision: PrecisionChoice::Auto }
    }
}

/// A loaded encoder: the optimized plan for this CPU, and what was chosen for it.
pub struct Encoder {
    plan: Arc<TypedRunnableModel>,
    hidden: usize,
    /// Token ids must be below this, sequences at most `max_position` long: tract's gathers
    /// do not check their indices.
    vocab_size: usize,
    max_position: usize,
    decision: Decision,
    rewrites: Rewrites,
    /// Encoder layers (the graph's output count when compiled with `--encoder-outputs`).
    layers: usize,
    /// The plan's thread pool (`threads` > 1), which whole inferences run on.
    pool: Option<threads::Pool>,
}

/// The word-embedding table as the plan holds it, shared (not copied) for the fill-mask
/// decoder, whose weight BERT ties to this table.
#[derive(Clone)]
pub enum WordTable {
    /// int8 rows `[V][H]` with one f32 scale per row `[V][1]`.
    Int8 { rows: Arc<Tensor>, scales: Arc<Tensor> },
    /// f32 (or, in an f16 plan, f16) rows `[V][H]`.
    Float(Arc<Tensor>),
}

impl WordTable {
    /// `out[v] = table[v] · x` for every vocabulary row.
    pub fn scores(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        let h = x.len();
        let fail = |e| Error::inference("the word table has an unexpected type", e);
        match self {
            WordTable::Int8 { rows, scales } => {
                let (rows, scales) = (
                    rows.try_as_plain_ram().map_err(fail)?,
                    scales.try_as_plain_ram().map_err(fail)?,
                );
                let rows = rows.as_slice::<i8>().map_err(fail)?;
                let scales = scales.as_slice::<f32>().map_err(fail)?;
                for ((o, row), s) in out.iter_mut().zip(rows.chunks_exact(h)).zip(scales) {
                    *o = dot(row, x, f32::from) * s;
                }
            }
            WordTable::Float(t) if t.datum_type() == f16::datum_type() => {
                let t = t.try_as_plain_ram().map_err(fail)?;
                let rows = t.as_slice::<f16>().map_err(fail)?;
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(h)) {
                    *o = dot(row, x, f16::to_f32);
                }
            }
            WordTable::Float(t) => {
                let t = t.try_as_plain_ram().map_err(fail)?;
                let rows = t.as_slice::<f32>().map_err(fail)?;
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(h)) {
                    *o = dot(row, x, |w| w);
                }
            }
        }
        Ok(())
    }
}

/// `Σ f(row[i]) · x[i]` in fixed blocks of 16 running sums, so the compiler widens and
/// multiplies whole vectors: the fill-mask decoder runs this over every vocabulary row.
#[inline]
fn dot<T: Copy>(row: &[T], x: &[f32], f: impl Fn(T) -> f32) -> f32 {
    const B: usize = 16;
    let mut acc = [0f32; B];
    let (rows, xs) = (row.chunks_exact(B), x.chunks_exact(B));
    let tail: f32 = rows.remainder().iter().zip(xs.remainder()).map(|(&w, &x)| f(w) * x).sum();
    for (r, x) in rows.zip(xs) {
        for i in 0..B {
            acc[i] += f(r[i]) * x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A batch of encodings padded to the longest one, as the graph wants it.
#[derive(Clone)]
pub struct Batch {
    pub batch: usize,
    pub seq: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

/// The most rows (texts × padded length) the encoder runs at once: a larger batch runs in
/// parts of whole texts. At 8 texts × 64 to 256 tokens every activation outgrows the 1 MB L2
/// of the x86 host (the FFN's intermediate alone is 8 × 128 × 1536 × 4 B = 6 MB) and each op
/// then streams its inputs from L3 or DRAM; in parts of 256 rows they stay close.
/// Interleaved A/B at batch 8 (results/performance.md, "Session 26"): ×0.84–0.92 per text at
/// 2 threads, at 1 thread ×0.90 at 256 tokens and within the noise below; parts of 128 rows
/// were slower at 2 threads (×1.24 at 64 tokens). The boards' caches are smaller still (the
/// Pi 4's 1 MB L2 is shared by four cores), but qemu counts instructions, not cache misses:
/// there it is not measured.
pub const PART_ROWS: usize = 256;

impl Batch {
    /// The batch in parts of at most [`PART_ROWS`] rows (at least one text each), at the same
    /// padded length; the batch itself when it is small enough.
    fn parts(&self) -> impl Iterator<Item = std::borrow::Cow<'_, Batch>> {
        let per = (PART_ROWS / self.seq.max(1)).max(1);
        let whole = self.batch <= per;
        let starts = if whole { 0..0 } else { 0..self.batch.div_ceil(per) };
        let parts = starts.map(move |i| {
            std::borrow::Cow::Owned(self.texts(i * per..((i + 1) * per).min(self.batch)))
        });
        whole.then_some(std::borrow::Cow::Borrowed(self)).into_iter().chain(parts)
    }

    /// The texts `range` of the batch, at the same padded length.
    fn texts(&self, range: std::ops::Range<usize>) -> Batch {
        let rows = range.start * self.seq..range.end * self.seq;
        Batch {
            batch: range.len(),
            seq: self.seq,
            input_ids: self.input_ids[rows.clone()].to_vec(),
            attention_mask: self.attention_mask[rows.clone()].to_vec(),
            token_type_ids: self.token_type_ids[rows].to_vec(),
        }
    }

    /// Pads only within the batch: a lone text runs at its own length.
    pub fn new(encodings: &[&Encoding], pad_id: u32) -> Batch {
        let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let batch = encodings.len();
        let mut b = Batch {
            batch,
            seq,
            input_ids: vec![i64::from(pad_id); batch * seq],
            attention_mask: vec![0; batch * seq],
            token_type_ids: vec![0; batch * seq],
        };
        for (row, e) in encodings.iter().enumerate() {
            for (col, (&id, &ty)) in e.ids.iter().zip(e.type_ids.iter()).enumerate() {
                let i = row * seq + col;
                b.input_ids[i] = i64::from(id);
                b.attention_mask[i] = 1;
                b.token_type_ids[i] = i64::from(ty);
            }
        }
        b
    }
}

impl Encoder {
    /// Parses the NNEF tar and builds the optimized plan for this CPU.
    /// `shape` is the bundle metadata's description of the encoder, which the graph must match.
    pub fn load(graph: &[u8], shape: &EncoderInfo, options: EncoderOptions) -> Result<Encoder> {
        let executor = threads::executor(options.threads)?;
        graph_check::check_archive(graph)?;
        let mut model = nnef_reader::framework()
            .model_for_read(&mut &*graph)
            .map_err(|e| Error::inference("cannot parse the bundle's NNEF graph", e))?;
        graph_check::check_model(&model, shape)?;
        let outputs = if shape.encoder_outputs { shape.heads.len() } else { 1 };
        if model
            .output_outlets()
            .map_err(|e| Error::inference("the graph has no outputs", e))?
            .len()
            != outputs
        {
            return Err(Error::bundle(format!(
                "the graph does not have the {outputs} output(s) the metadata describes"
            )));
        }
        let hidden = shape.hidden;
        let int8_weights = rewrite::has_int8_linears(&model);
        let weights = match (int8_weights, shape.int8_calibrated) {
            (false, _) => precision::Weights::F32,
            (true, false) => precision::Weights::Int8,
            (true, true) => precision::Weights::Int8Calibrated,
        };
        let decision =
            precision::decide(options.precision, &crate::platform::cpu::isa_names(), weights);
        let plan = rewrite::Plan {
            fuse_f32: decision.precision != Precision::F16,
            int8: decision.precision == Precision::Int8,
        };
        let rewrites = rewrite::apply(&mut model, plan)?;
        if decision.precision == Precision::F16 {
            model = to_f16(model)?;
        }
        let model =
            model.into_optimized().map_err(|e| Error::inference("cannot optimize the graph", e))?;
        let pool = match &executor {
            Some(tract_linalg::multithread::Executor::MultiThread(pool)) => {
                Some(threads::Pool::new(pool.clone()))
            }
            _ => None,
        };
        let run_options = RunOptions { executor, ..RunOptions::default() };
        let plan = model
            .into_runnable_with_options(&run_options)
            .map_err(|e| Error::inference("cannot build the execution plan", e))?;
        Ok(Encoder {
            plan,
            hidden,
            vocab_size: shape.vocab_size,
            max_position: shape.max_position,
            decision,
            rewrites,
            layers: shape.heads.len(),
            pool,
        })
    }

    /// The precision the encoder runs at, and why it was chosen.
    pub fn precision(&self) -> &Decision {
        &self.decision
    }

    /// What the graph rewrites found at load: the fused ops and int8 linears this plan runs
    /// on our kernels. A bundle written by this version of `bertlite-tool` gets all of them
    /// (tests/contract.rs); fewer means a fast path silently fell back to tract.
    pub fn rewrites(&self) -> &Rewrites {
        &self.rewrites
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The plan's own word-embedding table (`[vocab][hidden]`), found among its constants.
    pub fn word_table(&self) -> Result<WordTable> {
        use tract_nnef::tract_core::ops::konst::Const;
        let (v, h) = (self.vocab_size, self.hidden);
        // By shape and type; by name too, should the position table have the same shape.
        let find = |shape: &[usize], types: &[DatumType]| {
            let mut found: Vec<(&str, &Arc<Tensor>)> = self
                .model()
                .nodes()
                .iter()
                .filter_map(|n| Some((n.name.as_str(), n.op_as::<Const>()?.val())))
                .filter(|(_, t)| t.shape() == shape && types.contains(&t.datum_type()))
                .collect();
            found.sort_by_key(|(name, _)| !name.contains("word"));
            found.first().map(|(_, t)| Arc::clone(t))
        };
        if let Some(rows) = find(&[v, h], &[i8::datum_type()]) {
            let scales = find(&[v, 1], &[f32::datum_type()])
                .ok_or_else(|| Error::bundle("the int8 word table has no row scales"))?;
            return Ok(WordTable::Int8 { rows, scales });
        }
        find(&[v, h], &[f32::datum_type(), f16::datum_type()])
            .map(WordTable::Float)
            .ok_or_else(|| Error::bundle("the graph has no word-embedding table"))
    }

    /// The optimized graph, for reporting (kernels chosen, op counts).
    pub fn model(&self) -> &TypedModel {
        self.plan.model()
    }

    /// Runs the encoder `iters` times, timing every op of the plan; returns (op name, total
    /// time) sorted by time, largest first — per node (`op name` + node name) with `by_node`.
    /// For finding where inference time goes.
    pub fn profile(
        &self,
        batch: &Batch,
        iters: usize,
        by_node: bool,
    ) -> Result<Vec<(String, std::time::Duration)>> {
        let mut times: std::collections::HashMap<String, std::time::Duration> = Default::default();
        // In the parts `run` cuts the batch into, so the profile is of what `run` does.
        let parts: Vec<_> = batch.parts().collect();
        for _ in 0..iters.max(1) {
            for part in &parts {
                let mut state =
                    self.plan.spawn().map_err(|e| Error::inference("cannot start the plan", e))?;
                state
                    .run_plan_with_eval(self.inputs(part)?, |ctx, op_state, node, inputs| {
                        let start = std::time::Instant::now();
                        let out = tract_nnef::tract_core::plan::eval(ctx, op_state, node, inputs);
                        let key = if by_node {
                            format!("{} {}", node.op().name(), node.name)
                        } else {
                            node.op().name().to_string()
                        };
                        *times.entry(key).or_default() += start.elapsed();
                        out
                    })
                    .map_err(|e| Error::inference("the encoder failed to run", e))?;
            }
        }
        let mut times: Vec<_> = times.into_iter().collect();
        times.sort_by_key(|t| std::cmp::Reverse(t.1));
        Ok(times)
    }

    /// A batch built by hand (the fields are public) gets the checks the tokenizer's own
    /// encodings pass by construction.
    fn check(&self, batch: &Batch) -> Result<()> {
        let n = batch.batch.checked_mul(batch.seq);
        if n.is_none_or(|n| {
            [&batch.input_ids, &batch.attention_mask, &batch.token_type_ids]
                .iter()
                .any(|v| v.len() != n)
        }) {
            return Err(Error::input(format!(
                "a batch of {} × {} tokens needs that many ids, mask values and type ids",
                batch.batch, batch.seq
            )));
        }
        if batch.batch == 0 || batch.seq == 0 {
            return Err(Error::input("an empty batch or an encoding with no tokens"));
        }
        if batch.seq > self.max_position {
            return Err(Error::input(format!(
                "{} tokens is more than the model's {} positions",
                batch.seq, self.max_position
            )));
        }
        let vocab = self.vocab_size as i64;
        if let Some(id) = batch.input_ids.iter().find(|&&id| !(0..vocab).contains(&id)) {
            return Err(Error::input(format!(
                "token id {id} is outside the vocabulary of {vocab}"
            )));
        }
        if let Some(t) = batch.token_type_ids.iter().find(|&&t| !(0..=1).contains(&t)) {
            return Err(Error::input(format!("token type {t} is not 0 or 1")));
        }
        Ok(())
    }

    fn inputs(&self, batch: &Batch) -> Result<TVec<TValue>> {
        self.check(batch)?;
        let shape = [batch.batch, batch.seq];
        let tensor = |data: &[i64]| -> Result<TValue> {
            Tensor::from_shape(&shape, data)
                .map(TValue::from)
                .map_err(|e| Error::inference("cannot build an input tensor", e))
        };
        Ok(tvec!(
            tensor(&batch.input_ids)?,
            tensor(&batch.attention_mask)?,
            tensor(&batch.token_type_ids)?
        ))
    }

    /// Runs the encoder; returns the last hidden state, row-major `[batch, seq, hidden]`.
    /// A batch of more than [`PART_ROWS`] rows runs in parts of whole texts, one after the
    /// other; each text's outputs are the same as in one run (every op works per row or
    /// per text).
    pub fn run(&self, batch: &Batch) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(batch.batch * batch.seq * self.hidden);
        for part in batch.parts() {
            out.extend(self.run_one(&part)?);
        }
        Ok(out)
    }

    /// One part of a batch, run whole.
    fn run_one(&self, batch: &Batch) -> Result<Vec<f32>> {
        self.on_pool(batch, || {
            let outputs = self.run_plan(batch)?;
            let first = outputs.first().ok_or_else(|| Error::bundle("the graph has no output"))?;
            self.states(first, batch)
        })
    }

    /// The plan on `batch`'s inputs: every output, as tract returns them (on the thread that
    /// runs the inference: they do not leave it).
    fn run_plan(&self, batch: &Batch) -> Result<TVec<TValue>> {
        let inputs = self.inputs(batch)?;
        self.plan.run(inputs).map_err(|e| Error::inference("the encoder failed to run", e))
    }

    /// Runs `f` (a whole inference of `batch`) on one of the plan's pool threads, or here if
    /// the inference runs on one thread (one thread asked, or an input too short to split:
    /// handing it to the pool would only add the two wake-ups).
    ///
    /// On a pool thread, the ops that split their work (`platform::threads::pool_for`) keep
    /// one part for that thread and hand the other parts to the pool's other threads. Run from
    /// the caller's own thread, every split op would instead wake the pool's threads and put
    /// the caller to sleep until they finish: two wake-ups per op, 30 per inference, which on
    /// a 2-core virtual machine cost more than the second core gave (results/performance.md,
    /// session 19).
    fn on_pool<R: Send>(&self, batch: &Batch, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) if threads::splits(batch.batch * batch.seq) => threads::run_on_pool(pool, f),
            _ => f(),
        }
    }

    /// Runs the encoder of a bundle compiled with `--encoder-outputs`; returns every layer's
    /// output, first to last, each row-major `[batch, seq, hidden]`.
    pub fn run_layers(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        // (A one-layer encoder's one output is all its layers.)
        if self.plan.model().outputs.len() != self.layers {
            return Err(Error::input(
                "this bundle keeps the last layer only; compile it with --encoder-outputs for every layer's output",
            ));
        }
        self.on_pool(batch, || {
            let outputs = self.run_plan(batch)?;
            // Outputs: last hidden state, then layers 0..L-1.
            let mut layers =
                outputs[1..].iter().map(|t| self.states(t, batch)).collect::<Result<Vec<_>>>()?;
            layers.push(self.states(&outputs[0], batch)?);
            Ok(layers)
        })
    }

    /// One `[batch, seq, hidden]` output as f32, shape checked.
    fn states(&self, output: &TValue, batch: &Batch) -> Result<Vec<f32>> {
        let hidden = output
            .cast_to::<f32>()
            .map_err(|e| Error::inference("the graph's output is not a float tensor", e))?;
        let hidden = hidden
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::inference("the graph's output is not f32", e))?;
        if hidden.shape() != [batch.batch, batch.seq, self.hidden] {
            return Err(Error::bundle(format!(
                "the graph returned shape {:?}, expected {:?}",
                hidden.shape(),
                [batch.batch, batch.seq, self.hidden]
            )));
        }
        // One copy when the output is contiguous (it is): iterating the view goes value by
        // value through ndarray's strided iterator (its cost: results/boards.md).
        Ok(hidden.as_slice().map_or_else(|| hidden.iter().copied().collect(), <[f32]>::to_vec))
    }
}

/// The whole graph in f16 (tract's `f32_to_f16`): f16 weights and activations; matmuls run
/// tract's native fp16 kernels where the CPU has them, f32 kernels on f16 data elsewhere.
fn to_f16(mut model: TypedModel) -> Result<TypedModel> {
    let transform =
        tract_nnef::tract_core::transform::get_transform("f32_to_f16")
            .ok()
            .flatten()
            .ok_or_else(|| Error::bundle("this build of tract has no f32_to_f16 transform"))?;
    transform
        .transform(&mut model)
        .map_err(|e| Error::inference("cannot translate the graph to f16", e))?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked dot product against a float64 sum, at lengths around the block of 16.
    /// Products of small integers and multiples of 1/8 are exact in f32, so any order of
    /// summation gives the same result: the comparison is exact.
    #[test]
    fn dot_matches_a_scalar_reference() {
        for n in [0, 1, 15, 16, 17, 31, 33, 384] {
            let row: Vec<i8> = (0..n).map(|i| ((i * 37 + 11) % 255) as i8).collect();
            let x: Vec<f32> = (0..n).map(|i| ((i * 13) % 17) as f32 / 8.0 - 1.0).collect();
            let want: f64 = row.iter().zip(&x).map(|(&w, &x)| f64::from(w) * f64::from(x)).sum();
            assert_eq!(f64::from(dot(&row, &x, f32::from)), want, "n = {n}");
            let rowf: Vec<f32> = row.iter().map(|&w| f32::from(w)).collect();
            assert_eq!(f64::from(dot(&rowf, &x, |w| w)), want, "n = {n}");
        }
    }

    /// Parts of whole texts, in order, each at most `PART_ROWS` rows (but one text), that put
    /// back together are the batch; a batch that fits is not copied.
    #[test]
    fn a_batch_splits_into_parts_of_whole_texts() {
        let text = |i: u32, len: usize| Encoding {
            ids: (0..len as u32).map(|j| 1000 * i + j).collect(),
            type_ids: (0..len).map(|_| 0).collect(),
            ..Default::default()
        };
        for (texts, len, want) in [
            (3, 80, vec![3]),
            (5, 100, vec![2, 2, 1]),
            (4, 128, vec![2, 2]),
            (3, 300, vec![1, 1, 1]),
            (1, 512, vec![1]),
        ] {
            let encodings: Vec<Encoding> = (0..texts).map(|i| text(i, len)).collect();
            let refs: Vec<&Encoding> = encodings.iter().collect();
            let batch = Batch::new(&refs, 0);
            let parts: Vec<_> = batch.parts().collect();
            let sizes: Vec<usize> = parts.iter().map(|p| p.batch).collect();
            assert_eq!(sizes, want, "{texts} texts of {len}");
            let owned = parts.iter().any(|p| matches!(p, std::borrow::Cow::Owned(_)));
            assert_eq!(owned, want.len() > 1, "{texts} texts of {len}");
            let ids: Vec<i64> = parts.iter().flat_map(|p| p.input_ids.clone()).collect();
            assert_eq!(ids, batch.input_ids);
            assert!(parts.iter().all(|p| p.seq == len && p.input_ids.len() == p.batch * len));
        }
    }
}
