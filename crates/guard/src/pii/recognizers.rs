//! Candidate search (regexes) and classification (validators) for each entity type.
//!
//! All recognizers run on the PII-normalized text, so they only ever see ASCII digits and
//! letters. The `regex` crate has no look-around, so "not inside a longer run" is checked by
//! hand on the bytes around each match ([`clear_before`], [`clear_after`]).
//!
//! Numbers (IDs, phones, cards, SSNs) share one recognizer: a regex finds maximal runs of digits
//! joined by single spaces or dashes, and [`Recognizers::classify`] decides what a run is. If the
//! whole run is nothing, each space-separated part is tried on its own, so `13800138000
//! 13900139000` yields two phones while `6222 0212 3456 7890 1234 5678` (a longer run) never
//! yields a card from its middle.

use std::net::Ipv6Addr;
use std::ops::Range;

use regex::Regex;

use super::validators as v;
use super::EntityType;

/// A recognizer hit before overlap resolution, in normalized-text bytes.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub range: Range<usize>,
    pub entity: EntityType,
    pub confidence: f32,
    pub rule: &'static str,
}

#[derive(Debug, Clone)]
pub struct Recognizers {
    digit_run: Regex,
    paren_phone: Regex,
    email: Regex,
    ipv4: Regex,
    ipv6: Regex,
    passport: Regex,
    uscc: Regex,
    iban_prefix: Regex,
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in PII pattern compiles")
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// True when the match starting at `start` is not the continuation of a longer token: not after
/// a letter, digit or underscore, and not after a `digit.` (a decimal or a dotted number).
fn clear_before(b: &[u8], start: usize) -> bool {
    match start.checked_sub(1).map(|i| b[i]) {
        None => true,
        Some(p) if is_word_byte(p) => false,
        Some(b'.') => !(start >= 2 && b[start - 2].is_ascii_digit()),
        Some(_) => true,
    }
}

/// True when the match ending at `end` is not followed by more of the same token: a letter,
/// digit or underscore, or a `.digit`.
fn clear_after(b: &[u8], end: usize) -> bool {
    match b.get(end) {
        None => true,
        Some(&n) if is_word_byte(n) => false,
        Some(b'.') => !b.get(end + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

impl Recognizers {
    pub fn new() -> Recognizers {
        Recognizers {
            // Digits with single space/dash joiners; a trailing X only matters for resident IDs.
            digit_run: regex(r"[0-9]+(?:[ \-][0-9]+)*[Xx]?"),
            paren_phone: regex(r"\((0[0-9]{2,3})\) ?([1-9][0-9]{6,7})"),
            email: regex(
                r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}",
            ),
            ipv4: regex(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"),
            ipv6: regex(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}(?:\.[0-9]{1,3}){0,3}"),
            passport: regex(r"[EG][0-9]{8}|E[A-HJ-NP-Z][0-9]{7}"),
            uscc: regex(r"[0-9A-HJ-NP-RTUW-Y]{18}"),
            iban_prefix: regex(r"[A-Z]{2}[0-9]{2}"),
        }
    }

    /// Appends every validated candidate in `text` (normalized) to `out`.
    pub fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        // One byte pass decides which recognizers can match at all; most texts skip most.
        let (mut digit, mut at, mut colon, mut upper) = (false, false, false, false);
        for &c in b {
            digit |= c.is_ascii_digit();
            at |= c == b'@';
            colon |= c == b':';
            upper |= c.is_ascii_uppercase();
        }
        if digit {
            self.numbers(text, out);
            self.paren_phones(text, out);
            self.ipv4s(text, out);
            // Not behind `upper`: all-digit USCCs exist (e.g. 914403001922038216).
            self.usccs(text, out);
            if upper {
                self.passports(text, out);
                self.ibans(text, out);
            }
        }
        if at {
            self.emails(text, out);
        }
        if colon {
            self.ipv6s(text, out);
        }
    }

    fn numbers(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        let year = v::current_year();
        let mut scratch = Scratch::default();
        for m in self.digit_run.find_iter(text) {
            let run = m.range();
            let before_ok = clear_before(b, run.start);
            let after_ok = clear_after(b, run.end);
            let found = out.len();
            if before_ok && after_ok {
                classify(b, run.clone(), year, &mut scratch, out);
            }
            if out.len() > found || !b[run.clone()].contains(&b' ') {
                continue;
            }
            // Nothing for the whole run: try each space-separated part on its own.
            let mut start = run.start;
            for (i, &c) in b[run.clone()].iter().enumerate() {
                let pos = run.start + i;
                if c == b' ' || pos + 1 == run.end {
                    let end = if c == b' ' { pos } else { run.end };
                    let ok = (start != run.start || before_ok) && (end != run.end || after_ok);
                    if ok {
                        classify(b, start..end, year, &mut scratch, out);
                    }
                    start = pos + 1;
                }
            }
        }
    }

    fn paren_phones(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        for caps in self.paren_phone.captures_iter(text) {
            let (Some(all), Some(area)) = (caps.get(0), caps.get(1)) else { continue };
            if area_code_valid(area.as_str().as_bytes()) && clear_after(b, all.end()) {
                out.push(Candidate {
                    range: all.range(),
                    entity: EntityType::CnPhone,
                    confidence: 0.85,
                    rule: "cn_phone.paren",
                });
            }
        }
    }

    fn emails(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        for m in self.email.find_iter(text) {
            let mut start = m.start();
            // A leading dot is punctuation before the address, not part of it.
            while b[start] == b'.' {
                start += 1;
            }
            let Some(at) = text[start..m.end()].find('@').map(|p| start + p) else { continue };
            let local = &b[start..at];
            if local.is_empty() || local.ends_with(b".") || local.windows(2).any(|w| w == b"..") {
                continue;
            }
            let after_ok = !b.get(m.end()).is_some_and(|&n| is_word_byte(n) || n == b'-' || n == b'@');
            let before_ok = start == 0 || !matches!(b[start - 1], b'@');
            if after_ok && before_ok {
                out.push(Candidate {
                    range: start..m.end(),
                    entity: EntityType::Email,
                    confidence: 0.95,
                    rule: "email",
                });
            }
        }
    }

    fn ipv4s(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        for m in self.ipv4.find_iter(text) {
            let before_ok = m.start() == 0 || !(is_word_byte(b[m.start() - 1]) || b[m.start() - 1] == b'.');
            if before_ok && clear_after(b, m.end()) && v::ipv4_valid(m.as_str().as_bytes()) {
                out.push(Candidate { range: m.range(), entity: EntityType::Ipv4, confidence: 0.85, rule: "ipv4" });
            }
        }
    }

    fn ipv6s(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        for m in self.ipv6.find_iter(text) {
            let (mut start, mut end) = (m.start(), m.end());
            // Prose puts colons around an address ("地址：fe80::1", the full-width colon folded,
            // or "fe80::1: unreachable"); a `::` stays.
            if b[start..end].starts_with(b":") && !b[start..end].starts_with(b"::") {
                start += 1;
            }
            if b[start..end].ends_with(b":") && !b[start..end].ends_with(b"::") {
                end -= 1;
            }
            let s = &text[start..end];
            let groups = s.split(':').filter(|g| !g.is_empty()).count();
            // `::`, `a::b` and `std::` are code, not addresses; real ones have a few groups.
            if groups < 2 || s.len() < 6 {
                continue;
            }
            let before_ok = start == 0 || !(is_word_byte(b[start - 1]) || b[start - 1] == b'.');
            let after_ok = !b.get(end).is_some_and(|&n| is_word_byte(n)) && (end < m.end() || clear_after(b, end));
            if before_ok && after_ok && s.parse::<Ipv6Addr>().is_ok() {
                out.push(Candidate { range: start..end, entity: EntityType::Ipv6, confidence: 0.9, rule: "ipv6" });
            }
        }
    }

    fn passports(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        for m in self.passport.find_iter(text) {
            if clear_before(b, m.start()) && clear_after(b, m.end()) {
                out.push(Candidate {
                    range: m.range(),
                    entity: EntityType::CnPassport,
                    confidence: 0.75,
                    rule: "cn_passport",
                });
            }
        }
    }

    fn usccs(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        for m in self.uscc.find_iter(text) {
            if clear_before(b, m.start()) && clear_after(b, m.end()) && v::uscc_valid(m.as_str().as_bytes()) {
                out.push(Candidate { range: m.range(), entity: EntityType::CnUscc, confidence: 0.9, rule: "cn_uscc" });
            }
        }
    }

    fn ibans(&self, text: &str, out: &mut Vec<Candidate>) {
        let b = text.as_bytes();
        let mut compact = Vec::with_capacity(34);
        let mut skip_until = 0;
        for m in self.iban_prefix.find_iter(text) {
            if m.start() < skip_until || !clear_before(b, m.start()) {
                continue;
            }
            let Some(len) = v::iban_length(&b[m.start()..m.start() + 2]) else { continue };
            compact.clear();
            compact.extend_from_slice(m.as_str().as_bytes());
            // Take exactly the country's length, allowing one space between groups of four.
            let mut pos = m.end();
            while compact.len() < len {
                if b.get(pos) == Some(&b' ') && compact.len() % 4 == 0 {
                    pos += 1;
                }
                match b.get(pos) {
                    Some(&c) if c.is_ascii_digit() || c.is_ascii_uppercase() => compact.push(c),
                    _ => break,
                }
                pos += 1;
            }
            if compact.len() == len && clear_after(b, pos) && v::iban_valid(&compact) {
                out.push(Candidate { range: m.start()..pos, entity: EntityType::Iban, confidence: 0.95, rule: "iban" });
                skip_until = pos;
            }
        }
    }
}

/// Reused buffers for [`classify`], so a text with many numbers does not allocate per run.
#[derive(Default)]
struct Scratch {
    digits: Vec<u8>,
    groups: Vec<usize>,
    seps: Vec<u8>,
}

/// Chinese area codes: 010 and 02x are three digits, the rest 0[3-9]xx.
fn area_code_valid(code: &[u8]) -> bool {
    matches!(code, [b'0', b'1', b'0'] | [b'0', b'2', _] | [b'0', b'3'..=b'9', _, _])
}

/// Decides what a digit run (or one space-separated part of it) is and appends candidates.
fn classify(b: &[u8], range: Range<usize>, year: u32, s: &mut Scratch, out: &mut Vec<Candidate>) {
    s.digits.clear();
    s.groups.clear();
    s.seps.clear();
    let mut group_len = 0;
    for &c in &b[range.clone()] {
        if c == b' ' || c == b'-' {
            s.groups.push(group_len);
            s.seps.push(c);
            group_len = 0;
        } else {
            s.digits.push(c);
            group_len += 1;
        }
    }
    s.groups.push(group_len);
    let digits = &s.digits[..];
    let n = digits.len();
    let mut push =
        |range: Range<usize>, entity, confidence, rule| out.push(Candidate { range, entity, confidence, rule });

    if digits.last().is_some_and(|d| !d.is_ascii_digit()) {
        // A trailing X: only an 18-character resident ID can end with one.
        if v::cn_id18_valid(digits, year) {
            push(range, EntityType::CnId, 0.98, "cn_id.18");
        }
        return;
    }
    if n == 18 && v::cn_id18_valid(digits, year) {
        push(range.clone(), EntityType::CnId, 0.98, "cn_id.18");
    }
    if n == 15 && s.groups.len() == 1 && v::cn_id15_valid(digits) {
        push(range.clone(), EntityType::CnId, 0.7, "cn_id.15");
    }

    // Mobile: 1[3-9] + 9 digits, optionally after 86 or 0086 (and a `+` before the run).
    let prefix = match n {
        11 => Some(0),
        13 if digits.starts_with(b"86") => Some(2),
        15 if digits.starts_with(b"0086") => Some(4),
        _ => None,
    };
    if let Some(p) = prefix {
        let core = &digits[p..];
        let prefix_is_own_group = p == 0 || s.groups.len() == 1 || s.groups[0] == p;
        if prefix_is_own_group && core[0] == b'1' && (b'3'..=b'9').contains(&core[1]) {
            let start =
                if p > 0 && range.start > 0 && b[range.start - 1] == b'+' { range.start - 1 } else { range.start };
            let (confidence, rule) = if p > 0 { (0.9, "cn_mobile.intl") } else { (0.85, "cn_mobile") };
            push(start..range.end, EntityType::CnMobile, confidence, rule);
        }
    }

    // Fixed line: area code, separator, 7-8 digit local number (not starting with 0), `-ext`.
    let same_seps = s.seps.windows(2).all(|w| w[0] == w[1]);
    if (2..=3).contains(&s.groups.len()) && same_seps {
        let area = &digits[..s.groups[0]];
        let local = &digits[s.groups[0]..s.groups[0] + s.groups[1]];
        let ext_ok = s.groups.len() == 2 || (s.seps[0] == b'-' && (1..=5).contains(&s.groups[2]));
        if area_code_valid(area) && (7..=8).contains(&local.len()) && local[0] != b'0' && ext_ok {
            push(range.clone(), EntityType::CnPhone, 0.85, "cn_phone");
        }
    }

    // SSN: 3-2-4 with the same separator; bare 9-digit numbers are too ambiguous to report.
    if s.groups[..] == [3, 2, 4] && same_seps {
        let (area, rest) = digits.split_at(3);
        let (group, serial) = rest.split_at(2);
        if v::ssn_valid(area, group, serial) {
            let confidence = if s.seps[0] == b'-' { 0.85 } else { 0.7 };
            push(range.clone(), EntityType::UsSsn, confidence, "us_ssn");
        }
    }

    if (13..=19).contains(&n) && v::luhn_valid(digits) {
        if let Some((entity, confidence, rule)) = card_brand(digits) {
            push(range, entity, confidence, rule);
        }
    }
}

/// Card classification by issuer prefix and length (the caller checked Luhn).
fn card_brand(d: &[u8]) -> Option<(EntityType, f32, &'static str)> {
    let n = d.len();
    let prefix = |len: usize| d[..len].iter().fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
    let card = |rule| Some((EntityType::CreditCard, 0.9, rule));
    match (d[0], n) {
        (b'6', 16..=19) if d[1] == b'2' => Some((EntityType::BankCard, 0.95, "bank_card.unionpay")),
        (b'4', 13 | 16 | 19) => card("credit_card.visa"),
        (b'5', 16) if (51..=55).contains(&prefix(2)) => card("credit_card.mastercard"),
        (b'2', 16) if (2221..=2720).contains(&prefix(4)) => card("credit_card.mastercard"),
        (b'3', 15) if matches!(prefix(2), 34 | 37) => card("credit_card.amex"),
        (b'3', 16..=19) if (3528..=3589).contains(&prefix(4)) => card("credit_card.jcb"),
        (b'6', 16..=19) if prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)) => {
            card("credit_card.discover")
        }
        // Older domestic debit cards (9558..., 95599...) predate UnionPay's 62 range.
        (b'9', 16..=19) => Some((EntityType::BankCard, 0.6, "bank_card.domestic")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(text: &str) -> Vec<(EntityType, String)> {
        let mut out = Vec::new();
        Recognizers::new().find(text, &mut out);
        out.into_iter().map(|c| (c.entity, text[c.range].to_owned())).collect()
    }

    fn has(text: &str, entity: EntityType, value: &str) -> bool {
        hits(text).iter().any(|(e, v)| *e == entity && v == value)
    }

    #[test]
    fn mobiles_in_many_formats() {
        for (text, value) in [
            ("13800138000", "13800138000"),
            ("tel 138 0013 8000.", "138 0013 8000"),
            ("138-0013-8000", "138-0013-8000"),
            ("+86 13800138000", "+86 13800138000"),
            ("+86-138-0013-8000", "+86-138-0013-8000"),
            ("0086 13800138000", "0086 13800138000"),
            ("8613800138000", "8613800138000"),
            ("1 13800138000", "13800138000"),
        ] {
            assert!(has(text, EntityType::CnMobile, value), "{text}: {:?}", hits(text));
        }
        assert!(hits("12800138000").is_empty());
        assert!(hits("138001380009").is_empty());
        assert!(hits("a13800138000").is_empty());
    }

    #[test]
    fn fixed_lines() {
        assert!(has("010-12345678", EntityType::CnPhone, "010-12345678"));
        assert!(has("0755-1234567", EntityType::CnPhone, "0755-1234567"));
        assert!(has("(021)12345678", EntityType::CnPhone, "(021)12345678"));
        assert!(has("(0755) 12345678", EntityType::CnPhone, "(0755) 12345678"));
        assert!(has("0755-12345678-801", EntityType::CnPhone, "0755-12345678-801"));
        assert!(hits("2024-01-15").is_empty());
        assert!(hits("0123-12345678").is_empty(), "area codes never start 01 except 010");
    }

    #[test]
    fn cards() {
        assert!(has("4111 1111 1111 1111", EntityType::CreditCard, "4111 1111 1111 1111"));
        assert!(has("5500-0000-0000-0004", EntityType::CreditCard, "5500-0000-0000-0004"));
        assert!(has("378282246310005", EntityType::CreditCard, "378282246310005"));
        assert!(hits("4111111111111112").is_empty());
        assert!(hits("4111 1111 1111 1111 2222").is_empty(), "inside a longer run");
    }

    #[test]
    fn ip_addresses() {
        assert!(has("from 192.168.1.10.", EntityType::Ipv4, "192.168.1.10"));
        assert!(hits("v1.2.3.4").is_empty());
        assert!(hits("1.2.3.4.5").is_empty());
        assert!(hits("300.1.1.1").is_empty());
        assert!(has("addr 2001:db8::8a2e:370:7334 ok", EntityType::Ipv6, "2001:db8::8a2e:370:7334"));
        assert!(has("fe80::1: down", EntityType::Ipv6, "fe80::1"));
        assert!(has("地址:fe80::1", EntityType::Ipv6, "fe80::1"));
        assert!(has("::ffff:192.168.1.1", EntityType::Ipv6, "::ffff:192.168.1.1"));
        assert!(hits("std::vec::Vec").is_empty());
        assert!(hits("at 12:30:45").is_empty());
        assert!(hits("mac 00:1A:2B:3C:4D:5E").is_empty());
    }

    #[test]
    fn codes() {
        assert!(has("护照E12345678", EntityType::CnPassport, "E12345678"));
        assert!(has("passport EA1234567", EntityType::CnPassport, "EA1234567"));
        assert!(hits("XE12345678").is_empty());
        assert!(has("代码91110000802100433B。", EntityType::CnUscc, "91110000802100433B"));
        assert!(has("IBAN DE89 3704 0044 0532 0130 00 please", EntityType::Iban, "DE89 3704 0044 0532 0130 00"));
        assert!(has("GB82WEST12345698765432", EntityType::Iban, "GB82WEST12345698765432"));
        assert!(hits("DE89370400440532013000123").is_empty());
        assert!(has("SSN 123-45-6789", EntityType::UsSsn, "123-45-6789"));
        assert!(hits("SSN 666-45-6789").is_empty());
    }

    #[test]
    fn emails() {
        assert!(has("邮箱zhang.san@example.com谢谢", EntityType::Email, "zhang.san@example.com"));
        assert!(has("(a+b@mail.example.co.uk)", EntityType::Email, "a+b@mail.example.co.uk"));
        assert!(hits("a..b@example.com").iter().all(|(e, _)| *e != EntityType::Email));
        assert!(hits("not an email @ example.com").is_empty());
    }
}
