//! Comparison of `bao` outputs from Keyward and from OpenBao: masking of values that differ on
//! every run (times, tokens, accessors, request ids, remaining TTLs), and a recursive JSON
//! comparison of key sets, value types and stable values.

use serde_json::Value;

/// JSON keys whose values change from run to run: only their types are compared.
const VOLATILE_KEYS: [&str; 13] = [
    "request_id",
    "created_time",
    "updated_time",
    "client_token",
    "accessor",
    "id",
    "issue_time",
    "creation_time",
    "expire_time",
    "ttl",
    "lease_duration",
    "creation_ttl",
    "last_renewal_time",
];

/// Table rows (first word of a line) whose values change from run to run.
const VOLATILE_ROWS: [&str; 12] = [
    "token",
    "token_accessor",
    "accessor",
    "id",
    "creation_time",
    "issue_time",
    "expire_time",
    "ttl",
    "creation_ttl",
    "created_time",
    "updated_time",
    "last_renewal_time",
];

/// A difference that both servers are allowed to show, with the reason.
pub struct Exception {
    /// JSON path of the value, like `data.entity_id`; a difference at or under it is allowed.
    pub path: &'static str,
    /// Why Keyward differs from OpenBao there.
    pub reason: &'static str,
}

/// Replaces RFC 3339 timestamps (`2026-12-04T20:10:52.50681396Z`, `...+00:00`) with `<time>`.
pub fn mask_times(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        match timestamp_len(&bytes[index..]) {
            Some(len) => {
                out.push_str("<time>");
                index += len;
            }
            None => {
                let ch = text[index..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                index += ch.len_utf8().max(1);
            }
        }
    }
    out
}

/// Replaces UUIDs such as request ids (`6a23bccf-99a5-a31c-60da-90ed530092fd`) with `<uuid>`.
pub fn mask_uuids(text: &str) -> String {
    const SHAPE: &[u8] = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        let fits = bytes.len() - index >= SHAPE.len()
            && SHAPE
                .iter()
                .zip(&bytes[index..])
                .all(|(shape, byte)| match shape {
                    b'x' => byte.is_ascii_hexdigit(),
                    other => other == byte,
                });
        if fits {
            out.push_str("<uuid>");
            index += SHAPE.len();
        } else {
            let ch = text[index..].chars().next().unwrap_or('\u{fffd}');
            out.push(ch);
            index += ch.len_utf8().max(1);
        }
    }
    out
}

/// Length of the RFC 3339 timestamp at the start of `bytes`, if there is one.
fn timestamp_len(bytes: &[u8]) -> Option<usize> {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    if bytes.len() < SHAPE.len() {
        return None;
    }
    let fits = SHAPE.iter().zip(bytes).all(|(shape, byte)| match shape {
        b'd' => byte.is_ascii_digit(),
        other => other == byte,
    });
    if !fits {
        return None;
    }

    let mut len = SHAPE.len();
    if bytes.get(len) == Some(&b'.') {
        len += 1;
        while bytes.get(len).is_some_and(u8::is_ascii_digit) {
            len += 1;
        }
    }
    match bytes.get(len) {
        Some(b'Z') => len += 1,
        Some(b'+' | b'-') if bytes.len() >= len + 6 && bytes[len + 3] == b':' => len += 6,
        _ => {}
    }
    Some(len)
}

/// Replaces the value of every table row whose key changes from run to run with `<masked>`.
pub fn mask_rows(text: &str) -> String {
    text.lines()
        .map(|line| {
            let key = line.split_whitespace().next().unwrap_or_default();
            let is_row = line.len() > key.len() && line[key.len()..].starts_with("  ");
            if is_row && VOLATILE_ROWS.contains(&key) {
                let value_start = line.len() - line[key.len()..].trim_start().len();
                format!("{}<masked>", &line[..value_start])
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares two JSON documents: object key sets, value types, and every value whose key is not
/// volatile. Returns one line per difference not covered by `exceptions`, and prints the
/// covered ones.
pub fn compare_json(keyward: &Value, openbao: &Value, exceptions: &[Exception]) -> Vec<String> {
    let mut differences = Vec::new();
    walk(keyward, openbao, "", false, &mut differences);

    differences
        .into_iter()
        .filter(|(path, message)| {
            let excepted = exceptions.iter().find(|exception| {
                path == exception.path || path.starts_with(&format!("{}.", exception.path))
            });
            if let Some(exception) = excepted {
                eprintln!(
                    "documented difference at {path}: {message} ({})",
                    exception.reason
                );
                return false;
            }
            true
        })
        .map(|(path, message)| format!("{path}: {message}"))
        .collect()
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    keyward: &Value,
    openbao: &Value,
    path: &str,
    volatile: bool,
    out: &mut Vec<(String, String)>,
) {
    if type_name(keyward) != type_name(openbao) {
        out.push((
            path.to_owned(),
            format!(
                "Keyward has {keyward} ({}), OpenBao has {openbao} ({})",
                type_name(keyward),
                type_name(openbao)
            ),
        ));
        return;
    }

    match (keyward, openbao) {
        (Value::Object(kw), Value::Object(ob)) => {
            for (key, kw_value) in kw {
                let child = join(path, key);
                match ob.get(key) {
                    Some(ob_value) => {
                        let volatile = volatile || VOLATILE_KEYS.contains(&key.as_str());
                        walk(kw_value, ob_value, &child, volatile, out);
                    }
                    None => out.push((child, format!("only Keyward has it ({kw_value})"))),
                }
            }
            for (key, ob_value) in ob {
                if !kw.contains_key(key) {
                    out.push((join(path, key), format!("only OpenBao has it ({ob_value})")));
                }
            }
        }
        (Value::Array(kw), Value::Array(ob)) => {
            if kw.len() != ob.len() && !volatile {
                out.push((
                    path.to_owned(),
                    format!("Keyward has {keyward}, OpenBao has {openbao}"),
                ));
                return;
            }
            for (index, (kw_item, ob_item)) in kw.iter().zip(ob).enumerate() {
                walk(
                    kw_item,
                    ob_item,
                    &join(path, &index.to_string()),
                    volatile,
                    out,
                );
            }
        }
        _ if volatile => {}
        // An unset deletion time is "" on both; a set one differs in its digits.
        (Value::String(kw), Value::String(ob)) if path.ends_with("deletion_time") => {
            if kw.is_empty() != ob.is_empty() {
                out.push((
                    path.to_owned(),
                    format!("Keyward has {kw:?}, OpenBao has {ob:?}"),
                ));
            }
        }
        _ => {
            if keyward != openbao {
                out.push((
                    path.to_owned(),
                    format!("Keyward has {keyward}, OpenBao has {openbao}"),
                ));
            }
        }
    }
}

#[test]
fn mask_times_replaces_rfc3339_timestamps() {
    assert_eq!(
        mask_times("created_time  2026-12-04T20:10:52.50681396Z\nx 2026-12-04T20:10:52Z."),
        "created_time  <time>\nx <time>."
    );
    assert_eq!(
        mask_times("at 2026-12-05T20:10:52.1+00:00 ok"),
        "at <time> ok"
    );
    assert_eq!(mask_times("version 2026"), "version 2026");
}

#[test]
fn mask_uuids_replaces_request_ids() {
    assert_eq!(
        mask_uuids("\"request_id\": \"6a23bccf-99a5-a31c-60da-90ed530092fd\","),
        "\"request_id\": \"<uuid>\","
    );
    assert_eq!(mask_uuids("not-a-uuid-at-all"), "not-a-uuid-at-all");
}

#[test]
fn mask_rows_keeps_column_alignment() {
    let table = "Key      Value\n---      -----\ntoken    s.abc\nttl      59m\npolicies [a]";
    assert_eq!(
        mask_rows(table),
        "Key      Value\n---      -----\ntoken    <masked>\nttl      <masked>\npolicies [a]"
    );
}

#[test]
fn compare_json_reports_key_type_and_value_differences() {
    let keyward = serde_json::json!({ "a": 1, "b": "x", "request_id": "1", "only_kw": true });
    let openbao = serde_json::json!({ "a": "1", "b": "y", "request_id": "2", "only_ob": null });
    let mut differences = compare_json(&keyward, &openbao, &[]);
    differences.sort();
    assert_eq!(differences.len(), 4, "{differences:?}");
    assert!(differences[0].starts_with("a: "), "{differences:?}");
    assert!(differences[1].starts_with("b: "), "{differences:?}");
    assert!(differences[2].starts_with("only_kw: "), "{differences:?}");
    assert!(differences[3].starts_with("only_ob: "), "{differences:?}");
}

#[test]
fn compare_json_skips_documented_exceptions() {
    let keyward = serde_json::json!({ "data": { "entity_id": "" } });
    let openbao = serde_json::json!({ "data": { "entity_id": null } });
    let exceptions = [Exception {
        path: "data.entity_id",
        reason: "test exception",
    }];
    assert!(compare_json(&keyward, &openbao, &exceptions).is_empty());
}
