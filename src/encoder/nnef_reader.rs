//! The NNEF reader for bundle graphs: only the operators bertlite's host tool writes.
//!
//! `tract_nnef::nnef()` registers a loader for every tract-core operator (convolutions, STFT,
//! LSTM, scatter, ...). Each loader names its operator, so a binary that calls it links the whole
//! operator zoo, about 4 MB of a board binary, for a BERT that runs a dozen kinds of node. This
//! reader registers the NNEF standard operators a BERT encoder is made of and the four
//! `tract_core` extensions our graphs use (external, cast, gather, erf), so link-time
//! optimization can drop the rest. For this to work, tract-nnef is vendored with its `patch`
//! transform no longer registered through `inventory`: that registration called
//! `tract_nnef::nnef()` from every binary (vendor/README.md).
//!
//! A bundle naming another operator fails to load with an error naming it. The unit tests below
//! read back every kind of node the host tool's graph builder (tools/src/graph.rs) emits; the
//! integration tests load every real bundle through this reader.

use tract_nnef::internal::*;
use tract_nnef::ops::nnef::deser;
use tract_nnef::tract_core::ops;
use tract_nnef::tract_core::ops::array::Gather;
use tract_nnef::tract_core::ops::cast::Cast;

/// The NNEF framework that reads bundle graphs.
pub fn framework() -> Nnef {
    let stdlib = tract_nnef::framework::stdlib();
    Nnef {
        registries: vec![standard_ops(&stdlib), tract_core_ops()],
        stdlib,
        resource_loaders: vec![GraphNnefLoader.into_boxed(), DatLoader.into_boxed()],
        allow_extended_identifier_syntax: false,
        extern_all_constants: false,
    }
}

/// The NNEF standard operators an encoder graph is written with (registry `tract_nnef`).
fn standard_ops(stdlib: &[FragmentDef]) -> Registry {
    let mut registry = Registry::new("tract_nnef");
    let primitives: &[(&str, ToTract)] = &[
        ("external", deser::external),
        ("variable", deser::variable),
        ("reshape", checked::reshape),
        ("transpose", checked::transpose),
        ("concat", checked::concat),
        ("slice", checked::slice),
        ("squeeze", checked::squeeze),
        ("unsqueeze", checked::unsqueeze),
        ("matmul", deser::matmul),
        ("sum_reduce", checked::reduce),
        ("max_reduce", checked::reduce),
        ("min_reduce", checked::reduce),
        ("softmax", checked::softmax),
    ];
    for &(id, load) in primitives {
        // The declarations (parameters, defaults) are the standard's own, from tract's stdlib,
        // which declares all of these; one it did not would stay unknown and fail by name.
        if let Some(decl) = stdlib.iter().find(|f| f.decl.id.0 == id).map(|f| &f.decl) {
            registry.register_primitive(id, &decl.parameters, &decl.results, load);
        }
    }
    registry.register_binary("add", &ops::math::Add {});
    registry.register_binary("sub", &ops::math::Sub {});
    registry.register_binary("mul", &ops::math::Mul {});
    registry.register_binary("div", &ops::math::Div {});
    registry.register_binary("pow", &ops::math::Pow {});
    registry.register_binary("min", &ops::math::Min {});
    registry.register_binary("max", &ops::math::Max {});
    registry.register_unit_element_wise("exp", &ops::math::Exp {});
    registry.register_unit_element_wise("log", &ops::math::Ln {});
    registry.register_unit_element_wise("abs", &ops::math::Abs {});
    registry.register_unit_element_wise("neg", &ops::math::Neg {});
    registry.register_unit_element_wise("recip", &ops::math::Recip {});
    registry.register_unit_element_wise("square", &ops::math::Square {});
    registry.register_unit_element_wise("sqrt", &ops::math::Sqrt {});
    registry.register_unit_element_wise("rsqrt", &ops::math::Rsqrt {});
    registry.register_unit_element_wise("tanh", &ops::math::Tanh {});
    registry.register_unit_element_wise("sigmoid", &ops::nn::Sigmoid {});
    registry
}

/// The `tract_core` extension operators our graphs use (registry `tract_core`). Their loaders
/// are private in tract-nnef, so these follow tract-nnef 0.23.9's `ops/core/{source,cast,gather}.rs`.
fn tract_core_ops() -> Registry {
    let mut registry = Registry::new("tract_core");
    registry.register_unit_element_wise("tract_core_erf", &ops::math::Erf {});
    registry.register_primitive(
        "tract_core_external",
        &[TypeName::String.named("datum_type"), TypeName::Integer.array().named("shape")],
        &[("output", TypeName::Any.tensor())],
        load_external,
    );
    registry.register_primitive(
        "tract_core_cast",
        &[TypeName::Scalar.tensor().named("input"), TypeName::String.named("to")],
        &[("output", TypeName::Scalar.tensor())],
        load_cast,
    );
    registry.register_primitive(
        "tract_core_gather",
        &[
            TypeName::Scalar.tensor().named("input"),
            TypeName::Scalar.tensor().named("indices"),
            TypeName::Integer.named("axis"),
        ],
        &[("output", TypeName::Scalar.tensor())],
        load_gather,
    );
    registry
}

/// A graph input (`input_ids`, ...), with symbolic dimensions such as `batch` and `seq`.
fn load_external(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let shape: TVec<TDim> =
        builder.allowing_new_symbols(|builder| invocation.named_arg_as(builder, "shape"))?;
    let mut dt: DatumType = invocation.named_arg_as::<String>(builder, "datum_type")?.parse()?;
    if let Some(Some(quantized)) = invocation.dt_from_quant_file.first() {
        dt = *quantized;
    }
    Ok(Value::Wire(builder.model.add_source("", dt.fact(&*shape))?))
}

fn load_cast(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let from_quant = invocation.dt_from_quant_file.first().copied().flatten();
    let to = match invocation.named_arg_as::<String>(builder, "to") {
        Ok(name) => {
            let dt: DatumType = name.parse()?;
            match from_quant {
                Some(q) if q.unquantized() != dt.unquantized() => {
                    bail!("mismatched cast: graph.quant says {q:?}, graph.nnef {dt:?}")
                }
                Some(q) => q,
                None => dt,
            }
        }
        Err(_) => from_quant.context("no datum type for cast")?,
    };
    builder.wire(Cast { to }, &[input])
}

fn load_gather(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    checked::axes_below_rank(builder, invocation, "input", "axis", 0)?;
    let input = invocation.named_arg_as(builder, "input")?;
    let indices = invocation.named_arg_as(builder, "indices")?;
    let output_type: Option<DatumType> = invocation
        .optional_named_arg_as::<String>(builder, "datum_type")?
        .map(|s| s.parse())
        .transpose()?;
    let indices = builder.wire_as_outlets(ops::cast::cast(i64::datum_type()), &[indices])?[0];
    let axis = invocation.named_arg_as(builder, "axis")?;
    builder.wire(Gather { axis, output_type }, &[input, indices])
}

/// tract's loaders index the input's shape with the graph's axes without checking them, so a
/// damaged graph panics inside tract (the fuzzers found reshape and transpose). Each loader
/// here checks its axes against the input's rank, then hands over to tract's.
mod checked {
    use super::*;

    fn rank(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
        input: &str,
    ) -> TractResult<usize> {
        let input: OutletId = invocation.named_arg_as(builder, input)?;
        Ok(builder.model.outlet_fact(input)?.rank())
    }

    /// Every entry of the integer (or integer array) argument `arg` is below the rank of
    /// `input` plus `extra`, and none repeats.
    pub(super) fn axes_below_rank(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
        input: &str,
        arg: &str,
        extra: usize,
    ) -> TractResult<TVec<usize>> {
        let limit = rank(builder, invocation, input)? + extra;
        let axes: TVec<i64> = match invocation.named_arg_as::<TVec<i64>>(builder, arg) {
            Ok(axes) => axes,
            Err(_) => tvec![invocation.named_arg_as::<i64>(builder, arg)?],
        };
        let mut seen = tvec![false; limit];
        for &axis in &axes {
            let Some(slot) = usize::try_from(axis).ok().and_then(|a| seen.get_mut(a)) else {
                bail!("{arg} {axis} is outside the {limit} axes of its input");
            };
            ensure!(!*slot, "{arg} repeats axis {axis}");
            *slot = true;
        }
        Ok(axes.iter().map(|&a| a as usize).collect())
    }

    pub(super) fn reshape(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
    ) -> TractResult<Value> {
        let rank = rank(builder, invocation, "input")?;
        let start: i64 = invocation.named_arg_as(builder, "axis_start")?;
        let count: i64 = invocation.named_arg_as(builder, "axis_count")?;
        let end = if count == -1 { Some(rank as i64) } else { start.checked_add(count) };
        ensure!(
            start >= 0 && count >= -1 && end.is_some_and(|end| start <= end && end <= rank as i64),
            "reshape of axes {start}..+{count} on an input of rank {rank}"
        );
        // A 0 in `shape` copies the input's axis `start + i`.
        if let Ok(shape) = invocation.named_arg_as::<TVec<TDim>>(builder, "shape") {
            for (i, d) in shape.iter().enumerate() {
                ensure!(
                    *d != 0.to_dim() || (start as usize + i) < rank,
                    "reshape copies axis {} of an input of rank {rank}",
                    start as usize + i
                );
            }
        }
        deser::reshape(builder, invocation)
    }

    pub(super) fn transpose(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
    ) -> TractResult<Value> {
        let rank = rank(builder, invocation, "input")?;
        let axes = axes_below_rank(builder, invocation, "input", "axes", 0)?;
        ensure!(axes.len() == rank, "transpose of {} axes on an input of rank {rank}", axes.len());
        deser::transpose(builder, invocation)
    }

    pub(super) fn concat(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
    ) -> TractResult<Value> {
        let values: TVec<OutletId> = invocation.named_arg_as(builder, "values")?;
        let ranks = values
            .iter()
            .map(|v| builder.model.outlet_fact(*v).map(|f| f.rank()))
            .collect::<TractResult<TVec<usize>>>()?;
        let axis: i64 = invocation.named_arg_as(builder, "axis")?;
        ensure!(!ranks.is_empty(), "concat of nothing");
        ensure!(ranks.iter().all(|&r| r == ranks[0]), "concat of inputs of ranks {ranks:?}");
        ensure!((0..ranks[0] as i64).contains(&axis), "concat on axis {axis} of rank {}", ranks[0]);
        deser::concat(builder, invocation)
    }

    pub(super) fn slice(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
    ) -> TractResult<Value> {
        let axes = axes_below_rank(builder, invocation, "input", "axes", 0)?;
        for bound in ["begin", "end"] {
            if let Ok(values) = invocation.named_arg_as::<TVec<TDim>>(builder, bound) {
                ensure!(
                    values.len() == axes.len(),
                    "slice has {} axes but {} {bound} values",
                    axes.len(),
                    values.len()
                );
            }
        }
        deser::slice(builder, invocation)
    }

    pub(super) fn squeeze(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
    ) -> TractResult<Value> {
        axes_below_rank(builder, invocation, "input", "axes", 0)?;
        deser::squeeze(builder, invocation)
    }

    pub(super) fn unsqueeze(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
    ) -> TractResult<Value> {
        let added = match invocation.named_arg_as::<TVec<i64>>(builder, "axes") {
            Ok(axes) => axes.len(),
            Err(_) => 1,
        };
        axes_below_rank(builder, invocation, "input", "axes", added)?;
        deser::unsqueeze(builder, invocation)
    }

    pub(super) fn reduce(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
    ) -> TractResult<Value> {
        axes_below_rank(builder, invocation, "input", "axes", 0)?;
        deser::reduce(builder, invocation)
    }

    pub(super) fn softmax(
        builder: &mut ModelBuilder,
        invocation: &ResolvedInvocation,
    ) -> TractResult<Value> {
        axes_below_rank(builder, invocation, "x", "axes", 0)?;
        deser::softmax(builder, invocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operator kind the host tool's graph builder emits, written by tract's full NNEF
    /// framework and read back by ours.
    #[test]
    fn reads_what_the_full_framework_writes() -> TractResult<()> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 3, 4]))?;
        let ids = model.add_source("ids", i64::fact([2, 3]))?;
        let table = model.add_const("table", Tensor::zero::<f32>(&[10, 4])?)?;
        let emb = model.wire_node("emb", Gather::new(0), &[table, ids])?[0];
        let y = model.wire_node("sum", ops::math::add(), &[x, emb])?[0];
        let y = model.wire_node("erf", ops::math::erf(), &[y])?[0];
        let y = model.wire_node("rsqrt", ops::math::rsqrt(), &[y])?[0];
        let y = model.wire_node(
            "softmax",
            ops::nn::Softmax::new(tvec![2], None, ops::nn::SoftmaxKind::Softmax),
            &[y],
        )?[0];
        let y = model.wire_node(
            "mean",
            ops::nn::Reduce::new(tvec![2], ops::nn::Reducer::MeanOfSquares),
            &[y],
        )?[0];
        let y = model.wire_node("cast", ops::cast::cast(f32::datum_type()), &[y])?[0];
        model.select_output_outlets(&[y])?;
        let mut tar = vec![];
        tract_nnef::nnef().write_to_tar(&model, &mut tar)?;
        let read = framework().model_for_read(&mut &*tar)?;
        assert_eq!(read.input_outlets()?.len(), 2);
        assert_eq!(read.output_outlets()?.len(), 1);
        Ok(())
    }

    #[test]
    fn unknown_operator_is_an_error_naming_it() {
        let graph = "version 1.0;\nextension tract_registry tract_core;\n\
                     graph g(x) -> (y) {\n  x = external<scalar>(shape = [2]);\n  \
                     y = tract_core_stft(x);\n}\n";
        let mut tar = tar_with_graph(graph);
        let err = framework().model_for_read(&mut &*tar.as_mut_slice()).err();
        let msg = format!("{:?}", err.expect("an unknown op must not load"));
        assert!(msg.contains("tract_core_stft"), "{msg}");
    }

    /// Axes outside the input's rank are errors naming them, not panics inside tract.
    #[test]
    fn axes_beyond_the_rank_are_errors() {
        for (body, needle) in [
            ("y = transpose(x, axes = [1, 1]);", "repeats axis 1"),
            ("y = transpose(x, axes = [0]);", "transpose of 1 axes on an input of rank 2"),
            ("y = reshape(x, shape = [0, 0, 0], axis_start = 1, axis_count = 1);", "copies axis 2"),
            ("y = reshape(x, shape = [4], axis_start = 3);", "rank 2"),
            ("y = squeeze(x, axes = [5]);", "axes 5 is outside the 2 axes"),
            ("y = unsqueeze(x, axes = [4]);", "outside the 3 axes"),
            ("y = sum_reduce(x, axes = [-1]);", "axes -1 is outside"),
            ("y = softmax(x, axes = [2]);", "axes 2 is outside"),
            ("y = slice(x, axes = [0, 1], begin = [0], end = [1, 1]);", "2 axes but 1 begin"),
            ("y = concat([x, x], axis = 2);", "concat on axis 2"),
        ] {
            let graph = format!(
                "version 1.0;\ngraph g(x) -> (y) {{\n  x = external<scalar>(shape = [2, 3]);\n  {body}\n}}\n"
            );
            let tar = tar_with_graph(&graph);
            let err = framework().model_for_read(&mut tar.as_slice()).err();
            let msg = format!("{:#}", err.expect(body));
            assert!(msg.contains(needle), "{body}: {msg}");
        }
    }

    fn tar_with_graph(graph: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(vec![]);
        let mut header = tar::Header::new_gnu();
        header.set_size(graph.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "graph.nnef", graph.as_bytes()).expect("tar in memory");
        builder.into_inner().expect("tar in memory")
    }
}
