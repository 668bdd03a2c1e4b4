//! Durations on the command line, written as Go and the Vault CLI write them: `90s`, `15m`,
//! `1h30m`, `1.5h`, `7d`, or plain seconds (`3600`).
//!
//! Parsing here lets the CLI reject a bad `--ttl` before it sends anything. The server parses
//! the same forms again; this module does not decide what a duration means to it.

/// Parses a duration into whole seconds; fractions of a second are dropped.
///
/// Accepted units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h` and `d` (24 hours, as Vault
/// accepts). Each number may have a decimal fraction (`1.5h`).
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid duration {text:?}: use for example 90s, 15m, 1h30m or 3600");
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map_err(|_| invalid());
    }

    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);

        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            _ => return Err(invalid()),
        };
        let nanos = decimal_times(number, unit_nanos).ok_or_else(invalid)?;
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(invalid)?;
        rest = after;
    }
    u64::try_from(total_nanos / 1_000_000_000).map_err(|_| invalid())
}

/// Parses a token TTL for `--ttl`: a duration of at least one second.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let seconds = parse_seconds(text)?;
    if seconds == 0 {
        return Err(format!(
            "invalid TTL {text:?}: it must be at least 1s (leave out --ttl for the default)"
        ));
    }
    Ok(seconds)
}

/// Multiplies a decimal such as `1.5` by `unit_nanos` in integers, so `0.1h` is exact.
fn decimal_times(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(unit_nanos)?;

    // Digits past nanosecond precision cannot change the whole-second result.
    let mut scale = unit_nanos;
    for digit in fraction.bytes().take(30) {
        scale /= 10;
        value = value.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(value)
}

/// Formats whole seconds as the Vault CLI prints a token's duration: `768h`, `1h30m`,
/// `1h0m5s` becomes `1h5s`, and zero is `0s`.
pub fn format_seconds(total: u64) -> String {
    if total == 0 {
        return "0s".to_owned();
    }
    let hours = total / 3600;
    let minutes = (total % 3600) / 60;
    let seconds = total % 60;

    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_to_seconds() {
        let cases = [
            ("90s", 90),
            ("15m", 900),
            ("1h30m", 5400),
            ("1h0m0s", 3600),
            ("1.5h", 5400),
            (".5m", 30),
            ("768h", 2_764_800),
            ("7d", 604_800),
            ("1500ms", 1),
            ("3600", 3600),
            ("0", 0),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_seconds(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for text in [
            "",
            "h",
            "1x",
            "-5s",
            " 5s",
            "1.2.3s",
            "1h30",
            "1 h",
            "abc",
            "1e3s",
            "1H",
            "99999999999999999999h",
        ] {
            let error = parse_seconds(text).expect_err(text);
            assert!(error.contains("invalid duration"), "{text:?}: {error}");
        }
    }

    #[test]
    fn ttl_below_one_second_is_rejected() {
        assert_eq!(parse_ttl("1s"), Ok(1));
        for text in ["0", "0s", "500ms"] {
            let error = parse_ttl(text).expect_err(text);
            assert!(error.contains("at least 1s"), "{text:?}: {error}");
        }
    }

    #[test]
    fn durations_format_like_vault_cli() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (90, "1m30s"),
            (1800, "30m"),
            (3600, "1h"),
            (3605, "1h5s"),
            (5400, "1h30m"),
            (2_764_800, "768h"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(format_seconds(seconds), expected, "{seconds}");
        }
    }
}
