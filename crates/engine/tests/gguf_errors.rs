//! Bad model files are refused with errors that say what is wrong, never a panic.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use luodi_engine::{Engine, EngineError};
use std::path::Path;

fn write_gguf(path: &Path, metadata: &[(&str, Value)]) {
    let t =
        QTensor::quantize(&Tensor::zeros((32, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::Q8_0)
            .unwrap();
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &meta, &[("token_embd.weight", &t)]).unwrap();
}

fn load_err(metadata: &[(&str, Value)]) -> EngineError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_gguf(&path, metadata);
    Engine::load(&path).err().expect("must be refused")
}

#[test]
fn unknown_architecture_is_named() {
    let err = load_err(&[("general.architecture", Value::String("mamba".into()))]);
    assert!(matches!(err, EngineError::UnsupportedArchitecture(ref a) if a == "mamba"), "{err}");
    assert!(err.to_string().contains("supported: llama, gemma3"), "{err}");
}

#[test]
fn missing_architecture_key_is_named() {
    let err = load_err(&[("general.name", Value::String("x".into()))]);
    assert!(err.to_string().contains("`general.architecture`"), "{err}");
}

#[test]
fn missing_tokenizer_or_model_key_is_named() {
    let err = load_err(&[("general.architecture", Value::String("llama".into()))]);
    let msg = err.to_string();
    assert!(msg.contains("GGUF metadata key `") && msg.contains("is missing"), "{msg}");
}

#[test]
fn not_a_gguf_file_is_a_file_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.gguf");
    std::fs::write(&path, b"this is not a model").unwrap();
    let err = Engine::load(&path).err().expect("must be refused").to_string();
    assert!(err.contains("junk.gguf") && err.contains("truncated or corrupt"), "{err}");
}

#[test]
fn missing_file_is_a_file_error() {
    let err = Engine::load(Path::new("/nonexistent/model.gguf")).err().expect("must be refused").to_string();
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}
