//! End-to-end tests on the real all-MiniLM-L6-v2 (fetched by tools/setup.sh) and the bundles
//! tools/test.sh compiles from it. References are independent: HF `tokenizers` and a float64
//! numpy forward pass (tools/reference/), golden files in tests/golden/.

mod common;

mod cli;
mod contract;
mod fidelity;
mod layers;
mod onnx_import;
mod robustness;
mod tasks;
mod token_outputs;
mod tokenizer_parity;
