//! Token log-probabilities in OpenAI's two shapes: chat (`content: [{token, logprob, bytes,
//! top_logprobs}]`) and text completion (parallel `tokens`, `token_logprobs`, `top_logprobs`
//! lists). The same for whole answers and chunks: each chunk carries the tokens its text covers.

use crate::backend::TokenInfo;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ChatLogprobs<'a> {
    #[schema(value_type = Vec<TokenLogprob>)]
    pub content: Tokens<'a>,
}

impl<'a> ChatLogprobs<'a> {
    /// None when logprobs were not asked for (or cover no token).
    pub fn of(infos: &'a [TokenInfo]) -> Option<Self> {
        (!infos.is_empty()).then_some(Self { content: Tokens(infos) })
    }
}

/// Serializes `TokenInfo`s as chat `TokenLogprob`s without copying them.
pub struct Tokens<'a>(&'a [TokenInfo]);

impl Serialize for Tokens<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|i| TokenLogprob {
            token: &i.token,
            logprob: i.logprob,
            bytes: &i.bytes,
            top_logprobs: i.top.iter().map(|(t, l, b)| TopLogprob { token: t, logprob: *l, bytes: b }).collect(),
        }))
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenLogprob<'a> {
    pub token: &'a str,
    pub logprob: f32,
    pub bytes: &'a [u8],
    pub top_logprobs: Vec<TopLogprob<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct TopLogprob<'a> {
    pub token: &'a str,
    pub logprob: f32,
    pub bytes: &'a [u8],
}

#[derive(Serialize, ToSchema)]
pub struct TextLogprobs<'a> {
    pub tokens: Vec<&'a str>,
    pub token_logprobs: Vec<f32>,
    /// Per token, its most likely alternatives: token -> logprob, most likely first.
    #[schema(value_type = Vec<std::collections::HashMap<String, f64>>)]
    pub top_logprobs: Vec<TopMap<'a>>,
}

impl<'a> TextLogprobs<'a> {
    pub fn of(infos: &'a [TokenInfo]) -> Option<Self> {
        (!infos.is_empty()).then(|| Self {
            tokens: infos.iter().map(|i| i.token.as_str()).collect(),
            token_logprobs: infos.iter().map(|i| i.logprob).collect(),
            top_logprobs: infos.iter().map(|i| TopMap(&i.top)).collect(),
        })
    }
}

/// A token's alternatives as a JSON object, in rank order (as OpenAI's).
pub struct TopMap<'a>(&'a [(String, f32, Vec<u8>)]);

impl Serialize for TopMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (i, (token, logprob, _)) in self.0.iter().enumerate() {
            // Two token ids can decode to the same text: a JSON object keeps the likelier.
            if !self.0[..i].iter().any(|(t, _, _)| t == token) {
                map.serialize_entry(token, logprob)?;
            }
        }
        map.end()
    }
}
