//! The sampling fields shared by chat completions, completions and `/generate`, flattened
//! into each request. OpenAI's defaults (temperature 1, top_p 1, no top-k or min-p) unless
//! the luodi extensions `top_k`, `min_p`, `repetition_penalty` are given.

use super::rules::{Bound, Rules};
use crate::backend::Sampling;
use crate::error::ApiError;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

pub const RULES: Rules = Rules {
    bounds: &[
        Bound::number("temperature", 0.0, 2.0),
        Bound::above("top_p", 0.0, 1.0),
        Bound::integer("top_k", 0.0, 1_000_000.0),
        Bound::number("min_p", 0.0, 1.0),
        Bound::above("repetition_penalty", 0.0, 10.0),
        Bound::number("frequency_penalty", -2.0, 2.0),
        Bound::number("presence_penalty", -2.0, 2.0),
        Bound::integer("n", 1.0, 1.0),
    ],
    expected: &[("seed", "an integer"), ("stop", "a string or a list of strings")],
    refused: &[],
};

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SamplingFields {
    /// 0 picks the most likely token (greedy).
    pub temperature: Option<f64>,
    /// Nucleus sampling: keep the most likely tokens whose probabilities add up to `top_p`.
    pub top_p: Option<f64>,
    /// Same seed, same request, same answer.
    pub seed: Option<Seed>,
    #[schema(schema_with = stop_schema)]
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Only one choice per request.
    pub n: Option<u64>,
    /// luodi extension: keep the k most likely tokens (0: off).
    pub top_k: Option<u64>,
    /// luodi extension: drop tokens below `min_p` times the top probability.
    pub min_p: Option<f64>,
    /// luodi extension: penalty for repeated tokens (1: off).
    pub repetition_penalty: Option<f64>,
}

impl SamplingFields {
    pub fn sampling(&self, top_logprobs: usize) -> Result<Sampling, ApiError> {
        let b = |name| RULES.bound(name).expect("every sampling field has a bound");
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "`n` must be 1: this server returns one choice per request"));
        }
        Ok(Sampling {
            temperature: b("temperature").check(self.temperature)?.unwrap_or(1.0),
            top_p: b("top_p").check(self.top_p)?.unwrap_or(1.0),
            top_k: b("top_k").check_int(self.top_k, None)?.map_or(0, |k| k as usize),
            min_p: b("min_p").check(self.min_p)?.unwrap_or(0.0),
            repetition_penalty: b("repetition_penalty").check(self.repetition_penalty)?.unwrap_or(1.0),
            frequency_penalty: b("frequency_penalty").check(self.frequency_penalty)?.unwrap_or(0.0),
            presence_penalty: b("presence_penalty").check(self.presence_penalty)?.unwrap_or(0.0),
            seed: self.seed.map(|s| s.0),
            top_logprobs,
        })
    }

    /// At most 4 stop sequences, as OpenAI allows.
    pub fn stop(&self) -> Result<Vec<String>, ApiError> {
        match &self.stop {
            None => Ok(vec![]),
            Some(Stop::One(s)) => Ok(vec![s.clone()]),
            Some(Stop::Many(list)) if list.len() <= 4 => Ok(list.clone()),
            Some(Stop::Many(_)) => Err(ApiError::invalid("stop", "`stop` may hold at most 4 strings")),
        }
    }
}

/// `seed`: OpenAI accepts any 64-bit integer; negative seeds are folded into u64.
#[derive(Debug, Clone, Copy)]
pub struct Seed(pub u64);

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Unsigned(u64),
            Signed(i64),
        }
        Ok(Seed(match Either::deserialize(d)? {
            Either::Unsigned(u) => u,
            Either::Signed(i) => i as u64,
        }))
    }
}

impl PartialSchema for Seed {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some("Any 64-bit integer"))
            .into()
    }
}

impl ToSchema for Seed {}

/// `stop`: a string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

fn stop_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)).max_items(Some(4)))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("Stop sequences: a string or a list of at most 4 strings"))
}
