//! Our tract ops: each takes tract tensors, checks their shapes, and runs a kernel of
//! [`crate::kernels`] over them. The rewrites of [`crate::rewrite`] put them into the graph.

pub mod attention;
pub mod int8;
pub mod layer_norm;
pub mod softmax;
