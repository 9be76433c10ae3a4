//! `ort-baseline LIBONNXRUNTIME MODEL RUNS ID,ID,...`: loads ONNX Runtime from the given
//! library, one intra-op and one inter-op thread, all graph optimizations, and runs MODEL
//! RUNS times on one text (batch 1) of the given token ids; prints the first output's length.
//! Counting its instructions with 1 and 11 runs gives one inference's cost (cross/ort-baseline.sh).

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, lib, model, runs, ids] = &args[..] else {
        return Err("usage: ort-baseline LIBONNXRUNTIME MODEL RUNS ID,ID,...".into());
    };
    let runs: usize = runs.parse()?;
    let ids: Vec<i64> = ids.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let t = ids.len();
    let environment = ort::init_from(lib)?.with_telemetry(false).build()?;
    let mut session = Session::builder(&environment)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_threads(1)?
        .with_inter_threads(1)?
        .with_parallel_execution(false)?
        .commit_from_file(model)?;
    // Inputs made once, as bertlite's bench makes its batch once.
    let input_ids = Tensor::from_array(([1usize, t], ids.clone()))?;
    let mask = Tensor::from_array(([1usize, t], vec![1i64; t]))?;
    let types = Tensor::from_array(([1usize, t], vec![0i64; t]))?;
    let mut len = 0;
    for _ in 0..runs {
        let outputs = session.run(ort::inputs![
            "input_ids" => &input_ids,
            "attention_mask" => &mask,
            "token_type_ids" => &types,
        ])?;
        len = outputs[0].try_extract_tensor::<f32>()?.1.len();
    }
    println!("{len}");
    Ok(())
}
