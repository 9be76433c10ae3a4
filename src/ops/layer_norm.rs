//! [`AddLayerNorm`]: the residual add and LayerNorm as one tract op.

use tract_nnef::internal::*;

use crate::kernels::layer_norm::layer_norm_rows;

/// Rows below which a share of the op is not worth handing to another thread (a row is a
/// fraction of a microsecond).
const MIN_PART_ROWS: usize = 64;

/// `LayerNorm(a + b)` over the last axis, or `LayerNorm((a + c) + b)` with a third input `c`
/// of shape `[1, ..]` repeated over the first axis (the position embeddings, added to a
/// batch's word embeddings).
#[derive(Clone, Debug, PartialEq)]
pub struct AddLayerNorm {
    pub gamma: Arc<Vec<f32>>,
    pub beta: Arc<Vec<f32>>,
    pub eps: f32,
}

impl Eq for AddLayerNorm {}

impl Op for AddLayerNorm {
    fn name(&self) -> StaticName {
        "BertliteAddLayerNorm".into()
    }
    op_as_typed_op!();
}

impl EvalOp for AddLayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let h = self.gamma.len();
        let shape = inputs[0].shape();
        ensure!(shape.last() == Some(&h), "AddLayerNorm: input {shape:?}, h = {h}");
        let same = inputs.len() <= 2 || inputs[2].shape().split_first() == Some((&1, &shape[1..]));
        ensure!(
            inputs.len() <= 3 && inputs.iter().take(2).all(|i| i.shape() == shape) && same,
            "AddLayerNorm: addends {:?}",
            inputs.iter().map(|i| i.shape()).collect::<Vec<_>>()
        );
        if h == 0 {
            return Ok(tvec![Tensor::zero::<f32>(shape)?.into_tvalue()]);
        }
        // SAFETY: `layer_norm_rows` writes every row of `y` (its length is rows × h).
        let mut y = unsafe { Tensor::uninitialized::<f32>(shape)? };
        {
            let a_ram = inputs[0].try_as_plain_ram()?;
            let b_ram = inputs.get(1).map(|b| b.try_as_plain_ram()).transpose()?;
            let b = b_ram.as_ref().map(|b| b.as_slice::<f32>()).transpose()?;
            let mut y_ram = y.try_as_plain_ram_mut()?;
            let y = y_ram.as_slice_mut::<f32>()?;
            let c_ram = inputs.get(2).map(|c| c.try_as_plain_ram()).transpose()?;
            let c = c_ram.as_ref().map(|c| c.as_slice::<f32>()).transpose()?;
            let a = a_ram.as_slice::<f32>()?;
            let rows = a.len() / h;
            let (gamma, beta, eps) = (&self.gamma[..], &self.beta[..], self.eps);
            // Rows `at` (as element offsets): `(a + c) + b`, c repeated over the batch, the
            // adds in the graph's order.
            let part = |at: std::ops::Range<usize>, y: &mut [f32]| {
                let b = b.map(|b| &b[at.clone()]);
                match c {
                    Some(c) => {
                        let ac: Vec<f32> = at.clone().map(|i| a[i] + c[i % c.len()]).collect();
                        layer_norm_rows(&ac, b, gamma, beta, eps, y)
                    }
                    None => layer_norm_rows(&a[at], b, gamma, beta, eps, y),
                }
            };
            match crate::platform::threads::pool_for(rows).filter(|_| rows >= 2 * MIN_PART_ROWS) {
                // Unsplit, this op ran on one thread while the matmuls around it ran on all:
                // 4.2 of 90 ms at 2 threads, batch 8 × 128 tokens (`bertlite bench --profile`).
                Some(pool) => {
                    use rayon::prelude::*;
                    let size = rows.div_ceil(pool.current_num_threads()).max(MIN_PART_ROWS) * h;
                    pool.install(|| {
                        y.par_chunks_mut(size)
                            .enumerate()
                            .for_each(|(i, y)| part(i * size..i * size + y.len(), y))
                    });
                }
                None => part(0..a.len(), y),
            }
        }
        Ok(tvec![y.into_tvalue()])
    }
}

impl TypedOp for AddLayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f32s = inputs.iter().all(|i| i.datum_type == f32::datum_type());
        ensure!(f32s, "AddLayerNorm wants f32");
        Ok(tvec![f32::fact(inputs[0].shape.clone())])
    }
    as_op!();
}
