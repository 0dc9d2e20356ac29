//! Behaviour of `detect`, `redact` and `apply_decisions` through the public
//! API: each kind, the negatives reports are full of, UTF-8 boundaries,
//! the size cap and the redaction rules.

use treven_pii::{
    Decision, Detector, Finding, MAX_INPUT_BYTES, PiiError, PiiKind, apply_decisions, detect,
    redact,
};

fn found(text: &str) -> Vec<(PiiKind, String)> {
    detect(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .into_iter()
        .map(|f| (f.kind, f.text))
        .collect()
}

fn one(kind: PiiKind, s: &str) -> Vec<(PiiKind, String)> {
    vec![(kind, s.to_owned())]
}

/// Checks the invariants every result must hold.
fn check_invariants(text: &str, findings: &[Finding]) {
    let mut last_end = 0;
    for f in findings {
        assert!(f.start < f.end, "{f:?}");
        assert!(f.start >= last_end, "overlapping or unsorted: {findings:?}");
        assert!(
            text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
            "{f:?}"
        );
        assert_eq!(&text[f.start..f.end], f.text);
        assert_eq!(f.placeholder, f.kind.placeholder());
        assert!((0.0..=1.0).contains(&f.confidence));
        last_end = f.end;
    }
}

#[test]
fn each_kind_is_detected() {
    use PiiKind::*;
    let cases: &[(&str, PiiKind, &str)] = &[
        (
            "Write to ana.pop@gmail.com today.",
            Email,
            "ana.pop@gmail.com",
        ),
        (
            "Write to ana [at] gmail [dot] com today.",
            Email,
            "ana [at] gmail [dot] com",
        ),
        ("Call 07700 900123 now.", Phone, "07700 900123"),
        ("Call 020 7946 0018 now.", Phone, "020 7946 0018"),
        (
            "Call +44 (0)20 7946 0321 now.",
            Phone,
            "+44 (0)20 7946 0321",
        ),
        ("Call +355 69 123 4567 now.", Phone, "+355 69 123 4567"),
        ("Call 0040 721 234 567 now.", Phone, "0040 721 234 567"),
        (
            "Paid to GB29 NWBK 6016 1331 9268 19 weekly.",
            BankAccount,
            "GB29 NWBK 6016 1331 9268 19",
        ),
        (
            "Paid to RO22RNCB0082044617420001 weekly.",
            BankAccount,
            "RO22RNCB0082044617420001",
        ),
        ("Sort code 20-00-00 was used.", BankAccount, "20-00-00"),
        (
            "Card 4111 1111 1111 1111 was used.",
            CardNumber,
            "4111 1111 1111 1111",
        ),
        (
            "Card 3782-822463-10005 was used.",
            CardNumber,
            "3782-822463-10005",
        ),
        (
            "NI number AB 12 34 56 C on file.",
            NationalId,
            "AB 12 34 56 C",
        ),
        (
            "Her passport number BA1234567 was kept.",
            Passport,
            "BA1234567",
        ),
        (
            "Licence MORGA753116SM9IJ seized.",
            DrivingLicence,
            "MORGA753116SM9IJ",
        ),
        ("DOB: 14/03/1998, Vietnamese.", DateOfBirth, "14/03/1998"),
        (
            "She was born on 3 March 2007 in Hanoi.",
            DateOfBirth,
            "3 March 2007",
        ),
        (
            "Login from 185.220.101.4 at night.",
            IpAddress,
            "185.220.101.4",
        ),
        (
            "Login from 2001:db8::8a2e:370:7334 at night.",
            IpAddress,
            "2001:db8::8a2e:370:7334",
        ),
        (
            "They lived at 12 High Street, Wisbech PE13 1AB for a year.",
            Address,
            "12 High Street, Wisbech PE13 1AB",
        ),
        ("Found near B12 9QA at dawn.", Address, "B12 9QA"),
        ("Mr Adrian Popescu recruited them.", Name, "Adrian Popescu"),
        ("A man called Besnik drove.", Name, "Besnik"),
        (
            "The victim, Mihai Ionescu, 34, slept there.",
            Name,
            "Mihai Ionescu",
        ),
        ("Registration LD19 XKP was seen.", VehicleId, "LD19 XKP"),
        (
            "VIN WF0XXXTTGXKA12345 matched.",
            VehicleId,
            "WF0XXXTTGXKA12345",
        ),
        (
            "NHS number 943 476 5919 on the letter.",
            MedicalRecord,
            "943 476 5919",
        ),
        (
            "Fingerprint reference IDENT1-04-118842 matched.",
            Biometric,
            "IDENT1-04-118842",
        ),
    ];
    for &(text, kind, expected) in cases {
        assert_eq!(found(text), one(kind, expected), "{text}");
    }
}

#[test]
fn report_negatives_are_not_pii() {
    for text in [
        "NRM referrals rose from 12,727 in 2021 to 16,938 in 2022, a 33% increase.",
        "Of the 2,000 victims identified, 43% were UK nationals.",
        "Between 2019–2023 referrals doubled; 2019-2023 too.",
        "The Modern Slavery Act 2015 s.54 applies above £36 million turnover.",
        "Forced labour generates US$236 billion; debts of €3,500 to €15,000.",
        "See paragraph 3.1.2.4 and section 5.2.1.3 of the guidance, version 2.14.3.",
        "Reference KJ-2024-017 and IR/2023/0456, graded B2 under 3x5x2.",
        "UN Security Council resolution 2388 (2017); ILO Convention No. 29.",
        "The Home Office, UNODC, Border Force and the Salvation Army.",
        "Victim Navigators and the Victim Care Contract support victims in the United Kingdom.",
        "Anti-Slavery International called for reform; the so-called county lines model.",
        "Call the Modern Slavery & Exploitation Helpline on 08000 121 700 or Crimestoppers on 0800 555 111.",
        "The specimen format QQ 12 34 56 C is not a real number.",
        "The defendant was sentenced on 14/03/2023 at Leicester Crown Court.",
        "Born in 1998, she was trafficked aged 15.",
        "The card ending 4471 was used; ISBN 978-92-1-130421-6.",
        "Confidence is moderate (55–75%); rates per 100,000 ranged from 1.4 to 9.8.",
        "The M62 corridor, the A1(M), WS1 and B21 districts.",
        "Mr Justice Jay handed down sentences totalling 38 years.",
        "Time 10:30:45 on 12.05.2023 and a ratio of 3:2:1.",
        "Years 2019 2020 2021 2022 were reviewed.",
    ] {
        assert_eq!(found(text), vec![], "{text}");
    }
}

#[test]
fn checksums_gate_numbers() {
    assert_eq!(
        found("Card 4111 1111 1111 1112 was used."),
        vec![],
        "bad Luhn"
    );
    assert_eq!(
        found("Paid to GB29 NWBK 6016 1331 9268 18 weekly."),
        vec![],
        "bad mod-97"
    );
    assert_eq!(
        found("IBAN GB29 NWBK 6016 1331 9268 18 (typo)."),
        one(PiiKind::BankAccount, "GB29 NWBK 6016 1331 9268 18"),
        "a cued IBAN with a bad checksum is still reported"
    );
    assert_eq!(
        found("NI number TN 12 34 56 C is temporary."),
        vec![],
        "TN prefix"
    );
    assert_eq!(found("NI number AB 12 34 56 E."), vec![], "suffix E");
    assert_eq!(
        found("NHS number 943 476 5918 on the letter."),
        vec![],
        "bad mod-11"
    );
}

#[test]
fn dates_need_a_birth_cue() {
    assert_eq!(found("Arrested on 3 March 2007 in Hull."), vec![]);
    assert_eq!(
        found("Date of birth 1994-07-21 recorded."),
        one(PiiKind::DateOfBirth, "1994-07-21")
    );
    assert_eq!(
        found("D.O.B. 02/11/1989 noted."),
        one(PiiKind::DateOfBirth, "02/11/1989")
    );
    assert_eq!(found("DOB 45/13/1989 noted."), vec![], "impossible date");
}

#[test]
fn overlaps_prefer_the_specific_finding() {
    // The card-shaped tail of an IBAN is not reported on its own.
    let f = detect("IBAN AL35 2021 1109 0000 0000 0123 4567 received funds.").unwrap_or_default();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, PiiKind::BankAccount);
    // A street address swallows its postcode.
    let f = detect("At 33 Albert Street, Peterborough PE1 2RZ.").unwrap_or_default();
    assert_eq!(
        f.iter().map(|f| f.kind).collect::<Vec<_>>(),
        vec![PiiKind::Address]
    );
}

#[test]
fn multibyte_text_around_findings() {
    let text = "Ștefan’s contact — ștefan.ionescu@exemplu.ro 🙂 tel. 07700 900123 «IBAN GB29NWBK60161331926819» née Mrs Ioana Țurcanu, Nghệ An.";
    let findings = detect(text).unwrap_or_default();
    check_invariants(text, &findings);
    let kinds: Vec<PiiKind> = findings.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        vec![
            PiiKind::Email,
            PiiKind::Phone,
            PiiKind::BankAccount,
            PiiKind::Name
        ]
    );
    assert_eq!(findings[0].text, "ștefan.ionescu@exemplu.ro");
    assert_eq!(findings[3].text, "Ioana Țurcanu");
    assert_eq!(
        redact(text, &findings),
        Ok(
            "Ștefan’s contact — [EMAIL] 🙂 tel. [PHONE] «IBAN [BANK]» née Mrs [NAME], Nghệ An."
                .to_owned()
        )
    );
}

/// A small deterministic generator (xorshift) of text that mixes
/// multibyte characters with digits and the punctuation rules look at.
fn random_texts(n: usize) -> Vec<String> {
    const ALPHABET: &[&str] = &[
        "0",
        "1",
        "4",
        "7",
        "9",
        " ",
        " ",
        "+",
        "(",
        ")",
        "-",
        ".",
        ",",
        ":",
        "/",
        "@",
        "[at]",
        "[dot]",
        "A",
        "B",
        "G",
        "K",
        "Q",
        "Z",
        "a",
        "e",
        "Mr ",
        "named ",
        "DOB ",
        "passport ",
        "IBAN ",
        "Street",
        "ș",
        "Ț",
        "é",
        "🙂",
        "–",
        "’",
        "£",
        "%",
        "\n",
        "ё",
        "中",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 5 + (next() % 60) as usize;
            (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect()
        })
        .collect()
}

#[test]
fn random_multibyte_input_never_panics_and_keeps_invariants() {
    for text in random_texts(3000) {
        let findings = detect(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        check_invariants(&text, &findings);
        let redacted = redact(&text, &findings).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(redacted.len() <= text.len() + findings.len() * 12);
    }
}

#[test]
fn input_size_is_capped() {
    let big = "a".repeat(MAX_INPUT_BYTES + 1);
    assert_eq!(
        detect(&big),
        Err(PiiError::InputTooLarge {
            len: MAX_INPUT_BYTES + 1,
            max: MAX_INPUT_BYTES
        })
    );
}

#[test]
fn a_full_mebibyte_is_scanned() {
    let sentence = "The victim, Mihai Ionescu, called 07700 900123 from 12 High Street; 2,000 victims in 2019–2023 (45%). ";
    let text: String = sentence.repeat(MAX_INPUT_BYTES / sentence.len());
    assert!(text.len() <= MAX_INPUT_BYTES);
    let started = std::time::Instant::now();
    let findings = detect(&text).unwrap_or_default();
    let elapsed = started.elapsed();
    println!("1 MiB: {} findings in {elapsed:?}", findings.len());
    assert_eq!(findings.len(), 3 * (MAX_INPUT_BYTES / sentence.len()));
    // Generous: debug builds are ~10x slower than release (~0.1 s).
    assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
}

#[test]
fn min_confidence_filters() {
    let text = "IBAN GB29 NWBK 6016 1331 9268 18 and ana@example.com";
    assert_eq!(Detector::new().detect(text).map(|f| f.len()), Ok(2));
    let strict = Detector::new().with_min_confidence(0.9);
    assert_eq!(
        strict
            .detect(text)
            .map(|f| f.into_iter().map(|f| f.kind).collect::<Vec<_>>()),
        Ok(vec![PiiKind::Email])
    );
}

#[test]
fn decisions_redact_or_keep_each_finding() {
    let text = "Mr Adrian Popescu: 07700 900123, ana@example.com.";
    let findings = detect(text).unwrap_or_default();
    assert_eq!(findings.len(), 3);
    let out = apply_decisions(text, &findings, |f| {
        if f.kind == PiiKind::Name {
            Decision::Keep
        } else {
            Decision::Redact
        }
    });
    assert_eq!(out, Ok("Mr Adrian Popescu: [PHONE], [EMAIL].".to_owned()));
    assert_eq!(
        apply_decisions(text, &findings, |_| Decision::Keep),
        Ok(text.to_owned())
    );
    assert_eq!(redact(text, &[]), Ok(text.to_owned()));
}

#[test]
fn overlapping_findings_from_several_detectors_merge() {
    let text = "Reach Maria Popescu at maria@example.com now";
    let a = Finding::new(PiiKind::Name, text, 6..19, 0.8);
    let b = Finding::new(PiiKind::Email, text, 23..40, 0.99);
    let c = Finding::new(PiiKind::Name, text, 12..40, 0.5);
    let out = redact(text, &[b.clone(), c.clone(), a.clone()]);
    assert_eq!(out, Ok("Reach [NAME] now".to_owned()));
    // A redaction wins over a keep where they overlap.
    let out = apply_decisions(text, &[a, b, c], |f| {
        if f.start == 12 {
            Decision::Keep
        } else {
            Decision::Redact
        }
    });
    assert_eq!(out, Ok("Reach [NAME] at [EMAIL] now".to_owned()));
}

#[test]
fn stale_or_invalid_findings_are_refused() {
    let text = "Call 07700 900123 now";
    let f = detect(text).unwrap_or_default();
    let edited = "Call 07700 900124 now";
    assert_eq!(
        redact(edited, &f),
        Err(PiiError::StaleFinding { start: 5, end: 17 })
    );
    let mut past_end = f[0].clone();
    past_end.end = 99;
    assert!(matches!(
        redact(text, &[past_end]),
        Err(PiiError::InvalidRange { .. })
    ));
    let accent = "é 07700 900123";
    let mut mid_char = Finding::new(PiiKind::Phone, accent, 0..2, 0.9);
    mid_char.start = 1;
    assert!(matches!(
        redact(accent, &[mid_char]),
        Err(PiiError::InvalidRange { .. })
    ));
}

#[test]
fn stable_ids_depend_on_scope_and_content() {
    let text = "Call 07700 900123 now";
    let f = detect(text).unwrap_or_default();
    let id = f[0].stable_id("recruitment/recruitment");
    assert_eq!(id.len(), 32);
    assert!(
        id.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        id,
        detect(text).unwrap_or_default()[0].stable_id("recruitment/recruitment")
    );
    assert_ne!(id, f[0].stable_id("money/money"));
    let other = detect("Call 07700 900124 now").unwrap_or_default();
    assert_ne!(id, other[0].stable_id("recruitment/recruitment"));
}

#[test]
fn findings_serialise_for_tool_output() {
    let f = detect("ana@example.com").unwrap_or_default();
    let json = serde_json::to_value(&f).unwrap_or_default();
    assert_eq!(json[0]["kind"], "email");
    assert_eq!(json[0]["placeholder"], "[EMAIL]");
    assert_eq!(json[0]["start"], 0);
    assert_eq!(json[0]["end"], 15);
}

#[test]
fn iban_with_an_unexpected_length_but_valid_mod97_is_reported() {
    // 22 characters where Lithuania's registry length is 20.
    let f = detect("Moved to LT03 1210 0001 1101 0010 00 at once.").unwrap_or_default();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].kind, f[0].text.as_str()),
        (PiiKind::BankAccount, "LT03 1210 0001 1101 0010 00")
    );
    assert!(f[0].confidence < 0.9);
    assert_eq!(
        found("Moved to LT03 1210 0001 1101 0010 01 at once."),
        vec![]
    );
}
