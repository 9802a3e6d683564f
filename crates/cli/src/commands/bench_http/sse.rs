//! Server-sent events of a streamed chat completion: bytes as they come off the socket ->
//! event payloads -> what the benchmark needs from each chunk. Socket reads split events
//! anywhere, including inside a multi-byte UTF-8 character, so bytes are buffered until a
//! whole line is there and only whole lines are decoded.

use serde_json::Value;

/// Splits a byte stream into the `data` payloads of its events.
#[derive(Default)]
pub struct SseParser {
    pending: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds the next bytes; returns the payloads of the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(n) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.pending[start..start + n];
            start += n + 1;
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            let line = std::str::from_utf8(line).map_err(|_| "event stream is not valid UTF-8".to_string())?;
            if let Some(event) = line_into(&mut self.data, line) {
                events.push(event);
            }
        }
        self.pending.drain(..start);
        Ok(events)
    }

    /// The end of the stream: an event not closed by a blank line still counts, as browsers do.
    pub fn finish(&mut self) -> Result<Option<String>, String> {
        let rest = std::mem::take(&mut self.pending);
        let line = String::from_utf8(rest).map_err(|_| "event stream is not valid UTF-8".to_string())?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if !line.is_empty() {
            line_into(&mut self.data, line);
        }
        Ok(self.data.take())
    }
}

/// One line of the event stream; a blank line completes the event being collected.
fn line_into(data: &mut Option<String>, line: &str) -> Option<String> {
    if line.is_empty() {
        return data.take();
    }
    // Comments (":") and the other fields (event, id, retry) carry nothing measured here.
    let (field, value) = line.split_once(':').unwrap_or((line, ""));
    if field == "data" {
        let value = value.strip_prefix(' ').unwrap_or(value);
        match data {
            Some(d) => {
                d.push('\n');
                d.push_str(value);
            }
            None => *data = Some(value.to_string()),
        }
    }
    None
}

/// What one event says, as far as the benchmark is concerned.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk {
    /// Non-empty generated text of the first choice.
    pub content: Option<String>,
    pub usage: Option<Usage>,
    /// `data: [DONE]`.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// Reads one payload; an error object (some servers report mid-stream failures this way) or a
/// payload that is not JSON is an error.
pub fn interpret(data: &str) -> Result<Chunk, String> {
    if data.trim() == "[DONE]" {
        return Ok(Chunk { done: true, ..Chunk::default() });
    }
    let value: Value = serde_json::from_str(data).map_err(|e| format!("chunk is not JSON ({e}): {}", clip(data)))?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        let message =
            error.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| error.to_string());
        return Err(format!("error event: {}", clip(&message)));
    }
    let delta = &value["choices"][0]["delta"];
    // Reasoning models stream their thinking as `reasoning_content`; it is generated output
    // too, and skipping it would put the whole thinking time into TTFT.
    let content = [&delta["content"], &delta["reasoning_content"]]
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .collect::<String>();
    let usage = value.get("usage").filter(|u| u.is_object()).map(|u| Usage {
        prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64),
        completion_tokens: u.get("completion_tokens").and_then(Value::as_u64),
    });
    Ok(Chunk { content: (!content.is_empty()).then_some(content), usage, done: false })
}

/// Messages quoted from a server are cut short so one bad reply cannot flood the report.
pub fn clip(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for part in parts {
            out.extend(p.feed(part).unwrap());
        }
        out.extend(p.finish().unwrap());
        out
    }

    #[test]
    fn events_split_mid_line_and_mid_character() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"你好\"}}]}\n\ndata: [DONE]\n\n".as_bytes();
        let whole = feed_all(&[stream]);
        assert_eq!(whole.len(), 2);
        // Every split point, including the three inside each of 你 and 好.
        for cut in 0..stream.len() {
            assert_eq!(feed_all(&[&stream[..cut], &stream[cut..]]), whole, "cut at {cut}");
        }
        // And one byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(feed_all(&bytes), whole);
        assert_eq!(interpret(&whole[0]).unwrap().content.as_deref(), Some("你好"));
        assert!(interpret(&whole[1]).unwrap().done);
    }

    #[test]
    fn crlf_comments_other_fields_and_multiline_data() {
        let stream = b": keep-alive\r\nevent: message\r\nid: 7\r\ndata: a\r\ndata:b\r\n\r\ndata: tail";
        assert_eq!(feed_all(&[stream]), vec!["a\nb".to_string(), "tail".to_string()]);
    }

    #[test]
    fn usage_chunk_and_empty_deltas() {
        let c = interpret(r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#)
            .unwrap();
        assert_eq!(c.usage, Some(Usage { prompt_tokens: Some(12), completion_tokens: Some(5) }));
        assert_eq!(c.content, None);
        // The role-only first chunk and a null usage carry nothing.
        let c = interpret(r#"{"choices":[{"delta":{"role":"assistant","content":""}}],"usage":null}"#).unwrap();
        assert_eq!(c, Chunk::default());
        let c = interpret(r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#).unwrap();
        assert_eq!(c.content.as_deref(), Some("hmm"));
    }

    #[test]
    fn error_event_and_garbage_are_errors() {
        let e = interpret(r#"{"error":{"message":"model overloaded","type":"server_error"}}"#).unwrap_err();
        assert!(e.contains("model overloaded"), "{e}");
        assert!(interpret("<html>").is_err());
        let mut p = SseParser::default();
        assert!(p.feed(b"data: \xff\xfe\n\n").is_err());
    }

    #[test]
    fn clip_counts_characters_not_bytes() {
        let long = "错".repeat(300);
        assert_eq!(clip(&long).chars().count(), 201);
        assert_eq!(clip("short"), "short");
    }
}
