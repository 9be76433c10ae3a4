//! [`Attention`]: one layer's self-attention as a tract op; its loops are in
//! [`crate::kernels::attention`].

use tract_nnef::internal::*;

use crate::kernels::attention::{Dims, Scratch, attention_head};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attention {
    pub heads: usize,
    pub head_dim: usize,
    /// Scores from int8 queries and keys (`sdot`), for the int8 path on CPUs with
    /// dot-product ([`crate::kernels::attention::int8_scores_available`]).
    pub int8_scores: bool,
}

impl Op for Attention {
    fn name(&self) -> StaticName {
        "BertliteAttention".into()
    }
    fn info(&self) -> TractResult<Vec<String>> {
        let scores = if self.int8_scores { "int8 (sdot)" } else { "f32" };
        Ok(vec![format!("heads: {}, head_dim: {}, scores: {scores}", self.heads, self.head_dim)])
    }
    op_as_typed_op!();
}

impl EvalOp for Attention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v, mask) = args_4!(inputs);
        let (h, dh) = (self.heads, self.head_dim);
        let shape = q.shape();
        ensure!(
            shape.len() == 3 && shape[2] == h * dh && k.shape() == shape && v.shape() == shape,
            "Attention: q {shape:?}, k {:?}, v {:?}, {h} heads of {dh}",
            k.shape(),
            v.shape()
        );
        let (batch, seq) = (shape[0], shape[1]);
        let m = mask.shape();
        ensure!(
            m.len() == 4 && m[1] == 1 && m[2] == 1 && m[3] == seq && (m[0] == batch || m[0] == 1),
            "Attention: mask {m:?} for {batch} × {seq} tokens"
        );
        if q.len() == 0 {
            return Ok(tvec![Tensor::zero::<f32>(shape)?.into_tvalue()]);
        }
        // SAFETY: every (batch, row, head) slice of the output is written below.
        let mut out = unsafe { Tensor::uninitialized::<f32>(shape)? };
        {
            let (q_ram, k_ram, v_ram, m_ram) = (
                q.try_as_plain_ram()?,
                k.try_as_plain_ram()?,
                v.try_as_plain_ram()?,
                mask.try_as_plain_ram()?,
            );
            let (q, k, v) =
                (q_ram.as_slice::<f32>()?, k_ram.as_slice::<f32>()?, v_ram.as_slice::<f32>()?);
            let mask = m_ram.as_slice::<f32>()?;
            let mut out_ram = out.try_as_plain_ram_mut()?;
            let out = out_ram.as_slice_mut::<f32>()?;
            let per_batch = seq * h * dh;
            let pool = crate::platform::threads::pool_for(batch * seq);
            let dims = |head, out_stride| Dims {
                seq,
                heads: h,
                dh,
                head,
                out_stride,
                int8_scores: self.int8_scores,
            };
            // Text b's queries, keys, values and mask.
            let inputs = |b: usize| {
                let mask = &mask[if m[0] == 1 { 0 } else { b * seq }..][..seq];
                let range = b * per_batch..(b + 1) * per_batch;
                (&q[range.clone()], &k[range.clone()], &v[range], mask)
            };
            // One text of the batch: its heads in turn, straight into its output rows.
            let text = |b: usize, out: &mut [f32], scratch: &mut Scratch| {
                let (q, k, v, mask) = inputs(b);
                for head in 0..h {
                    let o = &mut out[head * dh..];
                    attention_head(q, k, v, mask, dims(head, h * dh), scratch, o);
                }
            };
            match &pool {
                // With --threads > 1 and a batch of at least one text per thread, the texts
                // are split over tract's pool (one dispatch for the op).
                Some(pool) if batch >= pool.current_num_threads() => {
                    use rayon::prelude::*;
                    pool.install(|| {
                        out.par_chunks_mut(per_batch).enumerate().for_each_init(
                            || Scratch::new(seq, dh),
                            |scratch, (b, out)| text(b, out, scratch),
                        )
                    });
                }
                // Fewer texts: each text's heads are split, each into its own `[seq, dh]`
                // block, scattered into the interleaved output after.
                Some(pool) if h > 1 => {
                    use rayon::prelude::*;
                    for (b, out) in out.chunks_exact_mut(per_batch).enumerate() {
                        let (q, k, v, mask) = inputs(b);
                        let blocks: Vec<Vec<f32>> = pool.install(|| {
                            (0..h)
                                .into_par_iter()
                                // One scratch per rayon job, not per head.
                                .map_init(
                                    || Scratch::new(seq, dh),
                                    |scratch, head| {
                                        let mut block = vec![0f32; seq * dh];
                                        let dims = dims(head, dh);
                                        attention_head(q, k, v, mask, dims, scratch, &mut block);
                                        block
                                    },
                                )
                                .collect()
                        });
                        for (head, block) in blocks.iter().enumerate() {
                            for (row, src) in block.chunks_exact(dh).enumerate() {
                                out[row * h * dh + head * dh..][..dh].copy_from_slice(src);
                            }
                        }
                    }
                }
                _ => {
                    let mut scratch = Scratch::new(seq, dh);
                    for (b, out) in out.chunks_exact_mut(per_batch).enumerate() {
                        text(b, out, &mut scratch);
                    }
                }
            }
        }
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.iter().all(|i| i.datum_type == f32::datum_type()), "Attention wants f32");
        Ok(tvec![f32::fact(inputs[0].shape.clone())])
    }
    as_op!();
}
