//! Parsing of request parameters as Vault clients send them: JSON bodies, Go duration strings,
//! numbers sent as strings, and query flags.
//!
//! Error messages name the field and the position of a problem but never echo body content,
//! because a malformed body may still contain secret values.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use axum::extract::Query;
use axum::http::Uri;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, de::Error as _};
use serde_json::Value;

use crate::errors::Rejection;

/// Maximum number of characters of a query value echoed back in an error message.
const MAX_ECHOED_QUERY_LEN: usize = 32;

/// Most distinct version numbers one delete, undelete or destroy request may name. Each
/// request holds the store's single write lock while it runs, so its size is bounded.
pub(crate) const MAX_VERSIONS_PER_REQUEST: usize = 1000;

/// Start of every error message of the duration parser.
const INVALID_DURATION: &str = "invalid duration";

/// Nanoseconds in a second.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a JSON request body; an empty body counts as `{}`, as in Vault.
pub(crate) fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejection> {
    json_body_borrowed(bytes)
}

/// Parses a JSON request body whose result may borrow from `bytes`.
pub(crate) fn json_body_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Rejection> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|error| json_rejection(&error))
}

fn json_rejection(error: &serde_json::Error) -> Rejection {
    use serde_json::error::Category;

    let problem = match error.classify() {
        Category::Io | Category::Syntax => "syntax error",
        Category::Eof => "unexpected end of input",
        // The duration parser's own messages quote at most a short duration string and never a
        // secret field, so they are passed on. No message of serde's starts with this prefix.
        Category::Data if error.to_string().starts_with(INVALID_DURATION) => {
            return Rejection::bad_request(
                "invalid_json",
                format!("failed to decode JSON input: {error}"),
            );
        }
        // A data error's own message may quote the offending value: name only its position.
        Category::Data => "a field has the wrong type or value",
    };
    Rejection::bad_request(
        "invalid_json",
        format!(
            "failed to decode JSON input: {problem} at line {} column {}",
            error.line(),
            error.column()
        ),
    )
}

/// Parses a duration the way Vault accepts one: a JSON number of seconds, a string of digits
/// (seconds), or a Go duration string such as `1h30m`, `90s`, `1.5h` or `7d`.
///
/// Fractions of a second are dropped, except that a non-zero duration below one second is
/// rejected: it would otherwise become 0, which means "the default" for a TTL.
pub(crate) fn duration_secs(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(number) => number.as_u64().ok_or_else(|| {
            format!("{INVALID_DURATION}: use a non-negative whole number of seconds")
        }),
        Value::String(text) => parse_go_duration(text),
        Value::Null => Ok(0),
        _ => Err(format!(
            "{INVALID_DURATION}: use a number of seconds or a string such as \"1h30m\""
        )),
    }
}

/// Parses a Go duration string (`300ms`, `1.5h`, `2h45m`) or plain seconds (`3600`) into whole
/// seconds. Vault's `d` suffix for days is accepted too.
pub fn parse_go_duration(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "{INVALID_DURATION} {:?}: use for example \"90s\", \"1h30m\" or \"3600\"",
            truncate(text)
        )
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map_err(|_| invalid());
    }

    let mut rest = text.strip_prefix('+').unwrap_or(text);
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
        total_nanos = total_nanos
            .checked_add(scaled(number, unit_nanos).ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
        rest = after;
    }
    if total_nanos > 0 && total_nanos < NANOS_PER_SEC {
        return Err(format!(
            "{INVALID_DURATION} {:?}: a non-zero duration must be at least 1s",
            truncate(text)
        ));
    }
    u64::try_from(total_nanos / NANOS_PER_SEC).map_err(|_| invalid())
}

/// Multiplies a decimal like `1.5` by `unit_nanos` without floating point.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(unit_nanos)?;

    // Digits beyond nanosecond precision cannot change the whole-second result.
    let mut scale = unit_nanos;
    for digit in fraction.bytes().take(30) {
        scale /= 10;
        value = value.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(value)
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_ECHOED_QUERY_LEN).collect()
}

/// Deserialises an optional duration field (number, digits or Go duration string).
pub(crate) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    match value {
        None => Ok(None),
        Some(value) => duration_secs(&value).map(Some).map_err(D::Error::custom),
    }
}

/// Deserialises an optional unsigned integer sent as a number or as a string of digits.
pub(crate) fn optional_lenient_u64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    value.as_ref().map(lenient_u64::<D::Error>).transpose()
}

/// The `versions` list of a delete, undelete or destroy request, without duplicates. The
/// `bao` CLI sends the numbers as strings (`["1"]`); numbers are accepted too.
///
/// Parsing keeps at most [`MAX_VERSIONS_PER_REQUEST`] distinct numbers and only notes that
/// there were more, so a body full of numbers costs no more memory than that. The handler then
/// rejects the request with [`VersionList::into_checked`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionList {
    versions: BTreeSet<u64>,
    too_many: bool,
}

impl VersionList {
    /// Returns the distinct versions in ascending order, or a 400 if there were too many.
    pub fn into_checked(self) -> Result<Vec<u64>, Rejection> {
        if self.too_many {
            return Err(Rejection::bad_request(
                "too_many_versions",
                format!(
                    "too many versions: a request may name at most {MAX_VERSIONS_PER_REQUEST} \
                     distinct version numbers; split it into several requests"
                ),
            ));
        }
        Ok(self.versions.into_iter().collect())
    }
}

impl<'de> Deserialize<'de> for VersionList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_option(VersionListVisitor)
    }
}

struct VersionListVisitor;

impl<'de> Visitor<'de> for VersionListVisitor {
    type Value = VersionList;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a list of version numbers")
    }

    fn visit_none<E: de::Error>(self) -> Result<VersionList, E> {
        Ok(VersionList::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<VersionList, E> {
        Ok(VersionList::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<VersionList, D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VersionList, A::Error> {
        let mut list = VersionList::default();
        while !list.too_many {
            let Some(value) = seq.next_element::<Value>()? else {
                return Ok(list);
            };
            list.versions.insert(lenient_u64(&value)?);
            list.too_many = list.versions.len() > MAX_VERSIONS_PER_REQUEST;
        }
        // The rest is skipped, not stored: the request is rejected anyway.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(list)
    }
}

fn lenient_u64<E: de::Error>(value: &Value) -> Result<u64, E> {
    match value {
        Value::Number(number) => number
            .as_u64()
            .ok_or_else(|| E::custom("expected a non-negative integer")),
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| E::custom("expected a non-negative integer")),
        _ => Err(E::custom("expected a non-negative integer")),
    }
}

/// Deserialises a list of names sent either as a JSON list or as one comma-separated string.
pub(crate) fn name_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        Joined(String),
    }
    let names = match Option::<Names>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(Names::List(list)) => list,
        Some(Names::Joined(joined)) => joined.split(',').map(str::to_owned).collect(),
    };
    Ok(names
        .into_iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect())
}

/// The query parameters of a request.
#[derive(Debug, Default)]
pub(crate) struct QueryParams(HashMap<String, String>);

impl QueryParams {
    /// Parses the query string of `uri`.
    pub fn from_uri(uri: &Uri) -> Result<Self, Rejection> {
        if uri.query().is_none() {
            return Ok(Self::default());
        }
        Query::<HashMap<String, String>>::try_from_uri(uri)
            .map(|Query(map)| Self(map))
            .map_err(|_| Rejection::bad_request("invalid_query", "invalid query string"))
    }

    /// Returns a parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Reads a boolean flag as Go's `strconv.ParseBool` does; absent means false.
    pub fn flag(&self, name: &str) -> Result<bool, Rejection> {
        match self.get(name) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("" | "0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(other) => Err(Rejection::bad_request(
                "invalid_query",
                format!(
                    "invalid {name} value {:?}: expected true or false",
                    truncate(other)
                ),
            )),
        }
    }

    /// Reads an unsigned integer parameter.
    pub fn unsigned(&self, name: &str) -> Result<Option<u64>, Rejection> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        raw.parse().map(Some).map_err(|_| {
            Rejection::bad_request(
                "invalid_query",
                format!(
                    "invalid {name} {:?}: expected a non-negative integer",
                    truncate(raw)
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations_parse_to_seconds() {
        let cases = [
            ("90s", 90),
            ("1h30m", 5400),
            ("1h0m0s", 3600),
            ("1.5h", 5400),
            ("2h45m30s", 9930),
            ("768h", 2_764_800),
            ("7d", 604_800),
            ("0s", 0),
            ("1500ms", 1),
            ("1s", 1),
            ("1000ms", 1),
            ("3600", 3600),
            (".5m", 30),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_go_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for text in [
            "",
            "h",
            "1x",
            "-5s",
            "1.2.3s",
            "1h30",
            "abc",
            "1e3s",
            "99999999999999999999h",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn duration_errors_are_shown_to_the_client() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Body {
            #[serde(default, deserialize_with = "optional_duration")]
            ttl: Option<u64>,
        }
        let rejection = json_body::<Body>(br#"{"ttl":"0.5s"}"#).expect_err("sub-second");
        let message = rejection.message.unwrap_or_default();
        assert!(
            message.starts_with("failed to decode JSON input: invalid duration \"0.5s\""),
            "{message}"
        );
    }

    #[test]
    fn sub_second_durations_are_rejected() {
        for text in ["0.5s", "1ns", "999ms", "999999999ns", ".9s"] {
            let error = parse_go_duration(text).expect_err(text);
            assert!(error.contains("at least 1s"), "{text}: {error}");
        }
        assert_eq!(parse_go_duration("0s"), Ok(0));
        assert_eq!(parse_go_duration("0.0s"), Ok(0));
        assert_eq!(parse_go_duration("0ms"), Ok(0));
    }

    #[test]
    fn duration_accepts_number_and_string() {
        assert_eq!(duration_secs(&json!(120)), Ok(120));
        assert_eq!(duration_secs(&json!("2m")), Ok(120));
        assert!(duration_secs(&json!(-1)).is_err());
        assert!(duration_secs(&json!(true)).is_err());
    }

    #[derive(Deserialize)]
    struct VersionsBody {
        #[serde(default)]
        versions: VersionList,
    }

    fn parse_versions(json: &str) -> Result<Vec<u64>, Rejection> {
        json_body::<VersionsBody>(json.as_bytes())?
            .versions
            .into_checked()
    }

    #[test]
    fn versions_accept_strings_and_numbers() {
        assert_eq!(parse_versions(r#"{"versions":["3", 4]}"#), Ok(vec![3, 4]));
        assert_eq!(parse_versions(""), Ok(vec![]));
        assert_eq!(parse_versions(r#"{"versions":null}"#), Ok(vec![]));
        assert!(parse_versions(r#"{"versions":["x"]}"#).is_err());
        assert!(parse_versions(r#"{"versions":"1"}"#).is_err());
    }

    #[test]
    fn duplicate_versions_count_once() {
        let repeated: Vec<String> = (0..5000).map(|i| (i % 3 + 1).to_string()).collect();
        let json = format!(r#"{{"versions":[{}]}}"#, repeated.join(","));
        assert_eq!(parse_versions(&json), Ok(vec![1, 2, 3]));

        let most: Vec<String> = (1..=MAX_VERSIONS_PER_REQUEST)
            .map(|i| i.to_string())
            .collect();
        let json = format!(r#"{{"versions":[{},1,2]}}"#, most.join(","));
        assert_eq!(
            parse_versions(&json).map(|versions| versions.len()),
            Ok(MAX_VERSIONS_PER_REQUEST)
        );
    }

    #[test]
    fn too_many_distinct_versions_are_rejected() {
        let numbers: Vec<String> = (1..=520_000).map(|i| i.to_string()).collect();
        let json = format!(r#"{{"versions":[{}]}}"#, numbers.join(","));
        let rejection = parse_versions(&json).expect_err("too many");
        assert_eq!(rejection.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(rejection.reason, "too_many_versions");
        let message = rejection.message.unwrap_or_default();
        assert!(message.contains("at most 1000"), "{message}");
    }

    #[test]
    fn names_accept_list_or_comma_string() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default, deserialize_with = "name_list")]
            policies: Vec<String>,
        }
        let list: Body = json_body(br#"{"policies":["a","b"]}"#).expect("parses");
        assert_eq!(list.policies, ["a", "b"]);
        let joined: Body = json_body(br#"{"policies":"a, b,"}"#).expect("parses");
        assert_eq!(joined.policies, ["a", "b"]);
    }

    #[test]
    fn json_error_does_not_echo_values() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Body {
            cas: u64,
        }
        let rejection = json_body::<Body>(br#"{"cas":"sk-live-secret"}"#).expect_err("wrong type");
        let message = rejection.message.unwrap_or_default();
        assert!(!message.contains("sk-live"), "{message}");
        assert!(
            message.starts_with("failed to decode JSON input"),
            "{message}"
        );
    }

    #[test]
    fn version_query_is_parsed() {
        let uri: Uri = "/v1/secret/data/a?version=3".parse().expect("uri");
        let query = QueryParams::from_uri(&uri).expect("parses");
        assert_eq!(query.unsigned("version"), Ok(Some(3)));

        let uri: Uri = "/v1/secret/data/a?version=abc".parse().expect("uri");
        let query = QueryParams::from_uri(&uri).expect("parses");
        assert!(query.unsigned("version").is_err());
    }

    #[test]
    fn list_flag_follows_go_parse_bool() {
        let uri: Uri = "/v1/secret/metadata?list=true".parse().expect("uri");
        assert_eq!(
            QueryParams::from_uri(&uri).expect("parses").flag("list"),
            Ok(true)
        );
        let uri: Uri = "/v1/secret/metadata?list=0".parse().expect("uri");
        assert_eq!(
            QueryParams::from_uri(&uri).expect("parses").flag("list"),
            Ok(false)
        );
        let uri: Uri = "/v1/secret/metadata?list=maybe".parse().expect("uri");
        assert!(
            QueryParams::from_uri(&uri)
                .expect("parses")
                .flag("list")
                .is_err()
        );
    }
}
