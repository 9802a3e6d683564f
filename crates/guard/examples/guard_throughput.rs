//! Rough throughput of the guard on mixed Chinese/English text with PII, for spotting
//! regressions by eye: `cargo run --release -p luodi-guard --example guard_throughput`.

use std::time::Instant;

use luodi_guard::{Guard, GuardConfig, LexiconAction, LexiconConfig};

fn main() {
    let line = "客户张三，身份证11010519491231002X，手机138 0013 8000，邮箱zhang@example.com，\
                卡号6222021234567890128。本行营业时间为周一至周五，请勿向他人透露验证码。\
                The quick brown fox jumps over the lazy dog at 192.168.1.10. 订单号 20240115123456 已发货。\n";
    let text = line.repeat(4096);
    let mut config = GuardConfig::default();
    config.pii.hash_key = Some("benchmark-key-0123456789".into());
    config.output.pii = true;
    let terms: Vec<String> = (0..2000).map(|i| format!("敏感词{i}")).chain(["坏人".into(), "badword".into()]).collect();
    config.lexicons = vec![LexiconConfig { category: "demo".into(), action: LexiconAction::Mask, path: None, terms }];
    let guard = Guard::new(&config).unwrap();
    let mb = text.len() as f64 / 1e6;

    let t = Instant::now();
    let findings = guard.detect(&text).len();
    report("detect", mb, t, findings);

    let t = Instant::now();
    let terms = guard.find_terms(&text).len();
    report("lexicon", mb, t, terms);

    let t = Instant::now();
    let checked = guard.check_input(&text, None);
    report("check_input", mb, t, checked.audit.len());

    let t = Instant::now();
    let mut moderator = guard.stream_moderator();
    let mut out = 0;
    let chars: Vec<char> = text.chars().collect();
    for token in chars.chunks(3) {
        out += moderator.push(&token.iter().collect::<String>()).map_or(0, |s| s.len());
    }
    out += moderator.finish().map_or(0, |s| s.len());
    report("stream (3-char tokens)", mb, t, out);
}

fn report(what: &str, mb: f64, start: Instant, n: usize) {
    let secs = start.elapsed().as_secs_f64();
    println!("{what:<24} {:>8.1} MB/s  ({n})", mb / secs);
}
