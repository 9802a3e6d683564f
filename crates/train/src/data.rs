//! Training data: reading JSON or JSONL records, choosing the objective from them, and
//! turning them into token sequences with a per-token "trained" mask.
//!
//! - `{"text": ...}`: continual pre-training. Documents are joined with EOS and packed into
//!   `max_seq_length` blocks (as Hugging Face's `run_clm` groups texts); every token trains.
//! - `{"messages": [...]}` (what `luodi feedback export --format sft` writes, and what
//!   LLaMA-Factory and Axolotl read), or Alpaca's `{"instruction", "input", "output"}`:
//!   supervised fine-tuning with the loss on assistant turns only. The turns are found by
//!   rendering with the model's own chat template, the one the server uses.

use crate::error::{Result, TrainError};
use luodi_engine::chat_template::{ChatMessage, ChatTemplate};
use luodi_engine::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    ContinualPretraining,
    SupervisedFineTuning,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Text(String),
    Chat(Vec<ChatMessage>),
}

/// A record with where it came from, for error messages.
#[derive(Debug, Clone)]
pub struct Located {
    pub file: PathBuf,
    pub line: usize,
    pub record: Record,
}

impl Located {
    fn error(&self, message: impl Into<String>) -> TrainError {
        TrainError::Data { file: self.file.clone(), line: self.line, message: message.into() }
    }
}

/// One training sequence and which of its tokens are targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub trained: Vec<bool>,
}

/// Reads a JSONL file (one object per line) or a JSON file holding an array of objects.
/// Blank lines are skipped; the line reported for a JSON array element is the line it starts on.
pub fn read_records(path: &Path) -> Result<(Objective, Vec<Located>)> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::file(path, format!("cannot read: {e}")))?;
    let values = parse_values(path, &text)?;
    if values.is_empty() {
        return Err(TrainError::file(path, "holds no records"));
    }
    let mut out = Vec::with_capacity(values.len());
    let mut objective = None;
    for (line, value) in values {
        let located = Located { file: path.to_path_buf(), line, record: Record::Text(String::new()) };
        let record = parse_record(&value).map_err(|m| located.error(m))?;
        let this = match record {
            Record::Text(_) => Objective::ContinualPretraining,
            Record::Chat(_) => Objective::SupervisedFineTuning,
        };
        match objective {
            None => objective = Some((this, line)),
            Some((first, first_line)) if first != this => {
                return Err(located.error(format!(
                    "this is a {} record but line {first_line} is a {} record; one file trains one objective",
                    kind_name(this),
                    kind_name(first)
                )));
            }
            _ => {}
        }
        out.push(Located { record, ..located });
    }
    Ok((objective.expect("at least one record").0, out))
}

fn kind_name(o: Objective) -> &'static str {
    match o {
        Objective::ContinualPretraining => "text",
        Objective::SupervisedFineTuning => "chat",
    }
}

fn parse_values(path: &Path, text: &str) -> Result<Vec<(usize, Value)>> {
    let syntax = |line: usize, e: serde_json::Error| TrainError::Data {
        file: path.to_path_buf(),
        line,
        message: format!("not valid JSON: {e}"),
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let offset = text.len() - trimmed.len();
        let values: Vec<Value> = serde_json::from_str(text).map_err(|e| syntax(e.line(), e))?;
        // serde_json gives no element positions: find each element's first line by
        // re-reading the array one value at a time.
        let mut lines = Vec::with_capacity(values.len());
        let (mut at, mut counted, mut line) = (offset + 1, 0, 1);
        for _ in 0..values.len() {
            let rest = &text[at..];
            let skip = rest.find(|c: char| !(c.is_whitespace() || c == ',')).unwrap_or(0);
            line += text[counted..at + skip].matches('\n').count();
            counted = at + skip;
            lines.push(line);
            let mut stream = serde_json::Deserializer::from_str(&rest[skip..]).into_iter::<Value>();
            stream.next();
            at += skip + stream.byte_offset();
        }
        return Ok(lines.into_iter().zip(values).collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| syntax(i + 1, e))?;
        out.push((i + 1, value));
    }
    Ok(out)
}

fn string_field(obj: &serde_json::Map<String, Value>, key: &str) -> std::result::Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{key}` must be a string, got {}", short(other))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn parse_record(value: &Value) -> std::result::Result<Record, String> {
    let Value::Object(obj) = value else {
        return Err(format!("expected a JSON object, got {}", short(value)));
    };
    if let Some(messages) = obj.get("messages") {
        let Value::Array(items) = messages else {
            return Err(format!("`messages` must be an array, got {}", short(messages)));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, m) in items.iter().enumerate() {
            let Value::Object(m) = m else {
                return Err(format!("`messages[{i}]` must be an object with `role` and `content`"));
            };
            let role = string_field(m, "role")
                .map_err(|e| format!("messages[{i}]: {e}"))?
                .ok_or(format!("`messages[{i}].role` is required"))?;
            if !matches!(role.as_str(), "system" | "user" | "assistant") {
                return Err(format!("`messages[{i}].role` is `{role}`; expected system, user or assistant"));
            }
            let content = string_field(m, "content")
                .map_err(|e| format!("messages[{i}]: {e}"))?
                .ok_or(format!("`messages[{i}].content` is required"))?;
            out.push(ChatMessage::new(role, content));
        }
        if !out.iter().any(|m| m.role == "assistant") {
            return Err("`messages` has no assistant message to learn from".into());
        }
        return Ok(Record::Chat(out));
    }
    if let Some(text) = string_field(obj, "text")? {
        if text.is_empty() {
            return Err("`text` is empty".into());
        }
        return Ok(Record::Text(text));
    }
    if obj.contains_key("instruction") || obj.contains_key("output") {
        let instruction = string_field(obj, "instruction")?.ok_or("`instruction` is required with `output`")?;
        let output = string_field(obj, "output")?.ok_or("`output` is required with `instruction`")?;
        let input = string_field(obj, "input")?.unwrap_or_default();
        let user = if input.is_empty() { instruction } else { format!("{instruction}\n\n{input}") };
        let mut messages = Vec::new();
        if let Some(system) = string_field(obj, "system")? {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", user));
        messages.push(ChatMessage::new("assistant", output));
        return Ok(Record::Chat(messages));
    }
    Err("expected a `text` record, a `messages` record or an Alpaca `instruction`/`output` record".into())
}

/// Turns a conversation into alternating (text, trained) pieces: each assistant turn, as the
/// template writes it (its end-of-turn marker included), is trained; the rest is context.
pub fn chat_pieces(
    template: &ChatTemplate,
    messages: &[ChatMessage],
) -> std::result::Result<Vec<(String, bool)>, String> {
    let mut pieces = Vec::new();
    let mut done = String::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        if i == 0 {
            return Err("an assistant message needs a user message before it".into());
        }
        let render_err =
            |e: luodi_engine::EngineError| format!("the chat template cannot render this conversation: {e}");
        let prompt = template.render(&messages[..i], true).map_err(render_err)?;
        let through = template.render(&messages[..=i], false).map_err(render_err)?;
        if !prompt.starts_with(&done) || !through.starts_with(&prompt) {
            return Err(
                "the chat template does not render turns as prefixes of each other, so assistant turns cannot be located"
                    .into(),
            );
        }
        pieces.push((prompt[done.len()..].to_string(), false));
        pieces.push((through[prompt.len()..].to_string(), true));
        done = through;
    }
    Ok(pieces)
}

/// Tokenizes pieces one by one (so a trained span's tokens are exactly its own), with BOS
/// first when the model wants one.
pub fn tokenize_pieces(tokenizer: &Tokenizer, pieces: &[(String, bool)]) -> Result<Sequence> {
    let mut seq = Sequence { tokens: Vec::new(), trained: Vec::new() };
    for (i, (text, trained)) in pieces.iter().enumerate() {
        let ids = tokenizer.encode(text, i == 0, true)?;
        seq.trained.extend(std::iter::repeat_n(*trained, ids.len()));
        seq.tokens.extend(ids);
    }
    Ok(seq)
}

/// What tokenizing a dataset produced, with what had to be cut.
#[derive(Debug, Default)]
pub struct Prepared {
    pub sequences: Vec<Sequence>,
    /// Conversations cut at `max_seq_length`.
    pub truncated: usize,
    /// Conversations with no trained token left after the cut (not trained on).
    pub dropped: usize,
}

pub fn prepare(
    objective: Objective,
    records: &[Located],
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    max_len: usize,
) -> Result<Prepared> {
    let mut out = Prepared::default();
    match objective {
        Objective::ContinualPretraining => {
            let eos = tokenizer.eos_token_id();
            let mut stream = Vec::new();
            for r in records {
                let Record::Text(text) = &r.record else { unreachable!("one objective per file") };
                stream.extend(tokenizer.encode(text, true, false)?);
                stream.extend(eos);
            }
            for block in stream.chunks(max_len) {
                // A last block of one token has nothing to predict.
                if block.len() >= 2 {
                    out.sequences.push(Sequence { tokens: block.to_vec(), trained: vec![true; block.len()] });
                }
            }
        }
        Objective::SupervisedFineTuning => {
            let template = template.ok_or_else(|| TrainError::Data {
                file: records[0].file.clone(),
                line: records[0].line,
                message: "chat records need a chat template, and this model file has none (a base model?): train on `text` records, or use an instruction-tuned model".into(),
            })?;
            for r in records {
                let Record::Chat(messages) = &r.record else { unreachable!("one objective per file") };
                let pieces = chat_pieces(template, messages).map_err(|m| r.error(m))?;
                let mut seq = tokenize_pieces(tokenizer, &pieces)?;
                if seq.tokens.len() > max_len {
                    seq.tokens.truncate(max_len);
                    seq.trained.truncate(max_len);
                    out.truncated += 1;
                }
                // Token 0 is never predicted, so it cannot be the only target.
                if !seq.trained.iter().skip(1).any(|&t| t) {
                    out.dropped += 1;
                    continue;
                }
                out.sequences.push(seq);
            }
        }
    }
    Ok(out)
}

/// Renders one sequence with its trained spans between ⟦ and ⟧ (for `--dry-run`).
pub fn show_trained(tokenizer: &Tokenizer, seq: &Sequence) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < seq.tokens.len() {
        let t = seq.trained[i];
        let j = (i..seq.tokens.len()).find(|&j| seq.trained[j] != t).unwrap_or(seq.tokens.len());
        let text = tokenizer.decode(&seq.tokens[i..j], false);
        if t {
            out.push('⟦');
            out.push_str(&text);
            out.push('⟧');
        } else {
            out.push_str(&text);
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str, ext: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("data.{ext}"));
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn jsonl_records_keep_their_line_numbers() {
        let (_d, p) = write("{\"text\":\"a\"}\n\n{\"text\":\"银行\"}\n", "jsonl");
        let (objective, records) = read_records(&p).unwrap();
        assert_eq!(objective, Objective::ContinualPretraining);
        assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(records[1].record, Record::Text("银行".into()));
    }

    #[test]
    fn json_arrays_report_the_line_each_element_starts_on() {
        let (_d, p) = write("[\n  {\"text\": \"a\"},\n  {\"text\":\n \"b\"},\n  {\"messages\": 1}\n]", "json");
        let err = read_records(&p).unwrap_err().to_string();
        assert!(err.ends_with(":5: `messages` must be an array, got 1"), "{err}");
    }

    #[test]
    fn bad_records_name_the_file_line_and_field() {
        let cases = [
            ("{\"text\":\"a\"}\n{\"text\": 3}\n", ":2: `text` must be a string, got 3"),
            ("{\"text\":\"a\"\n", ":1: not valid JSON"),
            ("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n", ":1: `messages` has no assistant message"),
            ("{\"messages\":[{\"role\":\"bot\",\"content\":\"hi\"}]}\n", "`messages[0].role` is `bot`"),
            (
                "{\"text\":\"a\"}\n{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}]}\n",
                ":2: this is a chat record but line 1 is a text record",
            ),
            ("{\"prompt\":\"a\"}\n", "expected a `text` record"),
        ];
        for (text, want) in cases {
            let (_d, p) = write(text, "jsonl");
            let err = read_records(&p).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("data.jsonl"), "{text:?}: {err}");
        }
    }

    #[test]
    fn alpaca_records_become_conversations() {
        let (_d, p) = write("{\"instruction\":\"翻译\",\"input\":\"hello\",\"output\":\"你好\"}\n", "jsonl");
        let (objective, records) = read_records(&p).unwrap();
        assert_eq!(objective, Objective::SupervisedFineTuning);
        assert_eq!(
            records[0].record,
            Record::Chat(vec![ChatMessage::new("user", "翻译\n\nhello"), ChatMessage::new("assistant", "你好")])
        );
    }

    #[test]
    fn assistant_turns_are_the_trained_pieces() {
        let src = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        let t = ChatTemplate::new(src.into(), "<s>".into(), "</s>".into()).unwrap();
        let msgs = [
            ChatMessage::new("user", "费用?"),
            ChatMessage::new("assistant", "每月5元"),
            ChatMessage::new("user", "and?"),
            ChatMessage::new("assistant", "none"),
        ];
        let pieces = chat_pieces(&t, &msgs).unwrap();
        let trained: Vec<&str> = pieces.iter().filter(|p| p.1).map(|p| p.0.as_str()).collect();
        assert_eq!(trained, ["每月5元<|end|>", "none<|end|>"]);
        let context: String = pieces.iter().filter(|p| !p.1).map(|p| p.0.as_str()).collect();
        assert_eq!(context, "<|user|>费用?<|end|><|assistant|><|user|>and?<|end|><|assistant|>");
        assert!(chat_pieces(&t, &msgs[1..2]).unwrap_err().contains("needs a user message"));
    }
}
