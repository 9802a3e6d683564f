//! Shapes shared by several endpoints (usage) and the system endpoints' answers.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        let (p, c) = (prompt_tokens as u64, completion_tokens as u64);
        Self { prompt_tokens: p, completion_tokens: c, total_tokens: p + c }
    }
}

/// A field that is left out, null, or a value: `usage` on chunks.
pub enum Absent<T> {
    Omitted,
    Null,
    Value(T),
}

impl<T> Absent<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Absent::Omitted)
    }
}

impl<T: Serialize> Serialize for Absent<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Absent::Value(v) => v.serialize(s),
            _ => s.serialize_none(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Ready<'a> {
    /// Always `ready`.
    pub status: &'static str,
    pub model: &'a str,
    /// Requests queued.
    pub waiting: u64,
    /// Requests generating.
    pub running: u64,
    /// The interaction store: `connected`, `connecting` (answers are served, records are
    /// buffered), or `off`.
    pub store: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Model<'a> {
    pub id: &'a str,
    /// `model`
    pub object: &'static str,
    pub created: u64,
    /// `luodi`
    pub owned_by: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList<'a> {
    /// `list`
    pub object: &'static str,
    pub data: Vec<Model<'a>>,
}
