//! Streaming moderation: terms and PII split across chunks, multi-byte characters split at
//! every boundary, blocking mid-stream.

use luodi_guard::{Blocked, Guard, GuardConfig, LexiconAction, LexiconConfig, StreamModerator};

fn guard(output_pii: bool) -> Guard {
    let mut config = GuardConfig::default();
    config.pii.hash_key = Some("stream-test-key-0123456789".into());
    config.output.pii = output_pii;
    config.lexicons = vec![
        LexiconConfig {
            category: "banned".into(),
            action: LexiconAction::Block,
            path: None,
            terms: vec!["违禁词".into(), "forbidden".into()],
        },
        LexiconConfig {
            category: "rude".into(), action: LexiconAction::Mask, path: None, terms: vec!["坏人".into()]
        },
    ];
    Guard::new(&config).unwrap()
}

/// Feeds `chunks` and returns what was emitted and the block, if any.
fn run(moderator: &mut StreamModerator, chunks: &[&str]) -> (String, Option<Blocked>) {
    let mut out = String::new();
    for chunk in chunks {
        match moderator.push(chunk) {
            Ok(text) => out += &text,
            Err(blocked) => return (out, Some(blocked)),
        }
    }
    match moderator.finish() {
        Ok(text) => (out + &text, None),
        Err(blocked) => (out, Some(blocked)),
    }
}

/// Every way to cut `text` in two at a char boundary, plus one chunk per char.
fn splits(text: &str) -> Vec<Vec<&str>> {
    let mut all: Vec<Vec<&str>> =
        (0..=text.len()).filter(|&i| text.is_char_boundary(i)).map(|i| vec![&text[..i], &text[i..]]).collect();
    all.push(text.char_indices().map(|(i, c)| &text[i..i + c.len_utf8()]).collect());
    all
}

#[test]
fn masked_term_split_across_chunks() {
    let guard = guard(false);
    let text = "他说那个坏人已经走了，我们很安全。";
    for chunks in splits(text) {
        let (out, blocked) = run(&mut guard.stream_moderator(), &chunks);
        assert_eq!(blocked, None);
        assert_eq!(out, "他说那个**已经走了，我们很安全。", "chunks {chunks:?}");
    }
}

#[test]
fn evasion_split_across_chunks() {
    let guard = guard(false);
    let text = "他是个坏 * 人啊";
    for chunks in splits(text) {
        let (out, _) = run(&mut guard.stream_moderator(), &chunks);
        assert_eq!(out, "他是个*****啊", "chunks {chunks:?}");
    }
}

#[test]
fn block_term_stops_the_stream() {
    let guard = guard(false);
    let text = "这是一段很长的正常回答，内容没有问题，然后出现了违禁词，后面还有很多内容。";
    let prefix_len = text.find("违禁词").unwrap();
    for chunks in splits(text) {
        let mut moderator = guard.stream_moderator();
        let (out, blocked) = run(&mut moderator, &chunks);
        let blocked = blocked.expect("blocked");
        assert_eq!((blocked.subject.as_str(), blocked.rule.as_str()), ("banned", "inline:1"));
        assert!(text[..prefix_len].starts_with(&out), "only a prefix before the term is emitted: {out:?}");
        assert!(!out.contains('违'));
        // Nothing more, ever.
        assert_eq!(moderator.push("更多").unwrap_err(), blocked);
        assert_eq!(moderator.finish().unwrap_err(), blocked);
    }
}

#[test]
fn english_block_term_on_a_word_boundary_only() {
    let guard = guard(false);
    let (out, blocked) = run(&mut guard.stream_moderator(), &["This is not forbid", "denied, ", "it is fine."]);
    assert_eq!((out.as_str(), blocked), ("This is not forbiddenied, it is fine.", None));
    let (_, blocked) = run(&mut guard.stream_moderator(), &["This is for", "bidden", "."]);
    assert!(blocked.is_some());
}

#[test]
fn bytes_split_inside_chinese_characters() {
    let guard = guard(false);
    let text = "坏人走了。😀";
    let bytes = text.as_bytes();
    for cut in 0..=bytes.len() {
        let mut moderator = guard.stream_moderator();
        let mut out = moderator.push_bytes(&bytes[..cut]).unwrap();
        out += &moderator.push_bytes(&bytes[cut..]).unwrap();
        out += &moderator.finish().unwrap();
        assert_eq!(out, "**走了。😀", "cut at byte {cut}");
    }
    // One byte at a time.
    let mut moderator = guard.stream_moderator();
    let mut out = String::new();
    for b in bytes {
        out += &moderator.push_bytes(std::slice::from_ref(b)).unwrap();
    }
    out += &moderator.finish().unwrap();
    assert_eq!(out, "**走了。😀");
}

#[test]
fn pii_in_answers_is_masked_when_enabled() {
    let guard = guard(true);
    let text = "请拨打138 0013 8000或发邮件到zhang@example.com，谢谢。";
    for chunks in splits(text) {
        let (out, blocked) = run(&mut guard.stream_moderator(), &chunks);
        assert_eq!(blocked, None);
        assert_eq!(out, "请拨打138 **** 8000或发邮件到z***@example.com，谢谢。", "chunks {chunks:?}");
    }
    // Off by default: passes through.
    let (out, _) = run(&mut self::guard(false).stream_moderator(), &["138 0013", " 8000"]);
    assert_eq!(out, "138 0013 8000");
}

#[test]
fn numbers_inside_longer_runs_stay_unmasked_across_chunks() {
    let guard = guard(true);
    // A 25-digit reference: its last 11 digits look like a mobile, but only in isolation.
    let text = "参考号 1234567890123413800138000 结束";
    for chunks in splits(text) {
        let (out, _) = run(&mut guard.stream_moderator(), &chunks);
        assert_eq!(out, text, "chunks {chunks:?}");
    }
}

#[test]
fn text_is_emitted_while_streaming() {
    let guard = guard(false);
    let mut moderator = guard.stream_moderator();
    let hold = moderator.hold_chars();
    assert!(hold > 0);
    let long = "正常的内容".repeat(20);
    let emitted = moderator.push(&long).unwrap();
    assert_eq!(emitted.chars().count(), long.chars().count() - hold, "holds back exactly the window");
    assert_eq!(emitted + &moderator.finish().unwrap(), long);

    let mut config = GuardConfig::default();
    config.output.lexicon = false;
    let mut passthrough = Guard::new(&config).unwrap().stream_moderator();
    assert_eq!(passthrough.hold_chars(), 0);
    assert_eq!(passthrough.push("立即输出").unwrap(), "立即输出");
}

#[test]
fn audit_counts_emitted_decisions_once() {
    let guard = guard(false);
    let mut moderator = guard.stream_moderator();
    let (out, _) = run(&mut moderator, &["坏人", "和", "坏", "人"]);
    assert_eq!(out, "**和**");
    let audit = moderator.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].subject.as_str(), audit[0].count), ("rude", 2));
}
