//! Int8 compute for the linear layers: `x · Wᵀ` as int8 × int8 → i32 on tract's integer
//! kernels, with the two conversions around it done in one pass each by our own ops:
//!
//! ```text
//! x f32 [.., k] ─ QuantizeRows ─┬─ xq i8 [.., k] ─ EinSum(i8, W i8 [n, k]) ─ acc i32 [.., n]
//!                               └─ sx f32, zx i32 [.., 1] ───────────────────┐
//!       (acc − zx · Σₖw[n]) · sx · sw[n] ─ DequantizeRows ─ y f32 [.., n] ───┘
//! ```
//!
//! Activations are quantized per token (row), asymmetric, from the row's own min and max: no
//! calibration. Values run 0..=127 with a per-row zero point, the range our x86 kernel
//! multiplies exactly with `vpmaddubsw` ([`crate::kernels::gemm_i8`]); every target uses the same
//! quantization so boards and hosts agree. In [`LinearI8`] (our kernels) each row's 4 largest
//! magnitudes are first split off and multiplied apart, as 16-bit integers
//! ([`crate::kernels::quantize::quantize_row_split`], `gemm_i8::add_outliers`): a token's one
//! or two large values no longer set the 7-bit step for all the others (issue #15: cosine to
//! fp32 on the golden sentences, mean / min, 0.9955 / 0.9811 → 0.9991 / 0.9964). Not for the
//! attention output's input (`rewrite/int8.rs` says why). The zero point costs one
//! multiply-subtract per output, done in our dequantize step, not by tract (its zero-point
//! compensation is what made its ONNX int8 path slower than f32). Seven bits cost little fidelity against eight-bit
//! symmetric rows (results/performance.md). Weights are the bundle's own int8 values and per-channel
//! scales, untouched.
//!
//! The rewrite (`rewrite/int8.rs`) runs on the loaded graph, before tract optimizes it: it finds
//! each matmul whose weight is `cast(i8 const) · scale const` (how `bertlite-tool` stores int8
//! linears) and replaces it. The bundle format does not change.

use tract_nnef::internal::*;

use crate::kernels::gelu::gelu_in_place;
use crate::kernels::gemm_i8;
use crate::kernels::quantize::{Outliers, RowQuant, quantize_row, quantize_row_split};

/// f32 → (i8 in 0..=127, per-row scale, per-row zero point) over the last axis:
/// `x ≈ (xq − zero) · scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizeRows;

impl Op for QuantizeRows {
    fn name(&self) -> StaticName {
        "BertliteQuantizeRows".into()
    }
    op_as_typed_op!();
}

impl EvalOp for QuantizeRows {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let shape = x.shape().to_vec();
        let k = *shape.last().context("QuantizeRows needs a rank ≥ 1 input")?;
        let mut scale_shape = shape.clone();
        if let Some(last) = scale_shape.last_mut() {
            *last = 1;
        }
        let mut q = Tensor::zero::<i8>(&shape)?;
        let mut s = Tensor::zero::<f32>(&scale_shape)?;
        let mut z = Tensor::zero::<i32>(&scale_shape)?;
        if k > 0 {
            let x_ram = x.try_as_plain_ram()?;
            let mut q_ram = q.try_as_plain_ram_mut()?;
            let mut s_ram = s.try_as_plain_ram_mut()?;
            let mut z_ram = z.try_as_plain_ram_mut()?;
            let rows = x_ram.as_slice::<f32>()?.chunks_exact(k);
            let rows = rows.zip(q_ram.as_slice_mut::<i8>()?.chunks_exact_mut(k));
            let params = s_ram.as_slice_mut::<f32>()?.iter_mut().zip(z_ram.as_slice_mut::<i32>()?);
            for ((x, q), (s, z)) in rows.zip(params) {
                RowQuant { scale: *s, zero: *z } = quantize_row(x, q);
            }
        }
        Ok(tvec![q.into_tvalue(), s.into_tvalue(), z.into_tvalue()])
    }
}

impl TypedOp for QuantizeRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type(), "QuantizeRows wants f32");
        let shape = inputs[0].shape.to_tvec();
        let mut scale_shape = shape.clone();
        *scale_shape.last_mut().context("QuantizeRows needs a rank ≥ 1 input")? = 1.to_dim();
        Ok(tvec![i8::fact(shape), f32::fact(scale_shape.clone()), i32::fact(scale_shape)])
    }
    as_op!();
}

/// i32 accumulators `[.., n]`, less per-row zero point `[.., 1]` × weight sums `[n]`, × per-row
/// scale `[.., 1]` × per-channel scale `[n]` → f32.
#[derive(Clone, Debug, PartialEq)]
pub struct DequantizeRows {
    pub channel_scales: Arc<Vec<f32>>,
    /// `Σₖ w[c][k]` per channel.
    pub col_sums: Arc<Vec<i32>>,
}

impl Eq for DequantizeRows {}

impl Op for DequantizeRows {
    fn name(&self) -> StaticName {
        "BertliteDequantizeRows".into()
    }
    op_as_typed_op!();
}

impl EvalOp for DequantizeRows {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (acc, row_scales, row_zeros) = args_3!(inputs);
        let n = self.channel_scales.len();
        ensure!(
            acc.shape().last() == Some(&n),
            "DequantizeRows: {:?} vs {n} channels",
            acc.shape()
        );
        let mut y = Tensor::zero::<f32>(acc.shape())?;
        {
            let acc_ram = acc.try_as_plain_ram()?;
            let acc = acc_ram.as_slice::<i32>()?;
            let rs_ram = row_scales.try_as_plain_ram()?;
            let rs = rs_ram.as_slice::<f32>()?;
            let rz_ram = row_zeros.try_as_plain_ram()?;
            let zeros = rz_ram.as_slice::<i32>()?;
            let mut y_ram = y.try_as_plain_ram_mut()?;
            ensure!(
                rs.len() * n == acc.len() && zeros.len() == rs.len(),
                "DequantizeRows: one scale and zero point per row"
            );
            let rescale = gemm_i8::Rescale {
                rows: rs,
                zeros,
                channels: &self.channel_scales,
                bias: None,
                outliers: None,
            };
            gemm_i8::rescale(acc, &rescale, &self.col_sums, y_ram.as_slice_mut::<f32>()?);
        }
        Ok(tvec![y.into_tvalue()])
    }
}

impl TypedOp for DequantizeRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == i32::datum_type(), "DequantizeRows wants i32");
        Ok(tvec![f32::fact(inputs[0].shape.clone())])
    }
    as_op!();
}

/// One int8 linear's constants: packed weights `[n, k]`, per-channel scales, and the bias add
/// that followed the matmul (absorbed into the kernel's rescale).
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Linear {
    pub weights: Arc<gemm_i8::PackedWeights>,
    pub channel_scales: Arc<Vec<f32>>,
    pub bias: Option<Arc<Vec<f32>>>,
    /// Whether BERT's exact GELU follows (FFN in): applied to the output rows while they are
    /// in cache ([`crate::kernels::gelu`]), in place of tract's pass over them.
    pub gelu: bool,
    /// Reshapes of the output, applied to its shape only (the rows are contiguous either
    /// way): the graph's reshapes after the linear, absorbed ([`LinearI8`]'s `fuse`).
    pub reshapes: Vec<AxisOp>,
}

/// Whole int8 linears in one op, on our own kernels ([`crate::kernels::gemm_i8`]: AVX2 on
/// x86_64, SDOT on aarch64 with dot-product, SMULL on aarch64 without): quantize each row of
/// `x [.., k]` once, then for every linear reading `x` (query, key and value share one), exact
/// int8 products rescaled to f32 `[.., n]` — one output per linear. Used instead of the three-op chain above wherever one of our
/// kernels runs (tract's int8 matmul is unusably slow on x86, and needs the extra passes).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearI8 {
    pub linears: Vec<Int8Linear>,
    /// Whether each row's largest magnitudes are split off
    /// ([`crate::kernels::quantize::quantize_row_split`]); not for the attention's context
    /// (see `rewrite/int8.rs`).
    pub split_outliers: bool,
    /// Per-channel factors each input row is multiplied by before it is quantized: the
    /// smoothing multiply `x · 1/s` of a calibrated bundle, taken in (same products, so the
    /// same results bit for bit).
    pub input_scales: Option<Arc<Vec<f32>>>,
}

impl Eq for LinearI8 {}

impl Op for LinearI8 {
    fn name(&self) -> StaticName {
        "BertliteLinearI8".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self
            .linears
            .iter()
            .map(|l| {
                let (k, n) = (l.weights.k, l.weights.n);
                let fixes = l.weights.corrections();
                let kernel = l.weights.kernel.name();
                let split = if self.split_outliers { ", outliers split off" } else { "" };
                let gelu = if l.gelu { ", GELU" } else { "" };
                let split = if self.input_scales.is_some() {
                    format!("{split}, input smoothed")
                } else {
                    split.to_string()
                };
                format!(
                    "Mult: k:{k} n:{n}, {fixes} weights corrected{split}{gelu}, with [{kernel}]"
                )
            })
            .collect())
    }
    op_as_typed_op!();
}

impl EvalOp for LinearI8 {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let k = self.linears.first().map_or(0, |l| l.weights.k);
        ensure!(x.shape().last() == Some(&k), "LinearI8: input {:?}, k = {k}", x.shape());
        let m = x.len() / k.max(1);
        let shape = |l: &Int8Linear| -> TractResult<TVec<usize>> {
            let mut shape: TVec<usize> = x.shape().into();
            if let Some(last) = shape.last_mut() {
                *last = l.weights.n;
            }
            for op in &l.reshapes {
                // As tract's own reshape evaluates its symbolic dimensions.
                let op = match op {
                    AxisOp::Reshape(at, from, to) => {
                        let eval = |d: &TVec<TDim>| d.iter().map(|d| d.eval(ctx.symbols)).collect();
                        AxisOp::Reshape(*at, eval(from), eval(to))
                    }
                    op => op.clone(),
                };
                op.change_shape_array(&mut shape, false)?;
            }
            Ok(shape)
        };
        if m == 0 || k == 0 {
            return self
                .linears
                .iter()
                .map(|l| Ok(Tensor::zero::<f32>(&shape(l)?)?.into_tvalue()))
                .collect();
        }
        let x_ram = x.try_as_plain_ram()?;
        let x = x_ram.as_slice::<f32>()?;
        let mut ys = TVec::new();
        for l in &self.linears {
            // SAFETY: `rows` writes every element of every output before anything reads it.
            ys.push(unsafe { Tensor::uninitialized::<f32>(&shape(l)?)? });
        }
        {
            let mut rams =
                ys.iter_mut().map(|y| y.try_as_plain_ram_mut()).collect::<Result<Vec<_>, _>>()?;
            let outs =
                rams.iter_mut().map(|r| r.as_slice_mut::<f32>()).collect::<Result<Vec<_>, _>>()?;
            match crate::platform::threads::pool_for(m) {
                // Whole micro-kernel tiles (4 rows) per thread, each quantizing its own rows
                // and running every linear on them: one dispatch per op, nothing serial.
                Some(pool) => {
                    use rayon::prelude::*;
                    let chunk = m.div_ceil(pool.current_num_threads()).next_multiple_of(4);
                    let mut chunks: Vec<_> = outs
                        .into_iter()
                        .zip(&self.linears)
                        .map(|(y, l)| y.chunks_mut(chunk * l.weights.n))
                        .collect();
                    let parts: Vec<(usize, Vec<&mut [f32]>)> = (0..m.div_ceil(chunk))
                        .map(|i| {
                            (i * chunk, chunks.iter_mut().filter_map(Iterator::next).collect())
                        })
                        .collect();
                    pool.install(|| {
                        parts.into_par_iter().for_each(|(start, ys)| {
                            self.rows(x, start..(start + chunk).min(m), ys);
                        })
                    });
                }
                None => self.rows(x, 0..m, outs),
            }
        }
        Ok(ys.into_iter().map(|y| y.into_tvalue()).collect())
    }
}

thread_local! {
    /// Each thread's quantized rows for [`LinearI8::rows`], kept between calls.
    static XQ: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl LinearI8 {
    /// Rows `rows` of `x` (rows of k): quantized once, then every linear on them, into `ys`
    /// (one per linear, its output's rows `rows`).
    fn rows(&self, x: &[f32], rows: std::ops::Range<usize>, ys: Vec<&mut [f32]>) {
        let k = self.linears.first().map_or(0, |l| l.weights.k);
        let m = rows.len();
        let x = &x[rows.start * k..rows.end * k];
        // Quantized straight into the kernel's row layout (k padded to whole quads, pad = 0).
        let kp = gemm_i8::padded_k(k);
        // The thread's buffer from its last call (a fresh one if it is in use, which a nested
        // call would find): allocating and zeroing m × k bytes per call was 2.6% of an int8
        // inference at 256 tokens (`perf record`). Every byte the kernel reads is written
        // below: each row's k values, then its padding.
        let mut own = Vec::new();
        let mut held = XQ.with(|b| b.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).ok());
        let buffer = held.as_mut().unwrap_or(&mut own);
        if buffer.len() < m * kp {
            buffer.resize(m * kp, 0);
        }
        let xq = &mut buffer[..m * kp];
        let (mut scales, mut zeros) = (vec![0f32; m], vec![0i32; m]);
        let mut outliers = vec![Outliers::default(); m];
        let mut scratch = vec![0f32; k];
        let mut scaled = vec![0f32; if self.input_scales.is_some() { k } else { 0 }];
        let quantized = x.chunks_exact(k).zip(xq.chunks_exact_mut(kp));
        let params = scales.iter_mut().zip(&mut zeros).zip(&mut outliers);
        for ((x, q), ((s, z), o)) in quantized.zip(params) {
            let x = match &self.input_scales {
                Some(c) => {
                    scaled.iter_mut().zip(x).zip(c.iter()).for_each(|((y, x), c)| *y = x * c);
                    &scaled[..]
                }
                None => x,
            };
            let (q, pad) = q.split_at_mut(k);
            pad.fill(0);
            let (quant, split) = if self.split_outliers {
                quantize_row_split(x, &mut scratch, q)
            } else {
                (quantize_row(x, q), Outliers::default())
            };
            (RowQuant { scale: *s, zero: *z }, *o) = (quant, split);
        }
        let xq = &*xq;
        for (l, y) in self.linears.iter().zip(ys) {
            let rescale = gemm_i8::Rescale {
                rows: &scales,
                zeros: &zeros,
                channels: &l.channel_scales,
                bias: l.bias.as_deref().map(|b| b.as_slice()),
                outliers: self.split_outliers.then_some(&outliers[..]),
            };
            gemm_i8::linear(xq, m, &l.weights, &rescale, y);
            if l.gelu {
                gelu_in_place(y);
            }
        }
        if let Some(buffer) = held {
            XQ.with(|b| {
                if let Ok(mut b) = b.try_borrow_mut() {
                    *b = buffer;
                }
            });
        }
    }
}

impl TypedOp for LinearI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type(), "LinearI8 wants f32");
        let k = self.linears.first().map_or(0, |l| l.weights.k);
        let last = inputs[0].shape.last().context("LinearI8 needs a rank ≥ 1 input")?;
        ensure!(*last == k.to_dim(), "LinearI8: input {:?}, k = {k}", inputs[0].shape);
        self.linears
            .iter()
            .map(|l| {
                let mut shape = inputs[0].shape.clone();
                shape.set(shape.rank() - 1, l.weights.n.to_dim());
                for op in &l.reshapes {
                    op.change_shape(&mut shape, false)?;
                }
                Ok(f32::fact(shape))
            })
            .collect()
    }

    /// Takes in a reshape that is the sole reader of one of the outputs. Left in the plan,
    /// tract's reshape copies its input whenever the op's other outputs are still to be read
    /// (the plan frees a node's outputs together): query's and key's did, 12 copies of
    /// tokens × 384 floats per inference, 1.3% of it at 128 tokens × 8 on one thread.
    fn fuse(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        for (slot, output) in node.outputs.iter().enumerate() {
            let [reader] = &output.successors[..] else { continue };
            let next = model.node(reader.node);
            let Some(reshape @ AxisOp::Reshape(..)) = next.op_as::<AxisOp>() else { continue };
            if model.output_outlets()?.contains(&OutletId::new(node.id, slot)) {
                continue;
            }
            let mut op = self.clone();
            op.linears[slot].reshapes.push(reshape.clone());
            let mut patch = TypedModelPatch::new(format!("{} takes in {}", node.name, next.name));
            let x = patch.tap_model(model, node.inputs[0])?;
            let outs = patch.wire_node(&node.name, op, &[x])?;
            for (j, out) in outs.into_iter().enumerate() {
                // The taken-in reshape's output stands for this slot's.
                let old =
                    if j == slot { OutletId::new(next.id, 0) } else { OutletId::new(node.id, j) };
                patch.shunt_outside(model, old, out)?;
            }
            return Ok(Some(patch));
        }
        Ok(None)
    }
    as_op!();
}
