//! The byte format of one audit log line: building it and checking it.
//!
//! A line is `{"seq":N,"time":"T","prev":"P","entry":{...},"hash":"H"}` followed by `\n`.
//! `H` is the hex SHA-256 of the same object without its `hash` field, that is of the bytes
//! `{"seq":N,"time":"T","prev":"P","entry":{...}}` exactly as they appear in the line. Checking
//! a line therefore hashes its own bytes and never depends on how a JSON library re-serialises
//! the entry.

use aws_lc_rs::digest;
use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::VerifyError;

/// `prev` of the first entry: 64 hex zeros.
pub(crate) const ZERO_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Length of a hex SHA-256 digest.
pub(crate) const HASH_HEX_LEN: usize = 64;

const HASH_KEY: &[u8] = br#","hash":""#;
const LINE_START: &[u8] = br#"{"seq":"#;

/// Length of `,"hash":"<64 hex>"}`, the fixed tail of every line before its newline.
const HASH_SUFFIX_LEN: usize = HASH_KEY.len() + HASH_HEX_LEN + 2;

/// A formatted line and its hash.
pub(crate) struct FormattedLine {
    /// The line including its trailing newline.
    pub text: String,
    pub hash: String,
}

/// Formats the entry with sequence number `seq` chained onto `prev`.
///
/// `entry_json` must be a compact JSON object, as `serde_json::to_string` writes it: it then
/// contains no raw newline, so the line stays on one line.
pub(crate) fn format_line(seq: u64, time: &str, prev: &str, entry_json: &str) -> FormattedLine {
    let prefix = format!(r#"{{"seq":{seq},"time":"{time}","prev":"{prev}","entry":{entry_json}}}"#);
    let hash = sha256_hex(prefix.as_bytes());

    let mut text = prefix;
    text.pop();
    text.reserve(HASH_SUFFIX_LEN + 1);
    text.push_str(r#","hash":""#);
    text.push_str(&hash);
    text.push_str("\"}\n");

    FormattedLine { text, hash }
}

/// Formats `time` as RFC 3339 in UTC with nine fractional digits, so timestamps sort as text.
pub(crate) fn format_time(time: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    let utc = time.to_offset(time::UtcOffset::UTC);

    // `format` fails only when the value lacks a component the format needs, or when writing
    // the output fails. An `OffsetDateTime` has every component and a String cannot fail.
    utc.format(&format)
        .unwrap_or_else(|_| "9999-12-31T23:59:59.999999999Z".to_owned())
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// Returns whether `text` is a 64-character lowercase hex digest, as this crate writes them.
pub(crate) fn is_hash_hex(text: &str) -> bool {
    text.len() == HASH_HEX_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The fields of a line that the chain depends on.
#[derive(Debug)]
pub(crate) struct CheckedLine {
    pub seq: u64,
    pub prev: String,
    /// The `hash` field as written.
    pub hash: String,
    /// SHA-256 of the line's bytes without the `hash` field.
    pub computed_hash: String,
}

impl CheckedLine {
    /// Returns whether the written hash matches the line's contents.
    pub fn hash_matches(&self) -> bool {
        self.hash == self.computed_hash
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    seq: u64,
    time: String,
    prev: String,
    // Parsed to check that `entry` is an object. Its content is not needed here.
    #[allow(dead_code)]
    entry: Map<String, Value>,
    hash: String,
}

/// Parses one line (without its newline) and computes its hash.
///
/// Returns the reason when the line is not a well-formed entry. A well-formed line whose hash
/// does not match its contents is returned with [`CheckedLine::hash_matches`] false, so the
/// caller can report it as edited.
pub(crate) fn check_line(line: &[u8]) -> Result<CheckedLine, String> {
    if line.is_empty() {
        return Err("empty line".to_owned());
    }
    if !line.starts_with(LINE_START) {
        return Err(r#"line does not start with {"seq":"#.to_owned());
    }
    if line.len() < LINE_START.len() + HASH_SUFFIX_LEN {
        return Err("line is too short to contain a hash".to_owned());
    }

    let (body, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    if !suffix.starts_with(HASH_KEY) || !suffix.ends_with(b"\"}") {
        return Err(r#"line does not end with ,"hash":"<64 hex digits>"}"#.to_owned());
    }

    let raw: RawLine = serde_json::from_slice(line).map_err(|e| format!("invalid JSON: {e}"))?;

    // `hash` is the last field and its value has a fixed length, so the parsed value is the
    // one in the suffix unless the suffix was not really the field (for example inside a
    // string). Compare them so the hashed prefix is exactly the line minus that field.
    let suffix_hash = &suffix[HASH_KEY.len()..HASH_KEY.len() + HASH_HEX_LEN];
    if raw.hash.as_bytes() != suffix_hash || !is_hash_hex(&raw.hash) {
        return Err("hash field is not 64 lowercase hex digits at the end of the line".to_owned());
    }
    if !is_hash_hex(&raw.prev) {
        return Err("prev field is not 64 lowercase hex digits".to_owned());
    }
    if OffsetDateTime::parse(&raw.time, &Rfc3339).is_err() {
        return Err("time field is not an RFC 3339 timestamp".to_owned());
    }

    let mut prefix = Vec::with_capacity(body.len() + 1);
    prefix.extend_from_slice(body);
    prefix.push(b'}');

    Ok(CheckedLine {
        seq: raw.seq,
        prev: raw.prev,
        hash: raw.hash,
        computed_hash: sha256_hex(&prefix),
    })
}

/// Checks one audit log line on its own, without its newline: that it is a well-formed entry
/// and that its `hash` matches its bytes. Returns the line's `seq`.
///
/// This is the per-line check that [`verify`](crate::verify) runs. It does not check the chain
/// to other lines, so an intact line moved from another log passes.
///
/// # Errors
///
/// [`VerifyError::Malformed`] when the line is not a well-formed entry, and
/// [`VerifyError::Edited`] when its hash does not match its contents. Both report line 1.
pub fn parse_line(line: &[u8]) -> Result<u64, VerifyError> {
    let checked = check_line(line).map_err(|reason| VerifyError::Malformed { line: 1, reason })?;
    if !checked.hash_matches() {
        return Err(VerifyError::Edited {
            line: 1,
            seq: checked.seq,
        });
    }
    Ok(checked.seq)
}

/// Reads only the sequence number at the start of a line, without checking the rest.
pub(crate) fn peek_seq(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(LINE_START)?;
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: &str = "2026-01-02T03:04:05.000000006Z";

    fn entry_json() -> String {
        let mut entry = Map::new();
        entry.insert("event".to_owned(), Value::from("secret.read"));
        entry.insert("path".to_owned(), Value::from("team/app/db"));
        serde_json::to_string(&entry).expect("a map of strings serialises")
    }

    #[test]
    fn formatted_line_has_fixed_field_order() {
        let line = format_line(7, TIME, ZERO_HASH, &entry_json());

        let expected_start = format!(
            r#"{{"seq":7,"time":"{TIME}","prev":"{ZERO_HASH}","entry":{{"event":"secret.read","path":"team/app/db"}},"hash":""#
        );
        assert!(line.text.starts_with(&expected_start), "{}", line.text);
        assert!(line.text.ends_with("\"}\n"));
        assert_eq!(line.text.matches('\n').count(), 1);
    }

    #[test]
    fn hash_covers_line_without_hash_field() {
        let line = format_line(1, TIME, ZERO_HASH, &entry_json());

        let prefix = format!(
            r#"{{"seq":1,"time":"{TIME}","prev":"{ZERO_HASH}","entry":{}}}"#,
            entry_json()
        );
        assert_eq!(line.hash, sha256_hex(prefix.as_bytes()));
    }

    #[test]
    fn formatted_line_checks_clean() {
        let line = format_line(3, TIME, ZERO_HASH, &entry_json());
        let checked = check_line(line.text.trim_end().as_bytes()).expect("line is well formed");

        assert_eq!(checked.seq, 3);
        assert_eq!(checked.prev, ZERO_HASH);
        assert_eq!(checked.hash, line.hash);
        assert!(checked.hash_matches());
    }

    #[test]
    fn edited_entry_fails_hash_check() {
        let line = format_line(3, TIME, ZERO_HASH, &entry_json());
        let edited = line.text.trim_end().replace("team/app/db", "team/app/dc");
        let checked = check_line(edited.as_bytes()).expect("edit keeps the line well formed");

        assert!(!checked.hash_matches());
    }

    #[test]
    fn unknown_field_is_malformed() {
        let line = format_line(3, TIME, ZERO_HASH, &entry_json());
        let extra = line
            .text
            .trim_end()
            .replace(r#""entry""#, r#""x":1,"entry""#);

        assert!(check_line(extra.as_bytes()).is_err());
    }

    #[test]
    fn duplicate_hash_field_is_malformed() {
        let line = format_line(3, TIME, ZERO_HASH, &entry_json());
        let text = line.text.trim_end();
        let duplicated = format!(r#"{},"hash":"{}"}}"#, &text[..text.len() - 1], line.hash);

        assert!(check_line(duplicated.as_bytes()).is_err());
    }

    #[test]
    fn non_object_entry_is_malformed() {
        let line = format_line(3, TIME, ZERO_HASH, "[1,2]");

        assert!(check_line(line.text.trim_end().as_bytes()).is_err());
    }

    #[test]
    fn truncated_line_is_malformed() {
        let line = format_line(3, TIME, ZERO_HASH, &entry_json());
        let cut = &line.text.as_bytes()[..line.text.len() / 2];

        assert!(check_line(cut).is_err());
    }

    #[test]
    fn empty_line_is_malformed() {
        assert!(check_line(b"").is_err());
    }

    #[test]
    fn time_has_nine_fractional_digits() {
        let time = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_100)
            .expect("timestamp is in range");

        assert_eq!(format_time(time), "2023-11-14T22:13:20.000000100Z");
    }

    #[test]
    fn parse_line_returns_seq_of_intact_line() {
        let line = format_line(
            7,
            "2026-01-02T03:04:05.000000000Z",
            ZERO_HASH,
            &entry_json(),
        );
        let text = line.text.trim_end_matches('\n');

        assert_eq!(parse_line(text.as_bytes()).expect("intact line parses"), 7);
    }

    #[test]
    fn parse_line_reports_edit_and_garbage() {
        let line = format_line(
            7,
            "2026-01-02T03:04:05.000000000Z",
            ZERO_HASH,
            &entry_json(),
        );
        let edited = line
            .text
            .trim_end_matches('\n')
            .replacen("seq\":7", "seq\":8", 1);

        assert!(matches!(
            parse_line(edited.as_bytes()),
            Err(VerifyError::Edited { line: 1, seq: 8 })
        ));
        assert!(matches!(
            parse_line(b"{\"seq\":1"),
            Err(VerifyError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn peek_seq_reads_leading_number() {
        let line = format_line(42, TIME, ZERO_HASH, &entry_json());

        assert_eq!(peek_seq(line.text.as_bytes()), Some(42));
        assert_eq!(peek_seq(b"garbage"), None);
    }
}
