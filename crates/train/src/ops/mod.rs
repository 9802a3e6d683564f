//! The layers' forward and backward passes, written directly over f32 slices: each op keeps
//! only what its backward needs, and each backward is checked against finite differences.

pub mod activation;
pub mod attention;
pub mod cross_entropy;
pub mod fast_exp;
pub mod linear;
pub mod rmsnorm;
pub mod rope;
#[cfg(test)]
pub mod testing;
