//! Check digits and allocation rules: Luhn, IBAN mod-97, UK National
//! Insurance prefixes, NHS mod-11 and the VIN check digit.
//!
//! Every function takes the bare identifier (no spaces or dashes) and never
//! panics on any input.

/// Whether `digits` (ASCII digits only, 13–19 of them) passes the Luhn
/// check used by payment cards. Rejects non-digits and all-zero strings.
pub fn luhn_valid(digits: &str) -> bool {
    if !(13..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if digits.bytes().all(|b| b == b'0') {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The IBAN length of a country, from the SWIFT IBAN registry; `None` for a
/// country that does not use IBANs (or that this table does not know).
pub fn iban_length(country: &str) -> Option<usize> {
    let len = match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "CR" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "IQ" | "SO" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "LY" | "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        _ => return None,
    };
    Some(len)
}

/// Whether `iban` (uppercase letters and digits, no spaces) has a known
/// country, that country's length, and a valid ISO 7064 mod-97 checksum.
pub fn iban_valid(iban: &str) -> bool {
    let bytes = iban.as_bytes();
    if bytes.len() < 15
        || !bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return false;
    }
    let (country, rest) = iban.split_at(2);
    if !country.bytes().all(|b| b.is_ascii_uppercase())
        || !rest.as_bytes()[..2].iter().all(u8::is_ascii_digit)
        || iban_length(country) != Some(bytes.len())
    {
        return false;
    }
    iban_mod97(iban) == Some(1)
}

/// The ISO 7064 mod-97 remainder of an IBAN (country and check digits moved
/// to the end, letters as 10–35); `None` for a character outside `[0-9A-Z]`.
pub fn iban_mod97(iban: &str) -> Option<u32> {
    let bytes = iban.as_bytes();
    if bytes.len() < 4 {
        return None;
    }
    let mut rem: u32 = 0;
    for &b in bytes[4..].iter().chain(&bytes[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    Some(rem)
}

/// Whether the two-letter prefix of a UK National Insurance number can be
/// allocated, per HMRC's rules (NIM39110): neither letter is D, F, I, Q, U or
/// V; the second is not O; and the prefix is not BG, GB, KN, NK, NT, TN or ZZ.
/// Temporary (`TN`) and specimen (`QQ`) numbers are therefore rejected.
pub fn ni_prefix_valid(prefix: &str) -> bool {
    let b = prefix.as_bytes();
    if b.len() != 2 || !b.iter().all(u8::is_ascii_uppercase) {
        return false;
    }
    let banned_any = |c: u8| matches!(c, b'D' | b'F' | b'I' | b'Q' | b'U' | b'V');
    if banned_any(b[0]) || banned_any(b[1]) || b[1] == b'O' {
        return false;
    }
    !matches!(prefix, "BG" | "GB" | "KN" | "NK" | "NT" | "TN" | "ZZ")
}

/// Whether `ni` (no spaces) is a well-formed UK National Insurance number:
/// an allocatable prefix, six digits and a suffix A–D.
pub fn ni_valid(ni: &str) -> bool {
    let b = ni.as_bytes();
    b.len() == 9
        && ni_prefix_valid(&ni[..2])
        && b[2..8].iter().all(u8::is_ascii_digit)
        && matches!(b[8], b'A'..=b'D')
}

/// Whether `digits` (ten ASCII digits) is a valid NHS number (mod-11 check
/// digit, weights 10 to 2).
pub fn nhs_valid(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) || b.iter().all(|&c| c == b[0]) {
        return false;
    }
    let sum: u32 = b[..9]
        .iter()
        .zip((2..=10u32).rev())
        .map(|(&c, w)| u32::from(c - b'0') * w)
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    u32::from(b[9] - b'0') == check
}

/// Whether the ninth character of a 17-character VIN is the ISO 3779 /
/// North American check digit. European VINs often do not use it, so a
/// failure lowers confidence rather than rejecting.
pub fn vin_check_digit_valid(vin: &str) -> bool {
    let b = vin.as_bytes();
    if b.len() != 17 {
        return false;
    }
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let mut sum = 0;
    for (&c, w) in b.iter().zip(WEIGHTS) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A' | b'J' => 1,
            b'B' | b'K' | b'S' => 2,
            b'C' | b'L' | b'T' => 3,
            b'D' | b'M' | b'U' => 4,
            b'E' | b'N' | b'V' => 5,
            b'F' | b'W' => 6,
            b'G' | b'P' | b'X' => 7,
            b'H' | b'Y' => 8,
            b'R' | b'Z' => 9,
            _ => return false,
        };
        sum += v * w;
    }
    let check = sum % 11;
    let expected = if check == 10 {
        b'X'
    } else {
        b'0' + check as u8
    };
    b[8] == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_known_test_numbers() {
        for n in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "4222222222222",
            "3530111333300000",
            "4526018159083012",
            "4497465075291703423",
        ] {
            assert!(luhn_valid(n), "{n}");
        }
    }

    #[test]
    fn luhn_rejects_bad_numbers() {
        assert!(!luhn_valid("4111111111111112"), "one digit changed");
        assert!(!luhn_valid("4111111111111"), "wrong check digit for 13");
        assert!(!luhn_valid("0000000000000000"), "all zeros");
        assert!(!luhn_valid("411111111111"), "12 digits");
        assert!(!luhn_valid("41111111111111111111"), "20 digits");
        assert!(
            !luhn_valid("4111 1111 1111 1111"),
            "separators are not digits"
        );
        assert!(!luhn_valid("4111111111111١١١"), "non-ASCII digits");
    }

    #[test]
    fn iban_mod97_accepts_registry_examples() {
        for iban in [
            "GB82WEST12345698765432",
            "GB29NWBK60161331926819",
            "DE89370400440532013000",
            "FR7630006000011234567890189",
            "NL91ABNA0417164300",
            "RO49AAAA1B31007593840000",
            "AL47212110090000000235698741",
            "NO9386011117947",
            "MT84MALT011000012345MTLCAST001S",
        ] {
            assert!(iban_valid(iban), "{iban}");
        }
    }

    #[test]
    fn iban_rejects_bad_checksum_length_and_country() {
        assert!(!iban_valid("GB82WEST12345698765433"), "last digit changed");
        assert!(
            !iban_valid("GB28NWBK60161331926819"),
            "check digits changed"
        );
        assert!(!iban_valid("GB29NWBK6016133192681"), "too short for GB");
        assert!(!iban_valid("US29NWBK60161331926819"), "no IBAN in the US");
        assert!(!iban_valid("gb29nwbk60161331926819"), "lowercase");
        assert!(
            !iban_valid("GB29 NWBK 6016 1331 9268 19"),
            "spaces must be removed first"
        );
        assert!(
            !iban_valid("GBXXNWBK60161331926819"),
            "letters as check digits"
        );
        assert_eq!(iban_mod97("GB2"), None);
        assert_eq!(iban_mod97("GB29-NWBK"), None);
    }

    #[test]
    fn ni_prefixes_follow_hmrc_rules() {
        for ok in ["AB", "JG", "NE", "SP", "WR", "TM", "ZE", "YM", "CE", "OA"] {
            assert!(ni_prefix_valid(ok), "{ok}");
        }
        for bad in [
            "DA", "FA", "IA", "QA", "UA", "VA", // first letter
            "AD", "AF", "AI", "AO", "AQ", "AU", "AV", // second letter
            "BG", "GB", "KN", "NK", "NT", "TN", "ZZ", // not allocated
            "QQ", "A", "ABC", "ab", "A1",
        ] {
            assert!(!ni_prefix_valid(bad), "{bad}");
        }
        assert!(ni_valid("AB123456C"));
        assert!(!ni_valid("AB123456E"), "suffix must be A-D");
        assert!(!ni_valid("QQ123456C"), "specimen prefix");
        assert!(!ni_valid("AB12345C"), "five digits");
    }

    #[test]
    fn nhs_mod11() {
        assert!(nhs_valid("9434765919"));
        assert!(nhs_valid("3079244028"));
        assert!(!nhs_valid("9434765918"));
        assert!(!nhs_valid("1111111111"), "repeated digit");
        assert!(!nhs_valid("943476591"));
    }

    #[test]
    fn vin_check_digit() {
        assert!(vin_check_digit_valid("1M8GDM9AXKP042788"));
        assert!(vin_check_digit_valid("11111111111111111"));
        assert!(!vin_check_digit_valid("1M8GDM9A1KP042788"));
        assert!(!vin_check_digit_valid("1M8GDM9AXKP04278"));
    }
}
