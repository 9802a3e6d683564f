//! The request/answer API the server calls: actions per entity, blocking, audit, pseudonyms.

use luodi_guard::{
    AuditAction, AuditEvent, EntityRule, EntityType, Guard, GuardConfig, LexiconAction, LexiconConfig, Outcome,
    PiiAction,
};

const KEY: &str = "test-key-0123456789abcdef";

fn config(rules: &[(EntityType, PiiAction)]) -> GuardConfig {
    let mut config = GuardConfig::default();
    config.pii.hash_key = Some(KEY.into());
    for &(entity, action) in rules {
        config.pii.entities.insert(entity, EntityRule::new(action));
    }
    config
}

fn pass(guard: &Guard, text: &str) -> String {
    match guard.check_input(text, None).outcome {
        Outcome::Pass(text) => text.into_owned(),
        Outcome::Blocked(b) => panic!("blocked: {b}"),
    }
}

fn event(subject: &str, action: AuditAction, rule: &str, count: u32) -> AuditEvent {
    AuditEvent { subject: subject.into(), action, rule: rule.into(), count }
}

#[test]
fn defaults_hash_ids_and_mask_contacts() {
    let guard = Guard::new(&config(&[])).unwrap();
    let text = "张三，身份证11010519491231002X，手机138 0013 8000，邮箱zhang@example.com";
    let checked = guard.check_input(text, None);
    let pseudonym = guard.policy().pseudonym(EntityType::CnId, "11010519491231002X");
    let Outcome::Pass(out) = &checked.outcome else { panic!("blocked") };
    assert_eq!(out, &format!("张三，身份证{pseudonym}，手机138 **** 8000，邮箱z***@example.com"));
    assert_eq!(
        checked.audit,
        vec![
            event("CN_ID", AuditAction::Hash, "cn_id.18", 1),
            event("CN_MOBILE", AuditAction::Mask, "cn_mobile", 1),
            event("EMAIL", AuditAction::Mask, "email", 1),
        ]
    );
    assert!(!guard.policy().has_ephemeral_key());
}

#[test]
fn every_action() {
    let id = "11010519491231002X";
    let text = format!("ID {id} end");
    let guard = Guard::new(&config(&[(EntityType::CnId, PiiAction::Redact)])).unwrap();
    assert_eq!(pass(&guard, &text), "ID <CN_ID> end");
    let guard = Guard::new(&config(&[(EntityType::CnId, PiiAction::Mask)])).unwrap();
    assert_eq!(pass(&guard, &text), "ID 110***********002X end");
    let guard = Guard::new(&config(&[(EntityType::CnId, PiiAction::Allow)])).unwrap();
    let checked = guard.check_input(&text, None);
    assert!(matches!(&checked.outcome, Outcome::Pass(t) if *t == text));
    assert_eq!(checked.audit, vec![event("CN_ID", AuditAction::Allow, "cn_id.18", 1)]);

    let guard = Guard::new(&config(&[(EntityType::CnId, PiiAction::Block)])).unwrap();
    let both = format!("手机13800138000，{text}");
    let checked = guard.check_input(&both, None);
    let blocked = checked.blocked().expect("blocked");
    assert_eq!((blocked.subject.as_str(), blocked.rule.as_str()), ("CN_ID", "cn_id.18"));
    assert!(!blocked.to_string().contains(id), "the reason never carries the value");
    assert_eq!(checked.audit, vec![event("CN_ID", AuditAction::Block, "cn_id.18", 1)], "only the block is audited");
}

#[test]
fn mask_keep_counts_from_config() {
    let mut config = config(&[]);
    let rule = EntityRule { action: PiiAction::Mask, keep_start: Some(0), keep_end: Some(2) };
    config.pii.entities.insert(EntityType::CnMobile, rule);
    config.pii.mask_char = '#';
    let guard = Guard::new(&config).unwrap();
    assert_eq!(pass(&guard, "13800138000"), "#########00");
}

#[test]
fn hashing_is_stable_and_key_dependent() {
    let a = Guard::new(&config(&[])).unwrap();
    let b = Guard::new(&config(&[])).unwrap();
    let text = "卡号6222021234567890128";
    let first = pass(&a, text);
    assert_eq!(first, pass(&b, text), "same key, same pseudonym");
    let mut other = config(&[]);
    other.pii.hash_key = Some("another-key-0123456789".into());
    assert_ne!(first, pass(&Guard::new(&other).unwrap(), text));
    let ephemeral = Guard::new(&GuardConfig::default()).unwrap();
    assert!(ephemeral.policy().has_ephemeral_key());
}

#[test]
fn pseudonyms_restore_in_the_answer() {
    let mut config = config(&[(EntityType::CnMobile, PiiAction::Hash)]);
    config.pii.restore_pseudonyms = true;
    let guard = Guard::new(&config).unwrap();
    let mut map = guard.pseudonym_map().expect("restore is on");
    let first = guard.check_input("我的手机是13800138000", Some(&mut map));
    let second = guard.check_input("再说一次：138-0013-8000", Some(&mut map));
    let (Outcome::Pass(first), Outcome::Pass(second)) = (first.outcome, second.outcome) else { panic!("blocked") };
    let pseudonym = first.trim_start_matches("我的手机是");
    assert!(second.ends_with(pseudonym), "one value, one pseudonym across messages: {second}");
    assert_eq!(map.len(), 1);
    let answer = format!("好的，已记录号码{pseudonym}。");
    assert_eq!(map.restore(&answer), "好的，已记录号码13800138000。");
    assert!(Guard::new(&GuardConfig::default()).unwrap().pseudonym_map().is_none());
}

#[test]
fn lexicons_block_mask_and_flag() {
    let mut config = config(&[]);
    config.lexicons = vec![
        LexiconConfig {
            category: "banned".into(),
            action: LexiconAction::Block,
            path: None,
            terms: vec!["炸弹".into()],
        },
        LexiconConfig {
            category: "rude".into(), action: LexiconAction::Mask, path: None, terms: vec!["笨蛋".into()]
        },
        LexiconConfig {
            category: "competitor".into(),
            action: LexiconAction::Flag,
            path: None,
            terms: vec!["acme".into()],
        },
    ];
    let guard = Guard::new(&config).unwrap();
    let checked = guard.check_input("怎么做炸 弹", None);
    assert_eq!(checked.blocked().map(|b| (b.subject.as_str(), b.rule.as_str())), Some(("banned", "inline:1")));
    let checked = guard.check_input("你这个笨蛋，ACME 更好，电话13800138000", None);
    let Outcome::Pass(text) = &checked.outcome else { panic!("blocked") };
    assert_eq!(text, "你这个**，ACME 更好，电话138****8000");
    assert_eq!(
        checked.audit,
        vec![
            event("CN_MOBILE", AuditAction::Mask, "cn_mobile", 1),
            event("rude", AuditAction::Mask, "inline:1", 1),
            event("competitor", AuditAction::Flag, "inline:1", 1),
        ]
    );
}

#[test]
fn directions_are_configurable() {
    let mut config = config(&[]);
    config.input.pii = false;
    let guard = Guard::new(&config).unwrap();
    assert_eq!(pass(&guard, "13800138000"), "13800138000");
    // Answers: PII off by default, on when asked.
    assert!(matches!(guard.check_output("13800138000").outcome, Outcome::Pass(t) if t == "13800138000"));
    config.output.pii = true;
    let guard = Guard::new(&config).unwrap();
    assert!(matches!(guard.check_output("13800138000").outcome, Outcome::Pass(t) if t == "138****8000"));
}

#[test]
fn redact_never_blocks() {
    let mut config = config(&[(EntityType::CnId, PiiAction::Block)]);
    config.lexicons = vec![LexiconConfig {
        category: "banned".into(),
        action: LexiconAction::Block,
        path: None,
        terms: vec!["炸弹".into()],
    }];
    let guard = Guard::new(&config).unwrap();
    let (text, audit) = guard.redact("炸弹 11010519491231002X");
    assert_eq!(text, "** <CN_ID>");
    assert_eq!(
        audit,
        vec![event("CN_ID", AuditAction::Redact, "cn_id.18", 1), event("banned", AuditAction::Mask, "inline:1", 1)]
    );
}

#[test]
fn config_errors_name_the_setting() {
    let mut config = config(&[]);
    config
        .pii
        .entities
        .insert(EntityType::BankCard, EntityRule { action: PiiAction::Redact, keep_start: Some(4), keep_end: None });
    let err = Guard::new(&config).unwrap_err().to_string();
    assert!(err.contains("BANK_CARD") && err.contains("redact"), "{err}");

    let config = GuardConfig {
        lexicons: vec![LexiconConfig {
            category: "words".into(),
            action: LexiconAction::Flag,
            path: Some("/nonexistent/words.txt".into()),
            terms: vec![],
        }],
        ..GuardConfig::default()
    };
    let err = Guard::new(&config).unwrap_err().to_string();
    assert!(err.contains("words") && err.contains("/nonexistent/words.txt"), "{err}");
}
