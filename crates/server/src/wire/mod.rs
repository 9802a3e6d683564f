//! The wire model: every JSON body the server reads or writes, as one type that derives
//! `Deserialize` or `Serialize` and `ToSchema`. Handlers parse into these types, format from
//! them, and `/openapi.json` is generated from them, so the three cannot drift apart.
//!
//! Parsing is serde's, with errors rewritten to name the field and what it accepts
//! (`` `top_p` must be a number in (0, 1], got "x" ``); each request type's `validate`
//! then checks what types cannot say (ranges, combinations) and yields the server's own
//! request. `null` counts as absent for every optional field.

pub mod admin;
pub mod chat;
pub mod completion;
pub mod embeddings;
pub mod errors;
pub mod feedback;
pub mod generate;
pub mod logprobs;
pub mod rules;
pub mod sampling;
pub mod system;

use crate::error::ApiError;
use rules::Rules;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

/// A request body type.
pub trait Request: DeserializeOwned {
    /// Its rules and those of the parts it flattens.
    const RULES: &'static [&'static Rules];

    /// An error inside a `#[serde(flatten)]` part reaches us without its path; deserializing
    /// the flattened part alone finds it.
    fn pinpoint(_body: &Value) -> Option<PathError> {
        None
    }
}

pub type PathError = serde_path_to_error::Error<serde_json::Error>;

/// Where a flattened part `P` fails on `body`, if it does.
pub fn pinpoint_part<P: DeserializeOwned>(body: &Value) -> Option<PathError> {
    serde_path_to_error::deserialize::<_, P>(body).err()
}

/// A JSON object body as `T`, or a 400 that names the field and what it accepts.
pub fn parse<T: Request>(bytes: &[u8]) -> Result<T, ApiError> {
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_json(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = &body else {
        return Err(ApiError::bad_json("the request body must be a JSON object"));
    };
    for name in T::RULES.iter().flat_map(|r| r.refused) {
        if fields.get(*name).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid(name, format!("`{name}` is not supported by this server")));
        }
    }
    serde_path_to_error::deserialize::<_, T>(&body).map_err(|e| {
        let e = if e.path().iter().next().is_none() { T::pinpoint(&body).unwrap_or(e) } else { e };
        explain(T::RULES, &body, &e)
    })
}

/// serde's error, in the words of the field's rules.
fn explain(rules: &[&Rules], body: &Value, e: &PathError) -> ApiError {
    let path = dotted(e.path());
    let inner = e.inner().to_string();
    let under = |field: &str| if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
    let expected = |path: &str| rules.iter().find_map(|r| r.expected(path));
    if let Some(field) = backticked(&inner, "missing field ") {
        let field = under(&field);
        let what = expected(&field).map_or(String::new(), |e| format!(": {e}"));
        return ApiError::invalid(&field, format!("`{field}` is required{what}"));
    }
    if let Some(field) = backticked(&inner, "unknown field ") {
        let message = inner.split(" at line ").next().unwrap_or(&inner).to_string();
        // The path already ends at the unknown key.
        let param = if path.ends_with(field.as_str()) { path.clone() } else { under(&field) };
        return ApiError::invalid(&param, message);
    }
    let got = value_at(body, e.path()).map(short).unwrap_or_default();
    match expected(&path) {
        Some(what) => ApiError::invalid(&path, format!("`{path}` must be {what}, got {got}")),
        // Every field has rules (a unit test checks); serde's words are the last resort.
        None => ApiError::invalid(&path, format!("`{path}`: {inner}")),
    }
}

/// The name in backticks after `prefix` in a serde message (`missing field `model``).
fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_string())
}

/// `messages[0].role`; empty for the body itself.
fn dotted(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

fn value_at<'a>(body: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    path.iter().try_fold(body, |v, segment| match segment {
        Segment::Seq { index } => v.get(index),
        Segment::Map { key } | Segment::Enum { variant: key } => v.get(key.as_str()),
        Segment::Unknown => None,
    })
}

/// The offending value as the client wrote it: strings in backticks, long ones cut.
fn short(v: &Value) -> String {
    const MAX: usize = 40;
    let text = match v {
        Value::String(s) => format!("`{s}`"),
        other => other.to_string(),
    };
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_json_and_non_objects_are_400() {
        let e = parse::<generate::GenerateRequest>(b"{not json").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, Some("invalid_json")));
        let e = parse::<generate::GenerateRequest>(b"[1]").unwrap_err();
        assert_eq!(e.message, "the request body must be a JSON object");
    }

    #[test]
    fn long_values_are_cut_on_a_character() {
        let s = short(&Value::String("你".repeat(100)));
        assert!(s.ends_with("...") && s.chars().count() == 43, "{s}");
    }
}
