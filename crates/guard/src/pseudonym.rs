//! Keyed pseudonyms (`<CN_ID:3f9a1c2e>`) and the per-request map that restores them.
//!
//! A pseudonym is the first 8 hex characters of HMAC-SHA256(key, entity || 0 || canonical
//! value). The canonical value ignores formatting (`138 0013 8000` and `+8613800138000` are the
//! same number), so the model sees one pseudonym per person-visible value, and the same one
//! across requests for as long as the key stays.

use std::borrow::Cow;
use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::normalize::fold_width;
use crate::pii::EntityType;

/// Longest pseudonym text: `<CREDIT_CARD:` + 16 hex + `>`.
pub const MAX_PSEUDONYM_LEN: usize = 32;

/// The HMAC key for pseudonyms.
#[derive(Clone)]
pub struct PseudonymKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    pub fn new(key: &[u8]) -> PseudonymKey {
        PseudonymKey { mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length") }
    }

    /// A random key from the operating system (pseudonyms then change on restart).
    pub fn random() -> PseudonymKey {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system provides random bytes");
        PseudonymKey::new(&key)
    }

    /// `hex_len` hex characters of the keyed digest of the canonical value.
    fn digest_hex(&self, entity: EntityType, canonical: &str, hex_len: usize) -> String {
        let mut mac = self.mac.clone();
        mac.update(entity.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(canonical.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(hex_len);
        for byte in digest.iter().take(hex_len.div_ceil(2)) {
            hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            hex.push(char::from_digit(u32::from(byte & 0xF), 16).unwrap_or('0'));
        }
        hex.truncate(hex_len);
        hex
    }

    /// The pseudonym of `value` (as found in text) for `entity`, e.g. `<CN_ID:3f9a1c2e>`.
    pub fn pseudonym(&self, entity: EntityType, value: &str) -> String {
        format!("<{}:{}>", entity, self.digest_hex(entity, &canonical(entity, value), 8))
    }
}

/// The value without its formatting: width-folded, separators dropped, letters uppercased;
/// emails lowercased; mobiles without the country prefix; IPv6 in its standard form.
pub fn canonical(entity: EntityType, value: &str) -> String {
    let folded = value.chars().map(fold_width);
    match entity {
        EntityType::Email => folded.flat_map(char::to_lowercase).collect(),
        EntityType::Ipv4 => folded.collect(),
        EntityType::Ipv6 => {
            let s: String = folded.collect();
            s.parse::<std::net::Ipv6Addr>().map_or(s, |a| a.to_string())
        }
        _ => {
            let s: String = folded.filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect();
            if entity == EntityType::CnMobile && s.len() > 11 {
                s[s.len() - 11..].to_owned()
            } else {
                s
            }
        }
    }
}

/// Per request: pseudonym -> the value it replaced, so an answer can be given back with the
/// real values. Hold it only for the request's lifetime; it contains the raw PII.
#[derive(Debug, Clone, Default)]
pub struct PseudonymMap {
    /// pseudonym -> (canonical value, the value as the user wrote it)
    entries: HashMap<String, (String, String)>,
}

impl PseudonymMap {
    pub fn new() -> PseudonymMap {
        PseudonymMap::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pseudonym for `value`, recorded for restoring. If two different values of one
    /// request share the 8-hex pseudonym (1 in 4 billion), the later one gets 16 hex characters
    /// so restoring stays unambiguous.
    pub fn pseudonymize(&mut self, key: &PseudonymKey, entity: EntityType, value: &str) -> String {
        let canon = canonical(entity, value);
        for hex_len in [8, 16] {
            let pseudonym = format!("<{}:{}>", entity, key.digest_hex(entity, &canon, hex_len));
            match self.entries.get(&pseudonym) {
                Some((c, _)) if *c != canon => continue,
                Some(_) => return pseudonym,
                None => {
                    self.entries.insert(pseudonym.clone(), (canon, value.to_owned()));
                    return pseudonym;
                }
            }
        }
        // Two 64-bit collisions in one request: give up on restoring this value.
        format!("<{entity}>")
    }

    /// The original value behind `pseudonym`, if this request produced it.
    pub fn original(&self, pseudonym: &str) -> Option<&str> {
        self.entries.get(pseudonym).map(|(_, original)| original.as_str())
    }

    /// `text` with every known pseudonym replaced by its value. Unknown ones (invented by the
    /// model, or from another request) are left as they are.
    pub fn restore<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.entries.is_empty() || !text.contains('<') {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            out.push_str(&rest[..open]);
            let tail = &rest[open..];
            let close = tail.as_bytes().iter().take(MAX_PSEUDONYM_LEN).position(|&b| b == b'>');
            match close.and_then(|c| self.original(&tail[..=c]).map(|o| (c, o))) {
                Some((c, original)) => {
                    out.push_str(original);
                    rest = &tail[c + 1..];
                }
                None => {
                    out.push('<');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    /// A streaming restorer for answers that arrive in chunks.
    pub fn restorer(&self) -> StreamRestorer<'_> {
        StreamRestorer { map: self, pending: String::new() }
    }
}

/// Restores pseudonyms in a streamed answer, holding back a possible pseudonym that is split
/// across chunks (at most [`MAX_PSEUDONYM_LEN`] bytes after a `<`).
#[derive(Debug)]
pub struct StreamRestorer<'m> {
    map: &'m PseudonymMap,
    pending: String,
}

impl StreamRestorer<'_> {
    /// Text safe to emit after adding `chunk`.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        // Hold back from the last `<` that is not closed yet and could still become a pseudonym.
        let hold_from = self
            .pending
            .rfind('<')
            .filter(|&i| !self.pending[i..].contains('>') && self.pending.len() - i < MAX_PSEUDONYM_LEN)
            .unwrap_or(self.pending.len());
        let ready: String = self.pending.drain(..hold_from).collect();
        self.map.restore(&ready).into_owned()
    }

    /// The rest of the answer.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.map.restore(&rest).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ignores_formatting() {
        assert_eq!(canonical(EntityType::CnMobile, "+86 138-0013-8000"), "13800138000");
        assert_eq!(canonical(EntityType::CnMobile, "１３８００１３８０００"), "13800138000");
        assert_eq!(canonical(EntityType::CnId, "11010519491231002x"), "11010519491231002X");
        assert_eq!(canonical(EntityType::Email, "Zhang@Example.COM"), "zhang@example.com");
        assert_eq!(canonical(EntityType::Ipv6, "2001:0db8:0:0::1"), "2001:db8::1");
    }

    #[test]
    fn pseudonyms_are_stable_and_keyed() {
        let k1 = PseudonymKey::new(b"one");
        let k2 = PseudonymKey::new(b"two");
        let p = k1.pseudonym(EntityType::CnMobile, "13800138000");
        assert_eq!(p, k1.pseudonym(EntityType::CnMobile, "138 0013 8000"));
        assert_ne!(p, k2.pseudonym(EntityType::CnMobile, "13800138000"));
        assert!(p.starts_with("<CN_MOBILE:") && p.len() == "<CN_MOBILE:>".len() + 8, "{p}");
    }

    #[test]
    fn restore_replaces_known_pseudonyms_only() {
        let key = PseudonymKey::new(b"k");
        let mut map = PseudonymMap::new();
        let p = map.pseudonymize(&key, EntityType::CnId, "11010519491231002X");
        let answer = format!("您的证件号{p}已登记，<CN_ID:00000000>不是。a<b");
        assert_eq!(map.restore(&answer), "您的证件号11010519491231002X已登记，<CN_ID:00000000>不是。a<b");
    }

    #[test]
    fn streaming_restore_across_chunks() {
        let key = PseudonymKey::new(b"k");
        let mut map = PseudonymMap::new();
        let p = map.pseudonymize(&key, EntityType::Email, "a@b.cn");
        let answer = format!("写信到{p}，谢谢 <3");
        for split in 0..answer.len() {
            if !answer.is_char_boundary(split) {
                continue;
            }
            let mut r = map.restorer();
            let mut out = r.push(&answer[..split]);
            out += &r.push(&answer[split..]);
            out += &r.finish();
            assert_eq!(out, "写信到a@b.cn，谢谢 <3", "split at {split}");
        }
    }
}
