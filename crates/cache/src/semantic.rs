//! Semantic lookup: the cached questions of one context, scanned for the nearest embedding.
//!
//! A linear scan over unit vectors (a dot product is the cosine): with the default bound of
//! 2000 questions of 384 dimensions it is under a million multiply-adds, well under a
//! millisecond, and exact. Redis 7 without the search module has no server-side vector index,
//! so the shared store keeps each context's questions in a capped list and the client scans it
//! the same way (the bound is `cache.semantic.max_entries`).

use crate::agreement::agree;
use std::collections::VecDeque;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// A cached question: where its answer is stored, its text, its unit embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub key: String,
    pub text: String,
    pub embedding: Vec<f32>,
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The most similar question at or above `threshold` whose content terms agree with `text`
/// ([`crate::agreement`]), with its similarity.
pub fn best<'q>(
    questions: impl IntoIterator<Item = &'q Question>,
    text: &str,
    embedding: &[f32],
    threshold: f32,
) -> Option<(&'q Question, f32)> {
    questions
        .into_iter()
        .filter(|q| q.embedding.len() == embedding.len())
        .map(|q| (q, dot(&q.embedding, embedding)))
        .filter(|(q, s)| *s >= threshold && agree(&q.text, text))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

impl Question {
    /// `[u32 key len][key][u32 text len][text][f32 LE ...]`, for the Redis list.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.key.len() + self.text.len() + 4 * self.embedding.len());
        for s in [&self.key, &self.text] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        for x in &self.embedding {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// `None` for bytes that are not a question (truncated, foreign).
    pub fn from_bytes(bytes: &[u8]) -> Option<Question> {
        let mut rest = bytes;
        let mut field = || -> Option<String> {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let s = std::str::from_utf8(rest.get(4..4 + len)?).ok()?.to_string();
            rest = &rest[4 + len..];
            Some(s)
        };
        let key = field()?;
        let text = field()?;
        if !rest.len().is_multiple_of(4) {
            return None;
        }
        let embedding = rest.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some(Question { key, text, embedding })
    }
}

/// The in-process index: newest questions kept, oldest dropped past `max_entries`, expired
/// ones skipped and dropped.
pub struct MemoryIndex {
    items: RwLock<VecDeque<(String, Question, Instant)>>,
    max_entries: usize,
    ttl: Duration,
}

impl MemoryIndex {
    pub fn new(max_entries: usize, ttl: Duration) -> MemoryIndex {
        MemoryIndex { items: RwLock::new(VecDeque::new()), max_entries, ttl }
    }

    pub fn insert(&self, context: &str, question: Question) {
        let mut items = self.items.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while items.front().is_some_and(|(_, _, at)| now.duration_since(*at) > self.ttl) {
            items.pop_front();
        }
        // The same answer stored again replaces its question.
        items.retain(|(_, q, _)| q.key != question.key);
        if items.len() >= self.max_entries {
            items.pop_front();
        }
        items.push_back((context.to_string(), question, now));
    }

    pub fn best(&self, context: &str, text: &str, embedding: &[f32], threshold: f32) -> Option<(Question, f32)> {
        let items = self.items.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let live =
            items.iter().filter(|(c, _, at)| c == context && now.duration_since(*at) <= self.ttl).map(|(_, q, _)| q);
        best(live, text, embedding, threshold).map(|(q, s)| (q.clone(), s))
    }

    pub fn remove(&self, key: &str) {
        self.items.write().unwrap_or_else(|e| e.into_inner()).retain(|(_, q, _)| q.key != key);
    }

    pub fn clear(&self, key_prefix: &str) {
        self.items.write().unwrap_or_else(|e| e.into_inner()).retain(|(_, q, _)| !q.key.starts_with(key_prefix));
    }

    pub fn len(&self) -> usize {
        self.items.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(key: &str, e: [f32; 2]) -> Question {
        Question { key: key.into(), text: "opening hours".into(), embedding: e.to_vec() }
    }

    #[test]
    fn nearest_above_threshold_in_the_same_context() {
        let index = MemoryIndex::new(10, Duration::from_secs(60));
        index.insert("ctx", q("a", [1.0, 0.0]));
        index.insert("ctx", q("b", [0.6, 0.8]));
        index.insert("other", q("c", [0.0, 1.0]));
        let (hit, sim) = index.best("ctx", "opening hours", &[0.8, 0.6], 0.5).unwrap();
        assert_eq!(hit.key, "b", "0.96 beats a's 0.8");
        assert!((sim - 0.96).abs() < 1e-6, "{sim}");
        assert_eq!(index.best("ctx", "opening hours", &[0.0, 1.0], 0.9), None, "c is in another context");
        assert_eq!(index.best("other", "opening hours", &[0.0, 1.0], 0.9).unwrap().0.key, "c");
        assert_eq!(index.best("ctx", "opening hours", &[1.0, 0.0, 0.0], 0.1), None, "dimension mismatch never matches");
        assert_eq!(index.best("ctx", "closing hours", &[0.6, 0.8], 0.5), None, "terms disagree");
    }

    #[test]
    fn bounded_and_replaced() {
        let index = MemoryIndex::new(2, Duration::from_secs(60));
        index.insert("c", q("a", [1.0, 0.0]));
        index.insert("c", q("b", [0.0, 1.0]));
        index.insert("c", q("b", [0.0, 1.0]));
        assert_eq!(index.len(), 2);
        index.insert("c", q("d", [0.0, 1.0]));
        assert_eq!(index.len(), 2);
        assert_eq!(index.best("c", "opening hours", &[1.0, 0.0], 0.9), None, "the oldest was dropped");
        index.remove("d");
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn bytes_round_trip_and_garbage_is_rejected() {
        let question =
            Question { key: "k:1".into(), text: "营业时间是几点？".into(), embedding: vec![0.25, -1.5, 3.0] };
        assert_eq!(Question::from_bytes(&question.to_bytes()), Some(question.clone()));
        let bytes = question.to_bytes();
        assert_eq!(Question::from_bytes(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Question::from_bytes(b"xy"), None);
    }
}
