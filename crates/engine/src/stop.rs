//! Stop strings over a stream of text pieces.
//!
//! A stop string may arrive split across tokens ("Us" + "er:"), so text that could still be
//! the start of a stop string is held back until it is known not to be one. The stop string
//! itself is never emitted, as in the OpenAI API.

#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

/// The result of feeding text: what may be shown now, and whether a stop string matched.
#[derive(Debug, PartialEq, Eq)]
pub struct StopCheck {
    pub emit: String,
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        Self { stops, pending: String::new(), stopped: false }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        if self.stopped {
            return StopCheck { emit: String::new(), stopped: true };
        }
        if self.stops.is_empty() {
            return StopCheck { emit: text.to_string(), stopped: false };
        }
        self.pending.push_str(text);
        // The earliest stop string that occurs wins.
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            self.stopped = true;
            let emit = self.pending[..at].to_string();
            self.pending.clear();
            return StopCheck { emit, stopped: true };
        }
        let hold = self.longest_partial_suffix();
        let cut = self.pending.len() - hold;
        let emit = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        StopCheck { emit, stopped: false }
    }

    /// End of generation: held-back text turned out not to be a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length in bytes of the longest suffix of `pending` that is a proper prefix of a stop
    /// string (always on a char boundary, since stop strings are valid UTF-8).
    fn longest_partial_suffix(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let max = (stop.len() - 1).min(self.pending.len());
            for len in (best + 1..=max).rev() {
                let start = self.pending.len() - len;
                if self.pending.is_char_boundary(start) && stop.starts_with(&self.pending[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let c = m.push(p);
            out.push_str(&c.emit);
            if c.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn no_stops_passes_everything() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn stop_split_across_pieces_is_caught_and_not_emitted() {
        assert_eq!(run(&["User:"], &["Hello ", "Us", "er", ": hi"]), ("Hello ".into(), true));
    }

    #[test]
    fn false_start_is_released() {
        assert_eq!(run(&["User:"], &["Use", "ful"]), ("Useful".into(), false));
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        assert_eq!(run(&["###"], &["a", "##"]), ("a##".into(), false));
    }

    #[test]
    fn chinese_stop_string() {
        assert_eq!(run(&["。"], &["你好", "世界。", "再见"]), ("你好世界".into(), true));
        assert_eq!(run(&["谢谢您"], &["好的谢", "谢你"]), ("好的谢谢你".into(), false));
    }

    #[test]
    fn earliest_of_several_wins() {
        assert_eq!(run(&["b", "a"], &["xxab"]), ("xx".into(), true));
    }
}
