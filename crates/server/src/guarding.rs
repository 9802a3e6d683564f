//! The guard in the request path: prompts and messages go through [`luodi_guard::Guard`]
//! before the backend sees them, answers (whole or streamed) go through its moderator before
//! the client sees them, and every decision is logged and counted (never the matched value).
//! Also the answer styles (`[styles.NAME]`), rendered into a system message.

use crate::backend::ChatMessage;
use crate::backend::TokenInfo;
use crate::config::ServerConfig;
use crate::error::ApiError;
use luodi_guard::{AuditEvent, Blocked, Guard, GuardConfig, Outcome, PseudonymMap, StreamModerator};
use luodi_store::GuardAction;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// `[styles.NAME]`: how answers should sound. Every field is optional; `template` replaces the
/// built-in wording and may use `{name}`, `{tone}`, `{vocabulary}` and `{language}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StyleProfile {
    pub tone: Option<String>,
    pub vocabulary: Option<String>,
    pub language: Option<String>,
    pub template: Option<String>,
}

const PLACEHOLDERS: [&str; 4] = ["name", "tone", "vocabulary", "language"];

impl StyleProfile {
    /// The system-message text for this style.
    pub fn render(&self, name: &str) -> Result<String, String> {
        let value = |key: &str| -> String {
            match key {
                "name" => name.to_string(),
                "tone" => self.tone.clone().unwrap_or_default(),
                "vocabulary" => self.vocabulary.clone().unwrap_or_default(),
                _ => self.language.as_deref().map(language_name).unwrap_or_default(),
            }
        };
        if let Some(template) = &self.template {
            let mut out = String::with_capacity(template.len());
            let mut rest = template.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let tail = &rest[open + 1..];
                let close = tail.find('}').ok_or_else(|| format!("styles.{name}.template: unclosed `{{`"))?;
                let key = &tail[..close];
                if !PLACEHOLDERS.contains(&key) {
                    return Err(format!(
                        "styles.{name}.template: unknown placeholder `{{{key}}}` (use {})",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                    ));
                }
                out.push_str(&value(key));
                rest = &tail[close + 1..];
            }
            out.push_str(rest);
            return Ok(out);
        }
        let mut parts = Vec::new();
        if let Some(tone) = &self.tone {
            parts.push(format!("Answer in a {tone} tone."));
        }
        if let Some(vocabulary) = &self.vocabulary {
            parts.push(format!("Use {vocabulary} vocabulary."));
        }
        if let Some(language) = &self.language {
            parts.push(format!("Answer in {}.", language_name(language)));
        }
        if parts.is_empty() {
            return Err(format!("styles.{name}: set at least one of tone, vocabulary, language or template"));
        }
        Ok(parts.join(" "))
    }
}

/// A readable name for common language codes (the code itself otherwise).
fn language_name(code: &str) -> String {
    let name = match code.to_ascii_lowercase().as_str() {
        "zh" | "zh-cn" | "zh-hans" => "Simplified Chinese (简体中文)",
        "zh-tw" | "zh-hant" => "Traditional Chinese (繁體中文)",
        "en" => "English",
        "ja" => "Japanese (日本語)",
        "ko" => "Korean (한국어)",
        "fr" => "French",
        "de" => "German",
        "es" => "Spanish",
        _ => return code.to_string(),
    };
    name.to_string()
}

/// The guard and the rendered styles, built once at startup.
#[derive(Clone)]
pub struct Guarding {
    guard: Guard,
    /// Style name -> system-message text.
    styles: Arc<BTreeMap<String, String>>,
    /// API key -> style name (`key_styles`): the style of requests that name none.
    key_styles: Arc<BTreeMap<String, String>>,
}

impl Default for Guarding {
    /// The guard with the default `[guard]` settings (as with no `[guard]` table) and no styles.
    fn default() -> Self {
        let guard = Guard::new(&GuardConfig::default()).expect("the default guard config is valid");
        Guarding { guard, styles: Arc::default(), key_styles: Arc::default() }
    }
}

impl Guarding {
    /// Builds the guard (reading lexicon files) and renders the styles; errors name the setting.
    pub fn from_config(config: &ServerConfig) -> Result<Guarding, String> {
        let guard = Guard::new(&config.guard).map_err(|e| e.to_string())?;
        let styles = config
            .styles
            .iter()
            .map(|(name, profile)| Ok((name.clone(), profile.render(name)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        for (i, style) in config.key_styles.values().enumerate() {
            if !styles.contains_key(style) {
                return Err(format!(
                    "key_styles: entry {} names the unknown style `{style}`; known styles: {}",
                    i + 1,
                    styles.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(Guarding { guard, styles: Arc::new(styles), key_styles: Arc::new(config.key_styles.clone()) })
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// True when pseudonyms use a per-process random key (no `guard.pii.hash_key`).
    pub fn ephemeral_key(&self) -> bool {
        self.guard.policy().has_ephemeral_key()
    }

    /// The style name configured for an API key (`key_styles`), if any.
    pub fn key_style(&self, key: Option<&str>) -> Option<&str> {
        self.key_styles.get(key?).map(String::as_str)
    }

    /// The system-message text of a style; unknown names are a 400 listing the known ones.
    pub fn style(&self, name: &str, param: &str) -> Result<&str, ApiError> {
        self.styles.get(name).map(String::as_str).ok_or_else(|| {
            let known = if self.styles.is_empty() {
                "this server has no styles configured".to_string()
            } else {
                format!("known styles: {}", self.styles.keys().cloned().collect::<Vec<_>>().join(", "))
            };
            ApiError::invalid(param, format!("unknown style `{name}` in `{param}`; {known}"))
        })
    }

    /// The per-request state: pseudonyms (when restoring) and the request id for logs.
    pub fn request(&self, request_id: &str) -> RequestGuard {
        RequestGuard {
            guard: self.guard.clone(),
            request_id: request_id.to_string(),
            pseudonyms: self.guard.pseudonym_map(),
            touched: false,
            actions: Vec::new(),
        }
    }
}

/// Prepends the style's system message, or appends it to an existing leading system message.
pub fn apply_style(messages: &mut Vec<ChatMessage>, style: &str) {
    match messages.first_mut() {
        Some(first) if first.role == "system" => {
            if !first.content.is_empty() {
                first.content.push_str("\n\n");
            }
            first.content.push_str(style);
        }
        _ => messages.insert(0, ChatMessage::new("system", style)),
    }
}

/// Logs and counts guard decisions; never the matched value.
pub fn record(request_id: &str, direction: &'static str, events: &[AuditEvent]) {
    for e in events {
        tracing::info!(
            request_id,
            direction,
            subject = %e.subject,
            action = e.action.as_str(),
            rule = %e.rule,
            count = e.count,
            "guard"
        );
        metrics::counter!("luodi_guard_actions_total", "entity" => e.subject.clone(), "action" => e.action.as_str())
            .increment(u64::from(e.count));
    }
}

/// One request's guard: checks its inputs, then becomes the answer's [`OutputFilter`].
pub struct RequestGuard {
    guard: Guard,
    request_id: String,
    pseudonyms: Option<PseudonymMap>,
    /// Whether any input check found PII or a lexicon term (whatever the action).
    touched: bool,
    /// The input decisions, for the stored interaction.
    actions: Vec<GuardAction>,
}

impl RequestGuard {
    /// Checks one prompt or message; returns the text the model may see (masked, hashed), or a
    /// 400 naming `param`, the entity type or lexicon category and the rule.
    pub fn check_input(&mut self, param: &str, text: &str) -> Result<String, ApiError> {
        let checked = self.guard.check_input(text, self.pseudonyms.as_mut());
        record(&self.request_id, "input", &checked.audit);
        self.touched |= !checked.audit.is_empty();
        self.actions.extend(checked.audit.iter().map(|e| stored_action("input", e)));
        match checked.outcome {
            Outcome::Pass(text) => Ok(text.into_owned()),
            Outcome::Blocked(blocked) => Err(ApiError::blocked(param, &blocked)),
        }
    }

    /// Checks every message of a chat prompt in place.
    pub fn check_messages(&mut self, messages: &mut [ChatMessage]) -> Result<(), ApiError> {
        for (i, m) in messages.iter_mut().enumerate() {
            m.content = self.check_input(&format!("messages[{i}].content"), &m.content)?;
        }
        Ok(())
    }

    /// Whether the guard found PII or a lexicon term in any input so far.
    pub fn touched(&self) -> bool {
        self.touched
    }

    /// The moderator for this request's answer.
    pub fn output(self) -> OutputFilter {
        OutputFilter {
            moderator: self.guard.stream_moderator(),
            restorer: self.pseudonyms.filter(|m| !m.is_empty()).map(|map| Restorer { map, pending: String::new() }),
            request_id: self.request_id,
            raw_chars: 0,
            emitted_chars: 0,
            infos: VecDeque::new(),
            input_actions: self.actions,
            stored_text: String::new(),
        }
    }
}

fn stored_action(direction: &str, e: &AuditEvent) -> GuardAction {
    GuardAction {
        direction: direction.into(),
        subject: e.subject.clone(),
        action: e.action.as_str().into(),
        rule: e.rule.to_string(),
        count: e.count,
    }
}

/// Moderates an answer as it arrives (and restores pseudonyms when configured). Token infos
/// (logprobs) are held until the text they cover has passed, so a held-back or blocked term
/// never leaks through them. Logs its decisions when dropped.
pub struct OutputFilter {
    moderator: StreamModerator,
    restorer: Option<Restorer>,
    request_id: String,
    /// Characters pushed in, and characters the moderator let out.
    raw_chars: usize,
    emitted_chars: usize,
    /// Token infos with the raw character offset where their text ends.
    infos: VecDeque<(usize, TokenInfo)>,
    input_actions: Vec<GuardAction>,
    /// The moderated answer before pseudonyms are restored: what storage may keep.
    stored_text: String,
}

/// What may be sent now: text and the token infos it covers.
#[derive(Debug, Default)]
pub struct Released {
    pub text: String,
    pub infos: Vec<TokenInfo>,
}

impl OutputFilter {
    /// Adds a token; `Err` means the answer must stop here (nothing more may be sent).
    pub fn push(&mut self, text: &str, info: Option<TokenInfo>) -> Result<Released, Blocked> {
        self.raw_chars += text.chars().count();
        if let Some(info) = info {
            self.infos.push_back((self.raw_chars, info));
        }
        let out = self.moderator.push(text).inspect_err(|_| self.infos.clear())?;
        Ok(self.release(out, false))
    }

    /// The end of the answer: the rest of the held text, or `Err` if it holds a block.
    pub fn finish(&mut self) -> Result<Released, Blocked> {
        let out = self.moderator.finish().inspect_err(|_| self.infos.clear())?;
        Ok(self.release(out, true))
    }

    /// Whether moderation acted on the answer so far (blocked, masked or flagged a term).
    pub fn acted(&self) -> bool {
        !self.moderator.audit().is_empty()
    }

    /// The answer as storage may keep it (moderated, pseudonyms not restored).
    pub fn stored_text(&self) -> &str {
        &self.stored_text
    }

    /// Every guard decision on this request: the prompt's, then the answer's.
    pub fn actions(&self) -> Vec<GuardAction> {
        let mut all = self.input_actions.clone();
        all.extend(self.moderator.audit().iter().map(|e| stored_action("output", e)));
        all
    }

    fn release(&mut self, moderated: String, last: bool) -> Released {
        self.emitted_chars += moderated.chars().count();
        self.stored_text.push_str(&moderated);
        let mut infos = Vec::new();
        while let Some((end, _)) = self.infos.front() {
            if !last && *end > self.emitted_chars {
                break;
            }
            infos.extend(self.infos.pop_front().map(|(_, i)| i));
        }
        let text = match &mut self.restorer {
            Some(r) if last => {
                let mut text = r.push(&moderated);
                text.push_str(&r.finish());
                text
            }
            Some(r) => r.push(&moderated),
            None => moderated,
        };
        Released { text, infos }
    }
}

impl Drop for OutputFilter {
    fn drop(&mut self) {
        record(&self.request_id, "output", self.moderator.audit());
    }
}

/// [`luodi_guard::StreamRestorer`] owning its map (the filter lives in a `'static` stream).
struct Restorer {
    map: PseudonymMap,
    pending: String,
}

impl Restorer {
    fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let hold_from = self
            .pending
            .rfind('<')
            .filter(|&i| {
                !self.pending[i..].contains('>') && self.pending.len() - i < luodi_guard::pseudonym::MAX_PSEUDONYM_LEN
            })
            .unwrap_or(self.pending.len());
        let ready: String = self.pending.drain(..hold_from).collect();
        self.map.restore(&ready).into_owned()
    }

    fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.map.restore(&rest).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_render_and_validate() {
        let p = StyleProfile { tone: Some("professional".into()), language: Some("zh".into()), ..Default::default() };
        assert_eq!(p.render("pro").unwrap(), "Answer in a professional tone. Answer in Simplified Chinese (简体中文).");
        let t = StyleProfile {
            template: Some("Style {name}: {tone}.".into()),
            tone: Some("warm".into()),
            ..Default::default()
        };
        assert_eq!(t.render("w").unwrap(), "Style w: warm.");
        let bad = StyleProfile { template: Some("{mood}".into()), ..Default::default() };
        assert!(bad.render("b").unwrap_err().contains("styles.b.template"));
        assert!(StyleProfile::default().render("e").unwrap_err().contains("styles.e"));
    }

    #[test]
    fn style_goes_into_the_system_message() {
        let mut m = vec![ChatMessage::new("user", "hi")];
        apply_style(&mut m, "S");
        assert_eq!((m[0].role.as_str(), m[0].content.as_str(), m.len()), ("system", "S", 2));
        apply_style(&mut m, "T");
        assert_eq!((m[0].content.as_str(), m.len()), ("S\n\nT", 2));
    }

    #[test]
    fn restorer_holds_split_pseudonyms() {
        let key = luodi_guard::PseudonymKey::new(b"k");
        let mut map = PseudonymMap::new();
        let p = map.pseudonymize(&key, luodi_guard::EntityType::Email, "a@b.cn");
        let mut r = Restorer { map, pending: String::new() };
        let (a, b) = p.split_at(5);
        let mut out = r.push(&format!("to {a}"));
        out += &r.push(&format!("{b}!"));
        out += &r.finish();
        assert_eq!(out, "to a@b.cn!");
    }
}
