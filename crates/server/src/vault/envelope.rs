//! Vault's JSON response shapes and value formats.
//!
//! Every successful response with a body is an envelope:
//! `{"request_id","lease_id":"","renewable":false,"lease_duration":0,"data","wrap_info":null,
//! "warnings","auth"}`, with the fields in the order OpenBao 2.7 sends them. Times are RFC 3339
//! in UTC with up to nine fractional digits and trailing zeros dropped, as Go's
//! `time.RFC3339Nano` writes them. Durations in metadata are Go duration strings (`1h0m0s`).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use zeroize::Zeroize;

/// The `auth` block of token responses.
///
/// It carries a token, so it has no `Debug` and zeroizes the token on drop.
#[derive(Serialize)]
pub(crate) struct AuthBlock {
    pub client_token: String,
    pub accessor: String,
    pub policies: Vec<String>,
    pub token_policies: Vec<String>,
    /// `null` when the token has no metadata, as in Vault.
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    pub lease_duration: u64,
    pub renewable: bool,
    pub entity_id: &'static str,
    pub token_type: &'static str,
    pub orphan: bool,
    pub mfa_requirement: Option<()>,
    pub num_uses: u64,
}

impl Drop for AuthBlock {
    fn drop(&mut self) {
        self.client_token.zeroize();
    }
}

#[derive(Serialize)]
struct EnvelopeBody<'a> {
    request_id: &'a str,
    lease_id: &'static str,
    renewable: bool,
    lease_duration: u64,
    data: Option<&'a Value>,
    wrap_info: Option<()>,
    warnings: Option<&'a [String]>,
    auth: Option<&'a AuthBlock>,
}

/// A Vault response envelope under construction.
pub(crate) struct Envelope<'a> {
    request_id: &'a str,
    data: Option<Value>,
    warnings: Option<Vec<String>>,
    auth: Option<AuthBlock>,
}

impl<'a> Envelope<'a> {
    /// Creates an envelope whose `data` is `data`.
    pub fn data(request_id: &'a str, data: Value) -> Self {
        Self {
            request_id,
            data: Some(data),
            warnings: None,
            auth: None,
        }
    }

    /// Creates an envelope with `data: null` and an `auth` block.
    pub fn auth(request_id: &'a str, auth: AuthBlock) -> Self {
        Self {
            request_id,
            data: None,
            warnings: None,
            auth: Some(auth),
        }
    }

    /// Creates an envelope with `data: null` and warnings.
    pub fn warnings(request_id: &'a str, warnings: Vec<String>) -> Self {
        Self {
            request_id,
            data: None,
            warnings: Some(warnings),
            auth: None,
        }
    }

    fn body(&self) -> EnvelopeBody<'_> {
        EnvelopeBody {
            request_id: self.request_id,
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: self.data.as_ref(),
            wrap_info: None,
            warnings: self.warnings.as_deref(),
            auth: self.auth.as_ref(),
        }
    }

    /// Serialises the envelope as a JSON object.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self.body()).unwrap_or(Value::Null)
    }

    /// Builds the HTTP response.
    pub fn into_response(self, status: StatusCode) -> Response {
        // serde_json fails only on maps with non-string keys and failing `Serialize` impls,
        // and the envelope has neither.
        let bytes = serde_json::to_vec(&self.body()).unwrap_or_default();
        json_response(status, bytes)
    }
}

/// Builds the body of a KV read: the secret's JSON goes into `data.data` as the stored bytes,
/// without being parsed into intermediate values that would not be zeroized.
pub(crate) fn secret_read_body(
    request_id: &str,
    secret_json: Option<&[u8]>,
    metadata: &Value,
) -> Vec<u8> {
    let request_id = serde_json::to_string(request_id).unwrap_or_else(|_| "\"\"".into());
    let metadata = serde_json::to_string(metadata).unwrap_or_else(|_| "null".into());
    let secret_len = secret_json.map_or(4, <[u8]>::len);

    let mut body = Vec::with_capacity(200 + request_id.len() + metadata.len() + secret_len);
    body.extend_from_slice(b"{\"request_id\":");
    body.extend_from_slice(request_id.as_bytes());
    body.extend_from_slice(
        b",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,\"data\":{\"data\":",
    );
    body.extend_from_slice(secret_json.unwrap_or(b"null"));
    body.extend_from_slice(b",\"metadata\":");
    body.extend_from_slice(metadata.as_bytes());
    body.extend_from_slice(b"},\"wrap_info\":null,\"warnings\":null,\"auth\":null}");
    body
}

/// Builds a response with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Builds `204 No Content`, Vault's response to writes that return nothing.
pub(crate) fn no_content() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Formats a time as Go's `time.RFC3339Nano` does in UTC: `2026-12-04T19:55:13.123456789Z`,
/// trailing zeros of the fraction dropped, and no fraction at all on a whole second.
pub(crate) fn format_time(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    );
    let nanos = utc.nanosecond();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Formats an optional time; Vault sends `""` for an unset `deletion_time`.
pub(crate) fn format_optional_time(time: Option<OffsetDateTime>) -> String {
    time.map(format_time).unwrap_or_default()
}

/// Formats whole seconds as Go's `time.Duration.String` does: `0s`, `1m30s`, `1h0m0s`.
pub(crate) fn format_go_duration(total_secs: u64) -> String {
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let seconds = total_secs % 60;
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn time_keeps_nanoseconds_and_ends_in_z() {
        let time = datetime!(2026-12-04 19:55:13.123456789 UTC);
        assert_eq!(format_time(time), "2026-12-04T19:55:13.123456789Z");
    }

    #[test]
    fn time_drops_trailing_zeros_like_go() {
        assert_eq!(
            format_time(datetime!(2026-12-04 20:02:27.397547630 UTC)),
            "2026-12-04T20:02:27.39754763Z"
        );
        assert_eq!(
            format_time(datetime!(2026-12-04 20:02:27 UTC)),
            "2026-12-04T20:02:27Z"
        );
    }

    #[test]
    fn time_is_converted_to_utc() {
        let time = datetime!(2026-12-04 21:00:00.5 +01:00);
        assert_eq!(format_time(time), "2026-12-04T20:00:00.5Z");
    }

    #[test]
    fn unset_time_is_empty_string() {
        assert_eq!(format_optional_time(None), "");
    }

    #[test]
    fn go_duration_matches_go_format() {
        assert_eq!(format_go_duration(0), "0s");
        assert_eq!(format_go_duration(90), "1m30s");
        assert_eq!(format_go_duration(3600), "1h0m0s");
        assert_eq!(format_go_duration(2_764_800), "768h0m0s");
    }

    #[test]
    fn envelope_has_vault_fields() {
        let value = Envelope::data("req-1", json!({ "keys": ["a"] })).to_value();
        assert_eq!(
            value,
            json!({
                "request_id": "req-1",
                "lease_id": "",
                "renewable": false,
                "lease_duration": 0,
                "data": { "keys": ["a"] },
                "wrap_info": null,
                "warnings": null,
                "auth": null,
            })
        );
    }

    #[test]
    fn secret_body_embeds_raw_json() {
        let metadata = json!({ "version": 2, "destroyed": false });
        let body = secret_read_body("req-\"2", Some(br#"{"a":"b","n":1}"#), &metadata);
        let parsed: Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(parsed["request_id"], "req-\"2");
        assert_eq!(parsed["data"]["data"], json!({ "a": "b", "n": 1 }));
        assert_eq!(parsed["data"]["metadata"], metadata);
        assert_eq!(parsed["wrap_info"], Value::Null);
    }

    #[test]
    fn deleted_secret_body_has_null_data() {
        let body = secret_read_body("r", None, &json!({ "version": 1 }));
        let parsed: Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(parsed["data"]["data"], Value::Null);
        assert_eq!(parsed["data"]["metadata"]["version"], 1);
    }
}
