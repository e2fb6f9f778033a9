//! Property tests of the HTTP edge's parsers: the `Range` header and signed-link tokens.
//! No input panics; what is accepted satisfies the invariants; no forged token verifies.

use proptest::prelude::*;
use satchel::signing::{create_download_token, verify_download_token, DownloadClaims, Secrets};
use satchel::ErrorCode;
use satchel_server::range::{parse_range, RangeRequest};

fn secrets() -> Secrets {
    Secrets {
        jwt_secret: "j".repeat(32),
        signing_secret: "current-secret".into(),
        signing_secret_previous: Some("previous-secret".into()),
    }
}

fn rangeish() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("bytes=".to_string()),
        Just("-".to_string()),
        Just(",".to_string()),
        Just(" ".to_string()),
        Just("18446744073709551615".to_string()),
        Just("99999999999999999999999".to_string()),
        "[0-9]{1,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(atoms, 0..10).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn range_header_never_panics_and_stays_in_bounds(header in rangeish(), size in prop_oneof![Just(0u64), 1u64..10_000, Just(u64::MAX)]) {
        match parse_range(&header, size) {
            RangeRequest::Partial(r) => {
                prop_assert!(r.start <= r.end, "{header:?} → {r:?}");
                prop_assert!(r.end < size, "{header:?} → {r:?} for size {size}");
            }
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
    }

    #[test]
    fn garbage_tokens_never_verify(token in ".{0,200}") {
        prop_assert!(verify_download_token(&secrets(), &token, 0).is_err());
    }

    #[test]
    fn tokens_round_trip_and_any_change_breaks_them(
        ws in any::<u128>(), file in any::<u128>(), sum in any::<[u8; 32]>(),
        expires_at in 0i64..4_000_000_000, at in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_-]",
    ) {
        let claims = DownloadClaims {
            workspace_id: uuid::Uuid::from_u128(ws),
            file_id: uuid::Uuid::from_u128(file),
            checksum: hex::encode(sum),
            expires_at,
        };
        let token = create_download_token("current-secret", &claims).unwrap();
        prop_assert_eq!(verify_download_token(&secrets(), &token, expires_at).unwrap(), claims.clone());
        let expired = verify_download_token(&secrets(), &token, expires_at + 1).unwrap_err();
        prop_assert_eq!(expired.code, ErrorCode::LinkExpired);
        // Rotation: a link signed with the previous secret still verifies; an unknown one does not.
        let old = create_download_token("previous-secret", &claims).unwrap();
        prop_assert!(verify_download_token(&secrets(), &old, expires_at).is_ok());
        let foreign = create_download_token("someone-else", &claims).unwrap();
        prop_assert_eq!(verify_download_token(&secrets(), &foreign, 0).unwrap_err().code, ErrorCode::LinkInvalid);
        // Any single-character change is refused as invalid (never accepted, never "expired").
        let i = at.index(token.len());
        let mut tampered: Vec<char> = token.chars().collect();
        let new = replacement.chars().next().unwrap();
        if tampered[i] != new {
            tampered[i] = new;
            let tampered: String = tampered.into_iter().collect();
            let err = verify_download_token(&secrets(), &tampered, 0).unwrap_err();
            prop_assert_eq!(err.code, ErrorCode::LinkInvalid);
        }
    }
}
