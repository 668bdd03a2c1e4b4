//! Durations on the command line, written as Go and the Vault CLI write them: `90s`, `15m`,
//! `1h30m`, `1.5h`, `7d`, or plain seconds (`3600`).
//!
//! Parsing here, with the server's parser, lets the CLI reject a bad `--ttl` before it sends
//! anything. This module does not decide what a duration means to the server.

/// Parses a duration into whole seconds with the server's own parser, so the CLI accepts
/// exactly what the server does. Surrounding whitespace is rejected here, since on the command
/// line it usually means a quoting mistake.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    if text.trim() != text {
        return Err(format!(
            "invalid duration {text:?}: remove the spaces around it"
        ));
    }
    keyward_server::parse_duration(text)
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
