//! The lexical check a semantic hit must also pass: the two questions must name the same
//! things. Sentence embeddings place "reset my password" and "reset my PIN", or "open on
//! Saturday" and "open on Sunday", close together (measured: hard negatives reach cosine 0.98
//! with all-MiniLM-L6-v2, and Chinese questions, mostly unknown characters to its English
//! vocabulary, reach 1.0), and serving those answers is exactly the failure a cache must not
//! have. So a candidate's content terms must equal the question's: words minus function words
//! and politeness (lowercased, plural and -ing/-ed folded) for Latin script, characters minus
//! function characters for Chinese, numbers verbatim, in order. Negations are content. This trades
//! recall (rewordings miss) for precision (what is served answers the question asked).

/// English function words and politeness that do not change what is asked. Negations are
/// deliberately absent.
const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could", "dear",
    "did", "do", "does", "for", "from", "get", "go", "had", "has", "have", "hello", "help", "hey", "hi", "how", "i",
    "if", "im", "in", "into", "is", "it", "its", "just", "know", "let", "like", "may", "me", "might", "more", "much",
    "my", "need", "of", "on", "one", "or", "our", "please", "pls", "should", "so", "some", "tell", "thank", "thanks",
    "that", "the", "their", "them", "then", "there", "these", "this", "those", "to", "u", "up", "us", "want", "was",
    "way", "we", "what", "whats", "which", "will", "with", "would", "you", "your", "yours",
];

/// Chinese function characters: particles, pronouns, question and politeness words. Negations
/// (不, 没, 未, 无, 别) and measure words that carry meaning (多, 少, 几) are content.
const STOP_CHARS: &str =
    "的了吗呢吧啊呀哦嘛么我你您他她它们请问一下是在有要想能可以会这那个和与及还就都也吧该怎如何什哪里儿得着过给把被让";

fn fold(word: &str) -> String {
    let w = word.trim_end_matches("'s");
    let n = w.chars().count();
    let stem = if n > 5 && w.ends_with("ing") {
        &w[..w.len() - 3]
    } else if n > 4 && w.ends_with("ed") {
        &w[..w.len() - 2]
    } else if n > 4 && w.ends_with("ies") {
        return format!("{}y", &w[..w.len() - 3]);
    } else if n > 3 && w.ends_with('s') && !w.ends_with("ss") {
        &w[..w.len() - 1]
    } else {
        w
    };
    stem.to_string()
}

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

/// The content terms of a question, in order ("from savings to checking" is not "from
/// checking to savings").
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            let lower = word.to_lowercase();
            let w = lower.replace('\'', "");
            if !STOP_WORDS.contains(&w.as_str()) {
                out.push(if w.chars().all(|c| c.is_ascii_digit()) { w } else { fold(&w) });
            }
            word.clear();
        }
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush(&mut word, &mut out);
            if !STOP_CHARS.contains(c) {
                out.push(c.to_string());
            }
        } else if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            // Full-width letters and digits fold to ASCII.
            let c = match c {
                '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => {
                    char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
                }
                _ => c,
            };
            word.push(c);
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Whether two questions name the same things (see the module comment).
pub fn agree(a: &str, b: &str) -> bool {
    terms(a) == terms(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn politeness_and_inflection_do_not_matter() {
        assert!(agree("How do I reset my password?", "Hi, could you tell me how to reset my password, please?"));
        assert!(agree("What are your opening hours?", "opening hours"));
        assert!(agree("请问信用卡账单什么时候出？", "信用卡账单什么时候出"));
        assert!(agree("ＡＴＭ取款限额１０００元", "ATM取款限额1000元"));
    }

    #[test]
    fn different_things_disagree() {
        assert!(!agree("How do I reset my password?", "How do I reset my card PIN?"));
        assert!(!agree("Are you open on Saturday?", "Are you open on Sunday?"));
        assert!(!agree("How do I open an account?", "How do I close an account?"));
        assert!(!agree("Can I return an opened item?", "Can I not return an opened item?"));
        assert!(!agree("补办银行卡要多久？", "补办银行卡要多少钱？"));
        assert!(!agree("宽带怎么办理安装？", "宽带怎么办理拆机？"));
        assert!(!agree("转账限额是5000元吗", "转账限额是50000元吗"));
        assert!(!agree("信用卡能退款吗", "信用卡不能退款吗"));
        assert!(!agree("Move money from savings to checking", "Move money from checking to savings"));
    }
}
