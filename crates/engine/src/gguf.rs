//! Typed access to GGUF metadata with errors that name the missing key.

use crate::error::{EngineError, Result};
use candle_core::quantized::gguf_file::{Content, Value};

/// Metadata view over a parsed GGUF header.
pub struct Metadata<'a> {
    content: &'a Content,
}

impl<'a> Metadata<'a> {
    pub fn new(content: &'a Content) -> Self {
        Self { content }
    }

    pub fn content(&self) -> &'a Content {
        self.content
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.content.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| EngineError::MissingMetadata { key: key.to_string() })
    }

    pub fn string(&self, key: &str) -> Result<&'a str> {
        self.require(key)?.to_string().map(|s| s.as_str()).map_err(|_| bad(key, "string"))
    }

    pub fn opt_string(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(|v| v.to_string().ok()).map(|s| s.as_str())
    }

    /// Any integer type, as usize (GGUF writers disagree on u32/u64/i32).
    pub fn usize(&self, key: &str) -> Result<usize> {
        value_as_u64(self.require(key)?).map(|v| v as usize).ok_or_else(|| bad(key, "integer"))
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => value_as_u64(v).map(|v| Some(v as usize)).ok_or_else(|| bad(key, "integer")),
        }
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        value_as_f64(self.require(key)?).map(|v| v as f32).ok_or_else(|| bad(key, "float"))
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => value_as_f64(v).map(|v| Some(v as f32)).ok_or_else(|| bad(key, "float")),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.to_bool().map(Some).map_err(|_| bad(key, "bool")),
        }
    }

    pub fn array(&self, key: &str) -> Result<&'a Vec<Value>> {
        self.require(key)?.to_vec().map_err(|_| bad(key, "array"))
    }

    pub fn opt_array(&self, key: &str) -> Option<&'a Vec<Value>> {
        self.get(key).and_then(|v| v.to_vec().ok())
    }

    pub fn string_array(&self, key: &str) -> Result<Vec<&'a str>> {
        self.array(key)?
            .iter()
            .map(|v| v.to_string().map(|s| s.as_str()).map_err(|_| bad(key, "array of strings")))
            .collect()
    }
}

fn bad(key: &str, expected: &'static str) -> EngineError {
    EngineError::BadMetadata { key: key.to_string(), expected }
}

pub fn value_as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(*x as u64),
        Value::U16(x) => Some(*x as u64),
        Value::U32(x) => Some(*x as u64),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

pub fn value_as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F32(x) => Some(*x as f64),
        Value::F64(x) => Some(*x),
        other => value_as_u64(other).map(|x| x as f64),
    }
}

pub fn value_as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::I8(x) => Some(*x as i64),
        Value::I16(x) => Some(*x as i64),
        Value::I32(x) => Some(*x as i64),
        Value::I64(x) => Some(*x),
        other => value_as_u64(other).map(|x| x as i64),
    }
}
