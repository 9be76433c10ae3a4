//! Checks a bundle's graph before anything trusts it: the NNEF archive's tensor files against
//! the archive's real length (so no allocation is sized from a damaged header), and the parsed
//! graph's weights against the metadata (shapes, finite values).
//!
//! The bundle's checksum catches accidents; these checks are for what a checksum cannot catch:
//! a bundle written by a buggy or hostile tool, or a checkpoint that already held NaNs.

use std::io::Read;

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::array::Gather;
use tract_nnef::tract_core::ops::konst::Const;

use crate::bundle::EncoderInfo;
use crate::error::{Error, Result};

/// The fixed header of an NNEF tensor file (`.dat`), before its data.
const DAT_HEADER: usize = 128;

/// Every `.dat` entry's declared data size fits in the entry, and every entry in the archive.
///
/// tract allocates a tensor from the header's shape before reading its data; a header claiming
/// gigabytes would allocate them (and abort on a 32-bit board) before failing to read.
pub(crate) fn check_archive(graph: &[u8]) -> Result<()> {
    let bad =
        |what: String| Error::bundle(format!("the bundle's graph archive is damaged: {what}"));
    let mut archive = tar::Archive::new(graph);
    let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        let size = entry.header().size().map_err(|e| bad(format!("{name}: {e}")))?;
        if size > graph.len() as u64 {
            return Err(bad(format!(
                "{name} claims {size} bytes, the archive has {}",
                graph.len()
            )));
        }
        if !name.ends_with(".dat") {
            continue;
        }
        let mut header = [0u8; DAT_HEADER];
        entry
            .read_exact(&mut header)
            .map_err(|_| bad(format!("{name} is shorter than its header")))?;
        let data = u64::from(u32::from_le_bytes([header[4], header[5], header[6], header[7]]));
        if DAT_HEADER as u64 + data > size {
            return Err(bad(format!(
                "{name} declares {data} bytes of data but holds {}",
                size - DAT_HEADER as u64
            )));
        }
    }
    Ok(())
}

/// Where a weight sits in the encoder, from the names the host tool gives them
/// (tools/src/graph.rs: `embeddings.word`, `layer3.ffn_in.weight`, their int8 forms `.q`), as
/// NNEF identifiers (`embeddings_word`, `layer3_ffn_in_weight_q`).
fn expected_shape(name: &str, info: &EncoderInfo) -> Option<Result<[usize; 2]>> {
    let name = name.strip_suffix("_q").unwrap_or(name);
    let h = info.hidden;
    match name {
        "embeddings_word" => return Some(Ok([info.vocab_size, h])),
        "embeddings_position" => return Some(Ok([info.max_position, h])),
        _ => {}
    }
    let (layer, rest) = name.strip_prefix("layer")?.split_once('_')?;
    let layer: usize = layer.parse().ok()?;
    let linear = rest.strip_suffix("_weight")?;
    let (Some(&heads), Some(&ffn)) = (info.heads.get(layer), info.intermediate.get(layer)) else {
        return Some(Err(Error::bundle(format!(
            "the graph has a layer {layer} but the metadata describes {} layers",
            info.heads.len()
        ))));
    };
    let attention = heads * info.head_dim;
    Some(Ok(match linear {
        "query" | "key" | "value" => [attention, h],
        "attn_out" => [h, attention],
        "ffn_in" => [ffn, h],
        "ffn_out" => [h, ffn],
        _ => return None,
    }))
}

/// The parsed graph agrees with the metadata: every weight the host tool names has the shape
/// the metadata implies, every layer the metadata lists is there, and no float constant holds
/// a NaN or an infinity (each would turn every answer into NaN without an error).
pub(crate) fn check_model(model: &TypedModel, info: &EncoderInfo) -> Result<()> {
    let mut layers = vec![false; info.heads.len()];
    for node in model.nodes() {
        let Some(konst) = node.op_as::<Const>() else { continue };
        let tensor = konst.val();
        check_finite(&node.name, tensor)?;
        // Pair inputs use token type 1.
        if node.name == "embeddings_token_type"
            && (tensor.rank() != 2 || tensor.shape()[0] < 2 || tensor.shape()[1] != info.hidden)
        {
            return Err(Error::bundle(format!(
                "graph tensor {} has shape {:?}, the metadata implies [2, {}]",
                node.name,
                tensor.shape(),
                info.hidden
            )));
        }
        let Some(expected) = expected_shape(&node.name, info) else { continue };
        let expected = expected?;
        if tensor.shape() != expected {
            return Err(Error::bundle(format!(
                "graph tensor {} has shape {:?}, the metadata implies {expected:?}",
                node.name,
                tensor.shape()
            )));
        }
        let layer = node.name.strip_prefix("layer").and_then(|r| r.split_once('_'));
        if let Some(seen) = layer.and_then(|(i, _)| layers.get_mut(i.parse::<usize>().ok()?)) {
            *seen = true;
        }
    }
    check_gather_indices(model)?;
    if let Some(missing) = layers.iter().position(|seen| !seen) {
        return Err(Error::bundle(format!(
            "the metadata describes {} layers but the graph has no weights for layer {missing}",
            info.heads.len()
        )));
    }
    Ok(())
}

/// Every gather whose indices are constants (the position ids, sliced) reads inside its table:
/// tract indexes without checking, and would panic.
fn check_gather_indices(model: &TypedModel) -> Result<()> {
    for node in model.nodes() {
        let Some(gather) = node.op_as::<Gather>() else { continue };
        let (Some(&data), Some(&indices)) = (node.inputs.first(), node.inputs.get(1)) else {
            continue;
        };
        // Walk back through casts and slices (the slice to `seq`, whose bounds are its other
        // inputs) to a constant, if there is one.
        let mut source = indices.node;
        loop {
            let n = &model.nodes()[source];
            let passes = n.inputs.len() == 1 || matches!(&*n.op().name(), "DynSlice" | "Slice");
            match n.inputs.first() {
                Some(input) if passes => source = input.node,
                _ => break,
            }
        }
        let Some(konst) = model.nodes()[source].op_as::<Const>() else { continue };
        let rows = model
            .outlet_fact(data)
            .ok()
            .and_then(|f| f.shape.get(gather.axis).and_then(|d| d.to_usize().ok()));
        let Some(rows) = rows else { continue };
        let Ok(values) = konst.val().cast_to::<i64>() else { continue };
        let Ok(ram) = values.try_as_plain_ram() else { continue };
        let Ok(values) = ram.as_slice::<i64>() else { continue };
        if let Some(bad) =
            values.iter().find(|&&v| usize::try_from(v).is_ok_and(|v| v >= rows) || v < 0)
        {
            return Err(Error::bundle(format!(
                "graph tensor {} holds index {bad}, outside the {rows} rows it selects from",
                model.nodes()[source].name
            )));
        }
    }
    Ok(())
}

/// Refuses a float tensor holding NaN or ±infinity, naming it and the first bad index.
fn check_finite(name: &str, tensor: &Tensor) -> Result<()> {
    fn position<T: Datum>(tensor: &Tensor, bad: impl Fn(&T) -> bool) -> Option<usize> {
        let ram = tensor.try_as_plain_ram().ok()?;
        ram.as_slice::<T>().ok()?.iter().position(bad)
    }
    let first_bad = match tensor.datum_type() {
        DatumType::F32 => position::<f32>(tensor, |x| !x.is_finite()),
        DatumType::F16 => position::<f16>(tensor, |x| !x.to_f32().is_finite()),
        DatumType::F64 => position::<f64>(tensor, |x| !x.is_finite()),
        _ => None,
    };
    match first_bad {
        Some(i) => Err(Error::bundle(format!(
            "graph tensor {name} holds a non-finite value (NaN or infinity) at index {i}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> EncoderInfo {
        EncoderInfo {
            hidden: 4,
            head_dim: 2,
            heads: vec![2, 1],
            intermediate: vec![8, 6],
            vocab_size: 10,
            max_position: 16,
            parameters: 0,
            macs_per_token: 0,
            macs_per_token_sq: 0,
            encoder_outputs: false,
            int8_calibrated: false,
        }
    }

    #[test]
    fn shapes_follow_the_metadata() {
        let i = info();
        let shape = |n: &str| expected_shape(n, &i).map(|r| r.ok());
        assert_eq!(shape("embeddings_word_q"), Some(Some([10, 4])));
        assert_eq!(shape("embeddings_word_scale"), None);
        assert_eq!(shape("embeddings_position"), Some(Some([16, 4])));
        assert_eq!(shape("layer1_query_weight"), Some(Some([2, 4])));
        assert_eq!(shape("layer1_attn_out_weight_q"), Some(Some([4, 2])));
        assert_eq!(shape("layer0_ffn_in_weight"), Some(Some([8, 4])));
        assert_eq!(shape("layer0_ffn_out_weight"), Some(Some([4, 8])));
        assert_eq!(shape("layer0_query_weight_scale"), None);
        assert_eq!(shape("layer0_query_add_bias"), None);
        assert_eq!(shape("mask_big"), None);
        assert_eq!(shape("layer2_query_weight"), Some(None), "a layer the metadata lacks");
    }

    #[test]
    fn non_finite_constants_are_named() {
        let mut model = TypedModel::default();
        model.add_const("layer0_query_bias", tensor1(&[1.0f32, f32::NAN])).unwrap();
        let err = check_model(&model, &EncoderInfo { heads: vec![], ..info() }).unwrap_err();
        assert!(
            err.to_string().contains("layer0_query_bias") && err.to_string().contains("index 1")
        );
        let mut model = TypedModel::default();
        model.add_const("x", tensor1(&[f16::from_f32(f32::INFINITY)])).unwrap();
        assert!(check_model(&model, &EncoderInfo { heads: vec![], ..info() }).is_err());
    }

    #[test]
    fn archive_sizes_are_checked_before_reading() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut dat = vec![0u8; DAT_HEADER + 8];
        dat[4..8].copy_from_slice(&8u32.to_le_bytes());
        let mut header = tar::Header::new_gnu();
        header.set_size(dat.len() as u64);
        header.set_cksum();
        tar.append_data(&mut header, "w.dat", dat.as_slice()).unwrap();
        let good = tar.into_inner().unwrap();
        check_archive(&good).unwrap();

        // The same tensor claiming 4 GB of data.
        let mut lying = dat.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(lying.len() as u64);
        header.set_cksum();
        tar.append_data(&mut header, "w.dat", lying.as_slice()).unwrap();
        let err = check_archive(&tar.into_inner().unwrap()).unwrap_err();
        assert!(err.to_string().contains("w.dat declares 4294967295 bytes"), "{err}");
    }
}
