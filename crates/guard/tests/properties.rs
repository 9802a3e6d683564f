//! Property tests: edits stay inside findings, spans are well-formed, pseudonyms are stable and
//! keyed, the normalization offset map round-trips, streaming equals checking the whole text.

use luodi_guard::normalize::{fold_width, Normalized};
use luodi_guard::{
    mask_value, redaction, EntityRule, EntityType, Guard, GuardConfig, LexiconAction, LexiconConfig, Outcome,
    PiiAction, PseudonymKey,
};
use proptest::prelude::*;

/// Pieces that contain PII, near-misses, separators and evasions; texts are random sequences.
const PIECES: &[&str] = &[
    "11010519491231002X",
    "110105194912310021",
    "１１０１０５１９４９１２３１００２Ｘ",
    "13800138000",
    "138 0013 8000",
    "+86 139-0013-9000",
    "010-12345678",
    "(0755)1234567",
    "6222021234567890128",
    "4111 1111 1111 1111",
    "zhang.san@example.com",
    "192.168.1.10",
    "2001:db8::8a2e:370:7334",
    "E12345678",
    "91110000802100433B",
    "123-45-6789",
    "DE89 3704 0044 0532 0130 00",
    "坏人",
    "坏 * 人",
    "违禁词",
    "，",
    "。",
    " ",
    "-",
    "|",
    "\n",
    "客户",
    "电话",
    "abc",
    "１２３",
    "\u{200B}",
];

fn text_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![3 => prop::sample::select(PIECES).prop_map(str::to_owned), 1 => "\\PC{0,6}"];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

fn guard_with(action: PiiAction) -> Guard {
    let mut config = GuardConfig::default();
    config.pii.hash_key = Some("property-test-key-0123456789".into());
    for entity in EntityType::ALL {
        config.pii.entities.insert(entity, EntityRule::new(action));
    }
    Guard::new(&config).unwrap()
}

fn moderating_guard() -> Guard {
    let mut config = GuardConfig::default();
    config.pii.hash_key = Some("property-test-key-0123456789".into());
    config.output.pii = true;
    config.lexicons = vec![
        LexiconConfig {
            category: "banned".into(),
            action: LexiconAction::Block,
            path: None,
            terms: vec!["违禁词".into()],
        },
        LexiconConfig {
            category: "rude".into(), action: LexiconAction::Mask, path: None, terms: vec!["坏人".into()]
        },
    ];
    Guard::new(&config).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn actions_change_only_the_findings(text in text_strategy()) {
        for action in [PiiAction::Mask, PiiAction::Hash, PiiAction::Redact, PiiAction::Allow] {
            let guard = guard_with(action);
            let findings = guard.detect(&text);
            let Outcome::Pass(out) = guard.check_input(&text, None).outcome else { panic!("no block configured") };
            let mut expected = String::new();
            let mut pos = 0;
            for f in &findings {
                let value = &text[f.bytes.clone()];
                expected.push_str(&text[pos..f.bytes.start]);
                match action {
                    PiiAction::Mask => {
                        let (_, keep_start, keep_end) = luodi_guard::default_rule(f.entity);
                        expected.push_str(&mask_value(f.entity, value, keep_start, keep_end, '*'));
                    }
                    PiiAction::Hash => expected.push_str(&guard.policy().pseudonym(f.entity, value)),
                    PiiAction::Redact => expected.push_str(&redaction(f.entity)),
                    _ => expected.push_str(value),
                }
                pos = f.bytes.end;
            }
            expected.push_str(&text[pos..]);
            prop_assert_eq!(out.as_ref(), expected.as_str(), "action {:?}", action);
        }
    }

    #[test]
    fn spans_are_char_aligned_sorted_and_consistent(text in prop_oneof![text_strategy(), any::<String>()]) {
        let findings = guard_with(PiiAction::Allow).detect(&text);
        let mut last_end = 0;
        for f in &findings {
            prop_assert!(f.bytes.start < f.bytes.end);
            prop_assert!(f.bytes.start >= last_end, "sorted and non-overlapping");
            prop_assert!(text.is_char_boundary(f.bytes.start) && text.is_char_boundary(f.bytes.end));
            prop_assert_eq!(text[..f.bytes.start].chars().count(), f.chars.start);
            prop_assert_eq!(text[..f.bytes.end].chars().count(), f.chars.end);
            last_end = f.bytes.end;
        }
    }

    #[test]
    fn pseudonyms_are_stable_and_keyed(value in "[0-9]{11,19}", k1 in "[a-z]{16,24}", k2 in "[a-z]{16,24}") {
        prop_assume!(k1 != k2);
        let (a, b) = (PseudonymKey::new(k1.as_bytes()), PseudonymKey::new(k2.as_bytes()));
        let p = a.pseudonym(EntityType::BankCard, &value);
        prop_assert_eq!(&p, &a.pseudonym(EntityType::BankCard, &value));
        prop_assert_ne!(&p, &b.pseudonym(EntityType::BankCard, &value));
        prop_assert!(!p.contains(&value));
    }

    #[test]
    fn pii_normalization_maps_back_char_by_char(text in prop_oneof![text_strategy(), any::<String>()]) {
        let n = Normalized::for_pii(&text);
        let mut rebuilt = String::new();
        let mut last = 0;
        for (i, c) in n.as_str().char_indices() {
            let orig = n.to_original(i..i + c.len_utf8());
            prop_assert!(orig.start >= last);
            let mut chars = text[orig.clone()].chars();
            let source = chars.next().unwrap();
            prop_assert!(chars.next().is_none(), "one original char per normalized char");
            prop_assert_eq!(fold_width(source), c);
            rebuilt.push_str(&text[orig.clone()]);
            last = orig.end;
        }
        // Only invisible characters are dropped.
        let visible: String = text.chars().filter(|c| !matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')).collect();
        prop_assert_eq!(rebuilt, visible);
    }

    #[test]
    fn lexicon_normalization_maps_back_monotonically(text in prop_oneof![text_strategy(), any::<String>()]) {
        let n = Normalized::for_lexicon(&text);
        let mut last_start = 0;
        for (i, c) in n.as_str().char_indices() {
            let orig = n.to_original(i..i + c.len_utf8());
            prop_assert!(orig.start >= last_start, "the map is monotone");
            prop_assert!(text.is_char_boundary(orig.start) && text.is_char_boundary(orig.end));
            let source: Vec<char> = text[orig.clone()].chars().collect();
            prop_assert_eq!(source.len(), 1);
            // Lowercasing may expand one char into several, all mapped to the same source.
            let lowered: String = fold_width(source[0]).to_lowercase().collect();
            prop_assert!(c.is_alphabetic() || lowered.contains(c) || fold_width(source[0]) == c,
                "{:?} does not come from {:?}", c, source[0]);
            last_start = orig.start;
        }
    }

    #[test]
    fn streaming_equals_checking_the_whole_answer(
        text in text_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let guard = moderating_guard();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).filter(|&p| text.is_char_boundary(p)).collect();
        points.sort_unstable();
        points.dedup();
        let mut moderator = guard.stream_moderator();
        let mut streamed = String::new();
        let mut blocked = None;
        let mut prev = 0;
        for p in points.into_iter().chain([text.len()]) {
            match moderator.push(&text[prev..p]) {
                Ok(out) => streamed.push_str(&out),
                Err(b) => { blocked = Some(b); break; }
            }
            prev = p;
        }
        if blocked.is_none() {
            match moderator.finish() {
                Ok(out) => streamed.push_str(&out),
                Err(b) => blocked = Some(b),
            }
        }
        match guard.check_output(&text).outcome {
            Outcome::Pass(whole) => {
                prop_assert_eq!(blocked, None);
                prop_assert_eq!(streamed, whole.into_owned());
            }
            Outcome::Blocked(b) => {
                prop_assert_eq!(blocked, Some(b));
                prop_assert!(!streamed.contains("违禁"));
            }
        }
    }
}
