//! Token lifetimes as people write them: `90s`, `30m`, `1h`, `7d`, or plain seconds.

use std::time::Duration;

/// Parses a lifetime: a positive whole number, optionally followed by `s`, `m`, `h` or `d`.
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let (digits, unit_seconds) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 60 * 60),
        Some((i, 'd')) => (&text[..i], 24 * 60 * 60),
        _ => (text, 1),
    };
    let invalid = || format!("{raw:?} is not a lifetime: use e.g. 90s, 30m, 1h, 7d or seconds");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let count: u64 = digits.parse().map_err(|_| invalid())?;
    if count == 0 {
        return Err(format!("{raw:?}: the lifetime must be longer than zero"));
    }
    let seconds = count
        .checked_mul(unit_seconds)
        .ok_or_else(|| format!("{raw:?}: the lifetime is too long"))?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;
    use std::time::Duration;

    #[test]
    fn units_and_plain_seconds() {
        let cases = [
            ("90s", 90),
            ("30m", 30 * 60),
            ("1h", 3600),
            ("7d", 7 * 86_400),
            ("3600", 3600),
            (" 15m ", 15 * 60),
        ];
        for (raw, seconds) in cases {
            assert_eq!(parse_ttl(raw), Ok(Duration::from_secs(seconds)), "{raw}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_lifetime() {
        for raw in [
            "", "s", "h", "1.5h", "-5", "+5", "1w", "1 h", "1hh", "one", "0", "0s", "0d", "1H",
        ] {
            assert!(parse_ttl(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn refuses_overflow_instead_of_wrapping() {
        assert!(parse_ttl("99999999999999999999").is_err());
        assert!(parse_ttl(&format!("{}d", u64::MAX / 2)).is_err());
    }
}
