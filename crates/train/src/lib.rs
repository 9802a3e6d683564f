//! luodi's trainer: fine-tunes the GGUF model luodi serves, on CPU, in Rust.
//!
//! The base weights are dequantized once to f32; every op's backward is written by hand
//! (`ops`), the model chains them (`model`), and the trainer (`trainer`) runs the loop with
//! AdamW, schedules, evaluation, checkpoints and PEFT-compatible outputs.

pub mod error;
mod gemm;
pub mod gguf_lora;
pub mod gguf_write;
mod memory;
pub mod model;
pub mod ops;
pub mod rng;

pub use error::{Result, TrainError};
pub mod config;
pub mod data;
pub mod merge;
pub mod optim;
pub mod peft;
pub mod schedule;
pub mod tensors;
pub mod trainer;
