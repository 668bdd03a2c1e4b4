//! KV v2 routes on the `secret/` mount: `data`, `delete`, `undelete`, `destroy` and
//! `metadata`, with the request and response bodies of Vault's KV v2 API.
//!
//! Secret data is passed to the manager as the raw JSON bytes of the request's `data` field
//! and returned as the stored bytes. So it is not parsed into intermediate values here, except
//! for PATCH, whose merge patch the manager needs as a JSON object.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use keyward_manager::{Caller, Freshness};
use keyward_store::{MetadataUpdate, SecretData, SecretMeta, SecretPath, VersionMeta};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::ApiRequest;
use super::envelope::{
    Envelope, format_go_duration, format_optional_time, format_time, json_response, no_content,
    secret_read_body,
};
use super::params::{
    VersionList, json_body, json_body_borrowed, optional_duration, optional_lenient_u64,
};
use super::routes::{Operation, VersionAction, metadata_folder, metadata_secret};
use crate::errors::{ApiError, Rejection};
use crate::request::AppState;

/// Media type Vault requires on PATCH requests.
const MERGE_PATCH: &str = "application/merge-patch+json";

/// Set to `true` on a read served from the cache while the storage backend fails.
const STALE_HEADER: HeaderName = HeaderName::from_static("x-keyward-stale");
/// The stale read's last successful sync with the backend, RFC 3339.
const LAST_SYNC_HEADER: HeaderName = HeaderName::from_static("x-keyward-last-sync");
/// Set to `env` on a read served from the environment-variable fallback.
const SOURCE_HEADER: HeaderName = HeaderName::from_static("x-keyward-source");

#[derive(Deserialize)]
struct WriteBody<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    options: Option<WriteOptions>,
}

#[derive(Deserialize)]
struct PatchBody {
    data: Option<Map<String, Value>>,
    #[serde(default)]
    options: Option<WriteOptions>,
}

#[derive(Deserialize, Default)]
struct WriteOptions {
    #[serde(default, deserialize_with = "optional_lenient_u64")]
    cas: Option<u64>,
}

#[derive(Deserialize)]
struct VersionsBody {
    #[serde(default)]
    versions: VersionList,
}

#[derive(Deserialize)]
struct MetadataBody {
    #[serde(default, deserialize_with = "optional_lenient_u64")]
    max_versions: Option<u64>,
    #[serde(default)]
    cas_required: Option<bool>,
    #[serde(default, deserialize_with = "optional_duration")]
    delete_version_after: Option<u64>,
    #[serde(default)]
    custom_metadata: Option<BTreeMap<String, String>>,
}

fn no_data() -> Rejection {
    Rejection::bad_request("invalid_request", "no data provided")
}

/// `secret/data/<path>`: read, write, patch or delete the latest version.
pub(super) async fn data(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    path: &SecretPath,
) -> Result<Response, ApiError> {
    let manager = &state.manager;
    let ctx = request.ctx;
    match request.operation {
        Operation::Read => {
            // Vault reads the latest version for `?version=0` too.
            let version = request.query.unsigned("version")?.filter(|v| *v > 0);
            let read = manager.kv_read(caller, ctx, path, version).await?;

            let metadata = version_metadata(&read.meta, &read.custom_metadata);
            let secret = read.data.as_ref().map(SecretData::expose_json);
            // A deleted or destroyed version is 404 with its metadata, as in Vault.
            let status = if secret.is_some() {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            let body = secret_read_body(&ctx.request_id, secret, &metadata);
            let mut response = json_response(status, body);
            mark_freshness(response.headers_mut(), &read.freshness);
            Ok(response)
        }
        Operation::Write => {
            let body: WriteBody<'_> = json_body_borrowed(&request.body)?;
            let raw = body.data.ok_or_else(no_data)?;
            let data = SecretData::from_json_bytes(raw.get().as_bytes().to_vec())
                .map_err(|error| Rejection::bad_request("invalid_request", error.to_string()))?;
            let cas = body.options.unwrap_or_default().cas;

            let written = manager.kv_write(caller, ctx, path, data, cas).await?;
            let metadata = version_metadata(&written, &BTreeMap::new());
            Ok(Envelope::data(&ctx.request_id, metadata).into_response(StatusCode::OK))
        }
        Operation::Patch => {
            require_merge_patch(&request.headers)?;
            let body: PatchBody = json_body(&request.body)?;
            let patch = body.data.ok_or_else(no_data)?;
            let cas = body.options.unwrap_or_default().cas;

            let written = manager.kv_patch(caller, ctx, path, patch, cas).await?;
            let metadata = version_metadata(&written, &BTreeMap::new());
            Ok(Envelope::data(&ctx.request_id, metadata).into_response(StatusCode::OK))
        }
        Operation::Delete => {
            manager.kv_delete(caller, ctx, path, &[]).await?;
            Ok(no_content())
        }
        Operation::Head | Operation::List => Err(Rejection::unsupported_operation().into()),
    }
}

/// `secret/{delete,undelete,destroy}/<path>` with `{"versions": [...]}`.
pub(super) async fn versions(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    action: VersionAction,
    path: &SecretPath,
) -> Result<Response, ApiError> {
    let body: VersionsBody = json_body(&request.body)?;
    let versions = body.versions.into_checked()?;
    if versions.is_empty() {
        return Err(Rejection::bad_request("invalid_request", "no version number provided").into());
    }

    let manager = &state.manager;
    let ctx = request.ctx;
    match action {
        VersionAction::Delete => manager.kv_delete(caller, ctx, path, &versions).await?,
        VersionAction::Undelete => manager.kv_undelete(caller, ctx, path, &versions).await?,
        VersionAction::Destroy => manager.kv_destroy(caller, ctx, path, &versions).await?,
    }
    Ok(no_content())
}

/// `secret/metadata/<path>`: list a folder, or read, write or delete a secret's metadata.
pub(super) async fn metadata(
    state: &AppState,
    request: &ApiRequest<'_>,
    caller: &Caller,
    raw: &str,
) -> Result<Response, ApiError> {
    let manager = &state.manager;
    let ctx = request.ctx;
    match request.operation {
        Operation::List => {
            let folder = metadata_folder(raw)?;
            let keys = manager.kv_list(caller, ctx, &folder).await?;
            Ok(Envelope::data(&ctx.request_id, json!({ "keys": keys }))
                .into_response(StatusCode::OK))
        }
        Operation::Read => {
            let path = metadata_secret(raw)?;
            let meta = manager.kv_read_metadata(caller, ctx, &path).await?;
            Ok(Envelope::data(&ctx.request_id, secret_metadata(&meta))
                .into_response(StatusCode::OK))
        }
        Operation::Write => {
            let path = metadata_secret(raw)?;
            let body: MetadataBody = json_body(&request.body)?;
            let update = metadata_update(body)?;
            manager
                .kv_write_metadata(caller, ctx, &path, update)
                .await?;
            Ok(no_content())
        }
        Operation::Delete => {
            let path = metadata_secret(raw)?;
            manager.kv_delete_metadata(caller, ctx, &path).await?;
            Ok(no_content())
        }
        Operation::Head | Operation::Patch => Err(Rejection::unsupported_operation().into()),
    }
}

fn metadata_update(body: MetadataBody) -> Result<MetadataUpdate, Rejection> {
    let max_versions = body
        .max_versions
        .map(u32::try_from)
        .transpose()
        .map_err(|_| Rejection::bad_request("invalid_request", "max_versions is too large"))?;
    Ok(MetadataUpdate {
        max_versions,
        cas_required: body.cas_required,
        delete_version_after_secs: body.delete_version_after,
        custom_metadata: body.custom_metadata,
    })
}

/// Adds the headers that tell a client its read was not served by the backend.
fn mark_freshness(headers: &mut HeaderMap, freshness: &Freshness) {
    match freshness {
        Freshness::Fresh => {}
        Freshness::Stale { last_sync } => {
            headers.insert(STALE_HEADER, HeaderValue::from_static("true"));
            let formatted = last_sync.format(&time::format_description::well_known::Rfc3339);
            if let Ok(formatted) = formatted
                && let Ok(value) = HeaderValue::try_from(formatted)
            {
                headers.insert(LAST_SYNC_HEADER, value);
            }
        }
        Freshness::EnvFallback => {
            headers.insert(STALE_HEADER, HeaderValue::from_static("true"));
            headers.insert(SOURCE_HEADER, HeaderValue::from_static("env"));
        }
    }
}

/// Rejects a PATCH whose `Content-Type` is not `application/merge-patch+json` (415).
fn require_merge_patch(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(Rejection::unsupported_media_type("no Content-Type"));
    };
    let provided = value.to_str().unwrap_or("");
    let media_type = provided.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case(MERGE_PATCH) {
        return Ok(());
    }
    let shown: String = provided.chars().take(64).collect();
    Err(Rejection::unsupported_media_type(&shown))
}

/// `null` for an empty map, as Go encodes a nil map.
fn map_or_null(map: &BTreeMap<String, String>) -> Value {
    if map.is_empty() {
        Value::Null
    } else {
        json!(map)
    }
}

/// A version's metadata as KV v2 returns it with reads and writes.
fn version_metadata(meta: &VersionMeta, custom_metadata: &BTreeMap<String, String>) -> Value {
    json!({
        "created_time": format_time(meta.created_time),
        "custom_metadata": map_or_null(custom_metadata),
        "deletion_time": format_optional_time(meta.deletion_time),
        "destroyed": meta.destroyed,
        "version": meta.version,
    })
}

/// A secret's metadata as `secret/metadata/<path>` returns it.
///
/// OpenBao 2.7 also sends `current_metadata_version`, a counter of metadata writes that
/// Keyward does not keep, so it is left out.
fn secret_metadata(meta: &SecretMeta) -> Value {
    let versions: Map<String, Value> = meta
        .versions
        .iter()
        .map(|(number, version)| {
            let entry = json!({
                "created_time": format_time(version.created_time),
                "deletion_time": format_optional_time(version.deletion_time),
                "destroyed": version.destroyed,
            });
            (number.to_string(), entry)
        })
        .collect();
    json!({
        "cas_required": meta.cas_required,
        "created_time": format_time(meta.created_time),
        "current_version": meta.current_version,
        "custom_metadata": map_or_null(&meta.custom_metadata),
        "delete_version_after": format_go_duration(meta.delete_version_after_secs),
        "max_versions": meta.max_versions,
        "metadata_cas_required": false,
        "oldest_version": meta.oldest_version,
        "updated_time": format_time(meta.updated_time),
        "versions": versions,
    })
}

/// Parses `bytes` as the JSON body of every KV v2 route and its query parameters, as the
/// handlers do, and discards the results. Only the fuzz targets call this: each input must
/// produce a value or a rejection, never a panic.
#[doc(hidden)]
pub fn parse_kv_request_parts(bytes: &[u8]) {
    if let Ok(body) = json_body_borrowed::<WriteBody<'_>>(bytes)
        && let Some(raw) = body.data
    {
        let _ = SecretData::from_json_bytes(raw.get().as_bytes().to_vec());
    }
    let _ = json_body::<PatchBody>(bytes);
    if let Ok(body) = json_body::<VersionsBody>(bytes) {
        let _ = body.versions.into_checked();
    }
    if let Ok(body) = json_body::<MetadataBody>(bytes) {
        let _ = metadata_update(body);
    }

    // The same bytes as a path and query string, as the router receives them.
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = metadata_secret(text);
        let _ = metadata_folder(text);
        if let Ok(uri) = format!("/v1/secret/data/x?{text}").parse::<axum::http::Uri>()
            && let Ok(query) = super::params::QueryParams::from_uri(&uri)
        {
            let _ = query.flag("list");
            let _ = query.unsigned("version");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use keyward_store::Stage;
    use time::macros::datetime;

    fn version(number: u64) -> VersionMeta {
        VersionMeta {
            version: number,
            created_time: datetime!(2026-12-04 20:01:07.798706962 UTC),
            deletion_time: None,
            destroyed: false,
            stage: Stage::Current,
            created_by: "acc".into(),
            grace_deadline: None,
        }
    }

    #[test]
    fn version_metadata_matches_vault_shape() {
        let value = version_metadata(&version(1), &BTreeMap::new());
        assert_eq!(
            value,
            json!({
                "created_time": "2026-12-04T20:01:07.798706962Z",
                "custom_metadata": null,
                "deletion_time": "",
                "destroyed": false,
                "version": 1,
            })
        );
    }

    #[test]
    fn secret_metadata_lists_versions_by_number() {
        let meta = SecretMeta {
            created_time: datetime!(2026-12-04 20:01:07 UTC),
            updated_time: datetime!(2026-12-04 20:01:09 UTC),
            current_version: 2,
            oldest_version: 1,
            max_versions: 5,
            cas_required: false,
            delete_version_after_secs: 3600,
            custom_metadata: BTreeMap::from([("owner".to_owned(), "ops".to_owned())]),
            versions: BTreeMap::from([(1, version(1)), (2, version(2))]),
        };
        let value = secret_metadata(&meta);
        assert_eq!(value["delete_version_after"], "1h0m0s");
        assert_eq!(value["custom_metadata"], json!({ "owner": "ops" }));
        assert_eq!(value["versions"]["2"]["deletion_time"], "");
        assert_eq!(value["max_versions"], 5);
    }

    #[test]
    fn merge_patch_content_type_is_required() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            require_merge_patch(&headers).map_err(|r| r.status),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(require_merge_patch(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/Merge-Patch+JSON; charset=utf-8"),
        );
        assert!(require_merge_patch(&headers).is_ok());
    }

    #[test]
    fn stale_read_gets_stale_headers() {
        let mut headers = HeaderMap::new();
        mark_freshness(
            &mut headers,
            &Freshness::Stale {
                last_sync: datetime!(2026-12-04 20:01:07 UTC),
            },
        );
        assert_eq!(
            headers.get("x-keyward-stale").map(|v| v.as_bytes()),
            Some(&b"true"[..])
        );
        assert_eq!(
            headers.get("x-keyward-last-sync").map(|v| v.as_bytes()),
            Some(&b"2026-12-04T20:01:07Z"[..])
        );

        let mut fresh = HeaderMap::new();
        mark_freshness(&mut fresh, &Freshness::Fresh);
        assert!(fresh.is_empty());

        let mut env = HeaderMap::new();
        mark_freshness(&mut env, &Freshness::EnvFallback);
        assert_eq!(
            env.get("x-keyward-source").map(|v| v.as_bytes()),
            Some(&b"env"[..])
        );
    }

    #[test]
    fn oversized_max_versions_is_rejected() {
        let body: MetadataBody = json_body(br#"{"max_versions": 99999999999}"#).expect("parses");
        assert!(metadata_update(body).is_err());
    }

    #[test]
    fn metadata_body_reads_vault_fields() {
        let body: MetadataBody = json_body(
            br#"{"max_versions":"5","cas_required":true,"delete_version_after":"1h","custom_metadata":{"o":"p"}}"#,
        )
        .expect("parses");
        let update = metadata_update(body).expect("valid");
        assert_eq!(update.max_versions, Some(5));
        assert_eq!(update.cas_required, Some(true));
        assert_eq!(update.delete_version_after_secs, Some(3600));
        assert_eq!(update.custom_metadata.map(|m| m.len()), Some(1));
    }

    #[test]
    fn write_body_keeps_data_raw() {
        let body: WriteBody<'_> =
            json_body_borrowed(br#"{"data":{"k":"v\n"},"options":{"cas":"2"}}"#).expect("parses");
        assert_eq!(body.data.map(RawValue::get), Some(r#"{"k":"v\n"}"#));
        assert_eq!(body.options.unwrap_or_default().cas, Some(2));
    }
}
