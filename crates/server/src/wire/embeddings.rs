//! `POST /v1/embeddings`: the request and the list of vectors.

use super::rules::{Bound, Rules};
use super::Request;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// Inputs per request: bounds the work one request can queue.
pub const MAX_INPUTS: usize = 2048;

const RULES: Rules = Rules {
    bounds: &[Bound::integer("dimensions", 1.0, u32::MAX as f64)],
    expected: &[
        ("model", "a string: the served embedding model's id"),
        ("input", "a string or a list of strings"),
        ("encoding_format", "float or base64"),
        ("user", "a string"),
    ],
    refused: &[],
};

/// `POST /v1/embeddings`. `dimensions` is refused with a 400 (the model's size is fixed).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// Must be the served embedding model's id; another id is a 404.
    pub model: String,
    #[schema(schema_with = input_schema)]
    pub input: Input,
    /// `float` (default) or `base64` (little-endian f32).
    pub encoding_format: Option<EncodingFormat>,
    /// Not supported: the model's dimension is fixed.
    pub dimensions: Option<u64>,
    pub user: Option<String>,
}

impl Request for EmbeddingRequest {
    const RULES: &'static [&'static Rules] = &[&RULES];
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

fn input_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .min_items(Some(1))
                .max_items(Some(MAX_INPUTS)),
        )
        .description(Some("A string, or a list of 1 to 2048 strings"))
}

impl EmbeddingRequest {
    /// The inputs, and whether to answer in base64.
    pub fn validate(self) -> Result<(Vec<String>, bool), ApiError> {
        if let Some(d) = self.dimensions {
            return Err(ApiError::invalid(
                "dimensions",
                format!("`dimensions` is not supported: the model's dimension is fixed (got {d})"),
            ));
        }
        let inputs = match self.input {
            Input::One(s) => vec![s],
            Input::Many(list) if list.is_empty() => {
                return Err(ApiError::invalid("input", "`input` must not be an empty list"))
            }
            Input::Many(list) if list.len() > MAX_INPUTS => {
                return Err(ApiError::invalid("input", format!("`input` may hold at most {MAX_INPUTS} strings")))
            }
            Input::Many(list) => list,
        };
        Ok((inputs, self.encoding_format == Some(EncodingFormat::Base64)))
    }
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingList<'a> {
    /// `list`
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: &'a str,
    pub usage: EmbeddingUsage,
}

#[derive(Serialize, ToSchema)]
pub struct Embedding {
    /// `embedding`
    pub object: &'static str,
    pub index: usize,
    pub embedding: Vector,
}

/// A vector of floats, or (with `encoding_format: base64`) its little-endian f32 bytes in base64.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}
