//! [`MaskedSoftmax`]: the attention mask add and softmax as one tract op.

use tract_nnef::internal::*;

use crate::kernels::softmax::masked_softmax_rows;

/// middle axes (heads, query positions) of `scores [d0, .., t]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedSoftmax;

impl Op for MaskedSoftmax {
    fn name(&self) -> StaticName {
        "BertliteMaskedSoftmax".into()
    }
    op_as_typed_op!();
}

impl EvalOp for MaskedSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (scores, mask) = args_2!(inputs);
        let (s, m) = (scores.shape(), mask.shape());
        ensure!(mask_broadcasts(s, m, &1), "MaskedSoftmax: mask {m:?} does not fit scores {s:?}");
        let width = s.last().copied().unwrap_or(0);
        if width == 0 || scores.len() == 0 {
            return Ok(tvec![Tensor::zero::<f32>(s)?.into_tvalue()]);
        }
        // SAFETY: `masked_softmax_rows` writes every row of `p` (its length is rows × width).
        let mut p = unsafe { Tensor::uninitialized::<f32>(s)? };
        {
            let rows_per_mask = scores.len() / mask.len();
            let s_ram = scores.try_as_plain_ram()?;
            let m_ram = mask.try_as_plain_ram()?;
            let mut p_ram = p.try_as_plain_ram_mut()?;
            let (s, m) = (s_ram.as_slice::<f32>()?, m_ram.as_slice::<f32>()?);
            masked_softmax_rows(s, m, width, rows_per_mask, p_ram.as_slice_mut::<f32>()?);
        }
        Ok(tvec![p.into_tvalue()])
    }
}

/// Whether `mask` is `[1 or d0, 1, .., 1, t]` against `scores [d0, .., t]`.
pub(crate) fn mask_broadcasts<D: PartialEq>(scores: &[D], mask: &[D], one: &D) -> bool {
    let r = scores.len();
    r >= 2
        && mask.len() == r
        && mask[r - 1] == scores[r - 1]
        && (mask[0] == scores[0] || mask[0] == *one)
        && mask[1..r - 1].iter().all(|d| d == one)
}

impl TypedOp for MaskedSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f32s = inputs.iter().all(|i| i.datum_type == f32::datum_type());
        ensure!(f32s, "MaskedSoftmax wants f32");
        Ok(tvec![f32::fact(inputs[0].shape.clone())])
    }
    as_op!();
}
