//! Checksums and structural rules that turn a regex candidate into a finding.
//!
//! Every function takes ASCII bytes as found in the normalized text. A candidate failing its
//! check is not reported at all: near-misses (a mistyped ID, a random 16-digit number) are the
//! main source of false positives, and the checksums are what tell them apart.

use std::time::{SystemTime, UNIX_EPOCH};

/// GB 11643 check character (ISO 7064 MOD 11-2) over the first 17 digits of a resident ID.
pub fn mod11_2_check(first17: &[u8]) -> Option<u8> {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    Some(CHECK[(sum % 11) as usize])
}

/// First two digits of a resident ID: a province-level code (GB/T 2260), plus 71 Taiwan,
/// 81 Hong Kong, 82 Macau and 83 (Taiwan residents' mainland permits).
pub fn province_valid(code: &[u8]) -> bool {
    if code.len() < 2 || !code[..2].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = (code[0] - b'0') * 10 + (code[1] - b'0');
    matches!(n, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83)
}

pub fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// A real calendar date.
pub fn date_valid(year: u32, month: u32, day: u32) -> bool {
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// The current year (UTC), for rejecting birth dates in the future.
pub fn current_year() -> u32 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Days to civil year (Howard Hinnant's algorithm), good for any date after 1970.
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days / 146_097;
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    u32::try_from(year).unwrap_or(1970)
}

fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
}

/// A birth date `YYYYMMDD` between 1900 and this year.
pub fn birth_date_valid(yyyymmdd: &[u8], this_year: u32) -> bool {
    if yyyymmdd.len() != 8 || !yyyymmdd.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let year = number(&yyyymmdd[..4]);
    (1900..=this_year).contains(&year) && date_valid(year, number(&yyyymmdd[4..6]), number(&yyyymmdd[6..8]))
}

/// An 18-character resident ID: province, birth date and MOD 11-2 check character (`X` or `x`).
pub fn cn_id18_valid(id: &[u8], this_year: u32) -> bool {
    id.len() == 18
        && province_valid(id)
        && birth_date_valid(&id[6..14], this_year)
        && mod11_2_check(&id[..17]) == Some(id[17].to_ascii_uppercase())
}

/// A legacy 15-digit resident ID (issued before 1999): province and a `YYMMDD` date in the
/// 1900s. It has no check digit, so it is reported with a lower confidence.
pub fn cn_id15_valid(id: &[u8]) -> bool {
    if id.len() != 15 || !id.iter().all(u8::is_ascii_digit) || !province_valid(id) {
        return false;
    }
    let year = 1900 + number(&id[6..8]);
    date_valid(year, number(&id[8..10]), number(&id[10..12]))
}

/// The Luhn (mod 10) check used by payment cards.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.len() < 2 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let double = d * 2;
                if double > 9 {
                    double - 9
                } else {
                    double
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The 31 characters of a Unified Social Credit Code: digits and capitals without I, O, S, V, Z.
const USCC_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

fn uscc_value(c: u8) -> Option<u32> {
    USCC_CHARSET.iter().position(|&x| x == c).map(|p| p as u32)
}

/// A Unified Social Credit Code (GB 32100-2015): registration authority, category, a 6-digit
/// region code, a 9-character organization code and the mod-31 check character.
pub fn uscc_valid(code: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    if code.len() != 18 {
        return false;
    }
    // Registration authorities in use: 1-9, A (military), N (agriculture), Y (other).
    if !matches!(code[0], b'1'..=b'9' | b'A' | b'N' | b'Y') || !matches!(code[1], b'1'..=b'9') {
        return false;
    }
    if !code[2..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0;
    for (&c, w) in code[..17].iter().zip(WEIGHTS) {
        match uscc_value(c) {
            Some(v) => sum += v * w,
            None => return false,
        }
    }
    let check = (31 - sum % 31) % 31;
    uscc_value(code[17]) == Some(check)
}

/// A US Social Security Number: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub fn ssn_valid(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    if area.len() != 3 || group.len() != 2 || serial.len() != 4 {
        return false;
    }
    if !area.iter().chain(group).chain(serial).all(u8::is_ascii_digit) {
        return false;
    }
    let area = number(area);
    area != 0 && area != 666 && area < 900 && number(group) != 0 && number(serial) != 0
}

/// IBAN lengths by country (ISO 13616 registry, the countries a Chinese bank meets in practice).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VG", 24),
    (b"XK", 20),
];

/// The IBAN length for a country code, if we know the country.
pub fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS.iter().find(|(c, _)| c.as_slice() == country).map(|&(_, len)| len)
}

/// An IBAN without spaces: known country, its exact length, and ISO 7064 mod 97 == 1.
pub fn iban_valid(iban: &[u8]) -> bool {
    if iban.len() < 5 || iban_length(&iban[..2]) != Some(iban.len()) || !iban[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    // Move the first four characters to the end, letters become 10..35, compute mod 97 in
    // pieces so no big integer is needed.
    let mut rem: u32 = 0;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// A dotted IPv4 address: four decimal octets up to 255, without leading zeros (which usually
/// mean a version string or a zero-padded number, not an address).
pub fn ipv4_valid(s: &[u8]) -> bool {
    let mut parts = 0;
    for part in s.split(|&b| b == b'.') {
        parts += 1;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
        if part.len() > 1 && part[0] == b'0' {
            return false;
        }
        if number(part) > 255 {
            return false;
        }
    }
    parts == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mod11_2_known_ids() {
        // GB 11643's worked example and well-known specimen numbers.
        assert_eq!(mod11_2_check(b"11010519491231002"), Some(b'X'));
        assert_eq!(mod11_2_check(b"44052418800101001"), Some(b'4'));
        assert!(cn_id18_valid(b"11010519491231002X", 2025));
        assert!(cn_id18_valid(b"11010519491231002x", 2025));
        assert!(!cn_id18_valid(b"110105194912310021", 2025), "wrong check digit");
        assert_eq!(mod11_2_check(b"1101051949123100"), None);
        assert_eq!(mod11_2_check(b"1101051949123100A"), None);
    }

    #[test]
    fn id_region_and_date_rules() {
        // Same body with a recomputed check digit, but a province code that does not exist.
        let mut id = *b"99010519491231002X";
        id[17] = mod11_2_check(&id[..17]).unwrap();
        assert!(!cn_id18_valid(&id, 2025));
        // 30 February with a correct check digit.
        let mut id = *b"11010519490230002X";
        id[17] = mod11_2_check(&id[..17]).unwrap();
        assert!(!cn_id18_valid(&id, 2025));
        // A birth year in the future.
        let mut id = *b"11010530000101002X";
        id[17] = mod11_2_check(&id[..17]).unwrap();
        assert!(!cn_id18_valid(&id, 2025));
        assert!(province_valid(b"83") && province_valid(b"65") && !province_valid(b"16") && !province_valid(b"70"));
    }

    #[test]
    fn legacy_15_digit_ids() {
        assert!(cn_id15_valid(b"110105491231002"));
        assert!(!cn_id15_valid(b"110105491331002"), "month 13");
        assert!(!cn_id15_valid(b"990105491231002"), "no province 99");
    }

    #[test]
    fn dates() {
        assert!(date_valid(2000, 2, 29));
        assert!(!date_valid(1900, 2, 29));
        assert!(date_valid(2024, 2, 29));
        assert!(!date_valid(2023, 2, 29));
        assert!(!date_valid(2023, 4, 31));
        assert!(!date_valid(2023, 0, 1));
        assert!(!date_valid(2023, 1, 0));
        assert!(birth_date_valid(b"19900307", 2025));
        assert!(!birth_date_valid(b"18991231", 2025));
        assert!((2025..2200).contains(&current_year()));
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"79927398710"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"0"));
    }

    #[test]
    fn uscc() {
        // Published codes of real companies.
        assert!(uscc_valid(b"91110000802100433B"));
        assert!(uscc_valid(b"914403001922038216"));
        assert!(!uscc_valid(b"91110000802100433C"));
        assert!(!uscc_valid(b"01110000802100433B"), "authority 0 does not exist");
        assert!(!uscc_valid(b"9111000080210043IB"), "I is not in the charset");
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_valid(b"123", b"45", b"6789"));
        assert!(!ssn_valid(b"000", b"45", b"6789"));
        assert!(!ssn_valid(b"666", b"45", b"6789"));
        assert!(!ssn_valid(b"912", b"45", b"6789"));
        assert!(!ssn_valid(b"123", b"00", b"6789"));
        assert!(!ssn_valid(b"123", b"45", b"0000"));
    }

    #[test]
    fn iban_mod97() {
        assert!(iban_valid(b"DE89370400440532013000"));
        assert!(iban_valid(b"GB82WEST12345698765432"));
        assert!(iban_valid(b"FR1420041010050500013M02606"));
        assert!(!iban_valid(b"DE89370400440532013001"));
        assert!(!iban_valid(b"DE8937040044053201300"), "one character short for DE");
        assert!(!iban_valid(b"ZZ89370400440532013000"), "unknown country");
    }

    #[test]
    fn ipv4() {
        assert!(ipv4_valid(b"192.168.1.1"));
        assert!(ipv4_valid(b"0.0.0.0"));
        assert!(!ipv4_valid(b"256.1.1.1"));
        assert!(!ipv4_valid(b"1.2.3"));
        assert!(!ipv4_valid(b"01.2.3.4"));
        assert!(!ipv4_valid(b"1.2.3.4.5"));
    }
}
