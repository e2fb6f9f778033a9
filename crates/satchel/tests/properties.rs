//! Property tests of the parsers that face user input: no panic on any input, and the
//! invariants hold for everything they accept. (cargo-fuzz would need a nightly toolchain,
//! which this machine cannot fetch; proptest runs in CI with a bounded number of cases.)

use proptest::prelude::*;
use satchel::catalog::Cursor;
use satchel::domain::{FileName, FolderPath, PathScope, SessionId, VirtualPath};
use unicode_normalization::UnicodeNormalization;

/// Strings biased towards the characters that matter to path parsing.
fn pathish() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("/".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("\\".to_string()),
        Just("\0".to_string()),
        Just("\u{1}".to_string()),
        Just("\u{85}".to_string()),
        Just("e\u{301}".to_string()),
        Just("sessions".to_string()),
        Just("shared".to_string()),
        "[a-zA-Z0-9 _.-]{1,12}",
        any::<char>().prop_map(|c| c.to_string()),
        "a{200,300}",
    ];
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

fn check_path(p: &str) {
    assert!(p.starts_with('/'));
    assert!(!p.ends_with('/'));
    assert!(p.len() <= 1024);
    for seg in p[1..].split('/') {
        assert!(
            !seg.is_empty() && seg != "." && seg != "..",
            "bad segment in {p:?}"
        );
        assert!(seg.len() <= 255);
    }
    assert!(!p.chars().any(|c| c.is_control() || c == '\\'));
    assert_eq!(p.nfc().collect::<String>(), p, "not NFC");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn virtual_paths_reparse_to_themselves(raw in pathish()) {
        if let Ok(p) = VirtualPath::parse(&raw) {
            check_path(p.as_str());
            prop_assert_eq!(VirtualPath::parse(p.as_str()).unwrap(), p);
        }
    }

    #[test]
    fn scoped_paths_stay_in_their_session_or_a_literal_root(raw in pathish(), session in "[A-Za-z0-9_-]{1,8}") {
        let scope = PathScope::new(
            Some(SessionId::parse(&session).unwrap()),
            vec![FolderPath::parse("/shared").unwrap()],
        );
        if let Ok(p) = scope.file(&raw) {
            check_path(p.as_str());
            let own = format!("/sessions/{session}/");
            let literal = raw.starts_with('/')
                && (p.as_str().starts_with("/sessions/") || p.as_str().starts_with("/shared/"));
            prop_assert!(p.as_str().starts_with(&own) || literal, "{} escaped its session", p);
        }
        if let Ok(f) = scope.folder(Some(&raw)) {
            prop_assert!(f.as_prefix().ends_with('/'));
            prop_assert!(f.as_prefix().len() <= 1024);
        }
    }

    #[test]
    fn storage_names_are_always_safe(raw in pathish()) {
        if let Ok(name) = FileName::parse(&raw) {
            let s = name.storage_name();
            prop_assert!(!s.is_empty() && s.len() <= 200);
            prop_assert!(s != "." && s != ".." && !s.starts_with('.'));
            prop_assert!(!s.contains(['/', '\\', '\0']));
            prop_assert!(!s.chars().any(char::is_control));
            prop_assert!(!name.as_str().contains(['/', '\\']));
            // The sanitiser is idempotent.
            let again = FileName::parse(s).unwrap();
            prop_assert_eq!(again.storage_name(), s);
        }
    }

    #[test]
    fn cursors_never_panic_and_round_trip(raw in ".{0,80}", micros in 0i64..4_000_000_000_000_000, id in any::<u128>()) {
        let _ = Cursor::decode(&raw);
        let c = Cursor {
            created_at: chrono::DateTime::from_timestamp_micros(micros).unwrap(),
            id: uuid::Uuid::from_u128(id),
        };
        prop_assert_eq!(Cursor::decode(&c.encode()), Some(c));
    }

    #[test]
    fn session_ids_are_tokens(raw in ".{0,140}") {
        if let Ok(s) = SessionId::parse(&raw) {
            prop_assert!(s.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            prop_assert!(!s.as_str().is_empty() && s.as_str().len() <= 128);
        }
    }
}
