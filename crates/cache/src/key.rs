//! Cache keys: a hash of everything that determines an answer, normalized so requests that
//! must get the same answer get the same key, and nothing else does.
//!
//! In the key: the model version (file sha256 and adapter), the route, the messages as the
//! model sees them (after the guard chain, so pseudonyms and never raw PII, and after the
//! style's system message), and the sampling parameters that can change the tokens.
//! Normalized away: whitespace runs and leading/trailing whitespace in message text, role case,
//! the order of stop strings, and the sampling knobs greedy decoding ignores (top_p, top_k,
//! min_p and seed at temperature 0). JSON key order never reaches the key: it is built from
//! typed values.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// One chat message as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// The sampling parameters, as validated by the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub min_p: f32,
    pub seed: Option<u64>,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

impl Sampling {
    /// Whether the answer is a function of the request: greedy, or seeded sampling.
    pub fn is_deterministic(&self) -> bool {
        self.temperature == 0.0 || self.seed.is_some()
    }

    /// The form that goes into the key.
    fn normalized(&self) -> Sampling {
        let mut s = self.clone();
        if s.temperature == 0.0 {
            // Greedy decoding takes the argmax: truncation and the seed cannot change it.
            s.top_p = 1.0;
            s.top_k = 0;
            s.min_p = 0.0;
            s.seed = None;
        }
        s.stop.sort();
        s.stop.dedup();
        s
    }
}

/// What a request's answer depends on.
#[derive(Debug, Clone)]
pub struct KeyInput<'a> {
    /// `model_id@sha256[+adapter@sha256]`: a new file or adapter makes old entries unreachable.
    pub model_version: &'a str,
    /// `chat` or `text` (a text completion of the same string is a different prompt).
    pub route: &'a str,
    pub messages: &'a [Message<'a>],
    /// The style name (its system message is already in `messages`; the name keeps two styles
    /// with equal wording apart in the stats, never together).
    pub style: Option<&'a str>,
    pub sampling: &'a Sampling,
}

#[derive(Serialize)]
struct Material<'a> {
    version: u32,
    model: &'a str,
    route: &'a str,
    style: Option<&'a str>,
    sampling: Sampling,
    messages: Vec<(String, String)>,
}

/// Collapses every run of whitespace (including U+3000, the ideographic space) to one ASCII
/// space and trims both ends.
pub fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn digest(material: &Material) -> String {
    let bytes = serde_json::to_vec(material).expect("key material serializes");
    hex::encode(Sha256::digest(&bytes))
}

impl KeyInput<'_> {
    fn material(&self, messages: &[Message]) -> Material<'_> {
        Material {
            version: 1,
            model: self.model_version,
            route: self.route,
            style: self.style,
            sampling: self.sampling.normalized(),
            messages: messages.iter().map(|m| (m.role.to_ascii_lowercase(), normalize_text(m.content))).collect(),
        }
    }

    /// The exact-match key (hex sha256).
    pub fn exact(&self) -> String {
        digest(&self.material(self.messages))
    }

    /// For the semantic cache: `Some((context, question))` when the request is one user turn,
    /// optionally after system messages. The context hashes everything but the question (model
    /// version, system prompt, style, sampling), so only questions asked in the same context
    /// can match each other.
    pub fn semantic(&self) -> Option<(String, String)> {
        let (last, before) = self.messages.split_last()?;
        if !last.role.eq_ignore_ascii_case("user") || before.iter().any(|m| !m.role.eq_ignore_ascii_case("system")) {
            return None;
        }
        let question = normalize_text(last.content);
        if question.is_empty() {
            return None;
        }
        Some((digest(&self.material(before)), question))
    }
}

/// A short, stable tag of a model version, used as a key prefix so one version's entries can
/// be purged together.
pub fn version_tag(model_version: &str) -> String {
    hex::encode(&Sha256::digest(model_version.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greedy() -> Sampling {
        Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            max_tokens: 64,
            stop: vec![],
        }
    }

    fn key(messages: &[Message], sampling: &Sampling) -> String {
        KeyInput { model_version: "m@abc", route: "chat", messages, style: None, sampling }.exact()
    }

    fn user(content: &str) -> Vec<Message<'_>> {
        vec![Message { role: "user", content }]
    }

    #[test]
    fn whitespace_and_role_case_do_not_matter() {
        let s = greedy();
        let a = key(&user("How do I  reset my password?"), &s);
        assert_eq!(a, key(&user("  How do I reset\tmy\npassword? "), &s));
        assert_eq!(key(&user("营业时间是？"), &s), key(&user("营业时间是？\u{3000}"), &s));
        assert_eq!(a, key(&[Message { role: "User", content: "How do I reset my password?" }], &s));
        // Characters do matter, including CJK punctuation and case.
        assert_ne!(a, key(&user("How do I reset my password"), &s));
        assert_ne!(a, key(&user("how do I reset my password?"), &s));
        assert_ne!(key(&user("营业时间是？"), &s), key(&user("营业时间是?"), &s));
    }

    #[test]
    fn message_boundaries_and_roles_matter() {
        let s = greedy();
        let one = vec![Message { role: "user", content: "a b" }];
        let two = vec![Message { role: "user", content: "a" }, Message { role: "user", content: "b" }];
        assert_ne!(key(&one, &s), key(&two, &s));
        let sys = vec![Message { role: "system", content: "a b" }];
        assert_ne!(key(&one, &s), key(&sys, &s));
    }

    #[test]
    fn sampling_parameters_that_matter_and_that_do_not() {
        let q = user("hi");
        let base = greedy();
        let k = key(&q, &base);
        // Ignored by greedy decoding.
        for change in [
            Sampling { top_p: 0.5, ..base.clone() },
            Sampling { top_k: 40, ..base.clone() },
            Sampling { min_p: 0.1, ..base.clone() },
            Sampling { seed: Some(7), ..base.clone() },
        ] {
            assert_eq!(k, key(&q, &change), "{change:?}");
        }
        let ab = key(&q, &Sampling { stop: vec!["a".into(), "b".into()], ..base.clone() });
        assert_eq!(ab, key(&q, &Sampling { stop: vec!["b".into(), "a".into(), "a".into()], ..base.clone() }));
        // Change the tokens.
        for change in [
            Sampling { temperature: 0.7, ..base.clone() },
            Sampling { max_tokens: 65, ..base.clone() },
            Sampling { repetition_penalty: 1.1, ..base.clone() },
            Sampling { frequency_penalty: 0.5, ..base.clone() },
            Sampling { presence_penalty: 0.5, ..base.clone() },
            Sampling { stop: vec!["x".into()], ..base.clone() },
        ] {
            assert_ne!(k, key(&q, &change), "{change:?}");
        }
        // When sampling, the truncation knobs and the seed matter.
        let hot = Sampling { temperature: 0.7, seed: Some(1), ..base.clone() };
        assert_ne!(key(&q, &hot), key(&q, &Sampling { top_p: 0.9, ..hot.clone() }));
        assert_ne!(key(&q, &hot), key(&q, &Sampling { seed: Some(2), ..hot.clone() }));
    }

    #[test]
    fn model_version_route_and_style_matter() {
        let s = greedy();
        let m = user("hi");
        let k =
            |model_version, route, style| KeyInput { model_version, route, messages: &m, style, sampling: &s }.exact();
        let base = k("m@abc", "chat", None);
        assert_ne!(base, k("m@abd", "chat", None));
        assert_ne!(base, k("m@abc+lora@1", "chat", None));
        assert_ne!(base, k("m@abc", "text", None));
        assert_ne!(base, k("m@abc", "chat", Some("professional")));
    }

    #[test]
    fn determinism() {
        assert!(greedy().is_deterministic());
        assert!(Sampling { temperature: 0.8, seed: Some(3), ..greedy() }.is_deterministic());
        assert!(!Sampling { temperature: 0.8, ..greedy() }.is_deterministic());
    }

    #[test]
    fn semantic_context_is_everything_but_the_question() {
        let s = greedy();
        let input = |messages: &'static [Message<'static>]| KeyInput {
            model_version: "m@abc",
            route: "chat",
            messages,
            style: None,
            sampling: &s,
        };
        const A: &[Message] =
            &[Message { role: "system", content: "Be brief." }, Message { role: "user", content: " Opening  hours? " }];
        const B: &[Message] = &[
            Message { role: "system", content: "Be brief." },
            Message { role: "user", content: "When are you open?" },
        ];
        const C: &[Message] =
            &[Message { role: "system", content: "Be long." }, Message { role: "user", content: "Opening hours?" }];
        let (ca, qa) = input(A).semantic().unwrap();
        let (cb, _) = input(B).semantic().unwrap();
        let (cc, _) = input(C).semantic().unwrap();
        assert_eq!(qa, "Opening hours?");
        assert_eq!(ca, cb);
        assert_ne!(ca, cc);
        // Multi-turn conversations and assistant-last prompts are not eligible.
        const MULTI: &[Message] = &[
            Message { role: "user", content: "hi" },
            Message { role: "assistant", content: "hello" },
            Message { role: "user", content: "Opening hours?" },
        ];
        assert!(input(MULTI).semantic().is_none());
        const BLANK: &[Message] = &[Message { role: "user", content: "  " }];
        assert!(input(BLANK).semantic().is_none());
        assert!(input(&[]).semantic().is_none());
    }
}
