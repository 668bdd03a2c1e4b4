//! Plaintext encodings of what the on-disk cache keeps: cached reads, token records and the
//! policy set. The disk cache encrypts these bytes; this module only lays them out.
//!
//! A cached read is `u32 (big-endian) length of the metadata JSON, metadata JSON, data JSON`,
//! so the secret's data goes into the buffer as the stored bytes and is never parsed into
//! intermediate JSON values here.

use std::collections::BTreeMap;

use keyward_store::{PolicyRecord, SecretData, Stage, TokenRecord, VersionMeta};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// Error decoding stored cache bytes.
#[derive(Debug, thiserror::Error)]
#[error("cached entry is malformed: {0}")]
pub(crate) struct CodecError(String);

fn malformed(what: impl std::fmt::Display) -> CodecError {
    CodecError(what.to_string())
}

/// Formats a time as RFC 3339.
pub(crate) fn format_time(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// Parses an RFC 3339 time.
pub(crate) fn parse_time(raw: &str) -> Result<OffsetDateTime, CodecError> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(malformed)
}

#[derive(Serialize, Deserialize)]
struct StoredReadMeta {
    version: u64,
    created_time: String,
    deletion_time: Option<String>,
    destroyed: bool,
    stage: Stage,
    created_by: String,
    grace_deadline: Option<String>,
    custom_metadata: BTreeMap<String, String>,
    has_data: bool,
}

/// A decoded cached read.
pub(crate) struct ReadParts {
    pub(crate) meta: VersionMeta,
    pub(crate) custom_metadata: BTreeMap<String, String>,
    pub(crate) data: Option<SecretData>,
}

/// Encodes a cached read into a zeroizing buffer.
pub(crate) fn encode_read(
    meta: &VersionMeta,
    custom_metadata: &BTreeMap<String, String>,
    data: Option<&SecretData>,
) -> Zeroizing<Vec<u8>> {
    let stored = StoredReadMeta {
        version: meta.version,
        created_time: format_time(meta.created_time),
        deletion_time: meta.deletion_time.map(format_time),
        destroyed: meta.destroyed,
        stage: meta.stage,
        created_by: meta.created_by.clone(),
        grace_deadline: meta.grace_deadline.map(format_time),
        custom_metadata: custom_metadata.clone(),
        has_data: data.is_some(),
    };
    // Serialising strings, numbers and a string map cannot fail.
    let meta_json = serde_json::to_vec(&stored).unwrap_or_default();
    let data_json = data.map_or(&[][..], SecretData::expose_json);

    let mut out = Zeroizing::new(Vec::with_capacity(4 + meta_json.len() + data_json.len()));
    let meta_len = u32::try_from(meta_json.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&meta_len.to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(data_json);
    out
}

/// Decodes what [`encode_read`] produced.
pub(crate) fn decode_read(bytes: &[u8]) -> Result<ReadParts, CodecError> {
    let (len_bytes, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| malformed("shorter than its length prefix"))?;
    let meta_len = usize::try_from(u32::from_be_bytes(*len_bytes)).map_err(malformed)?;
    if rest.len() < meta_len {
        return Err(malformed("metadata longer than the entry"));
    }
    let (meta_json, data_json) = rest.split_at(meta_len);
    let stored: StoredReadMeta = serde_json::from_slice(meta_json).map_err(malformed)?;

    let data = if stored.has_data {
        let data = SecretData::from_json_bytes(data_json.to_vec()).map_err(malformed)?;
        Some(data)
    } else {
        None
    };
    let meta = VersionMeta {
        version: stored.version,
        created_time: parse_time(&stored.created_time)?,
        deletion_time: stored
            .deletion_time
            .as_deref()
            .map(parse_time)
            .transpose()?,
        destroyed: stored.destroyed,
        stage: stored.stage,
        created_by: stored.created_by,
        grace_deadline: stored
            .grace_deadline
            .as_deref()
            .map(parse_time)
            .transpose()?,
    };
    Ok(ReadParts {
        meta,
        custom_metadata: stored.custom_metadata,
        data,
    })
}

#[derive(Serialize, Deserialize)]
struct StoredToken {
    token_hash: String,
    accessor: String,
    policies: Vec<String>,
    display_name: String,
    created_time: String,
    expire_time: Option<String>,
    creation_ttl_secs: u64,
    renewable: bool,
    parent_accessor: Option<String>,
    meta: BTreeMap<String, String>,
}

/// Encodes a token record (its keyed hash, never the token).
pub(crate) fn encode_token(record: &TokenRecord) -> Zeroizing<Vec<u8>> {
    let stored = StoredToken {
        token_hash: record.token_hash.clone(),
        accessor: record.accessor.clone(),
        policies: record.policies.clone(),
        display_name: record.display_name.clone(),
        created_time: format_time(record.created_time),
        expire_time: record.expire_time.map(format_time),
        creation_ttl_secs: record.creation_ttl_secs,
        renewable: record.renewable,
        parent_accessor: record.parent_accessor.clone(),
        meta: record.meta.clone(),
    };
    Zeroizing::new(serde_json::to_vec(&stored).unwrap_or_default())
}

/// Decodes what [`encode_token`] produced.
pub(crate) fn decode_token(bytes: &[u8]) -> Result<TokenRecord, CodecError> {
    let stored: StoredToken = serde_json::from_slice(bytes).map_err(malformed)?;
    Ok(TokenRecord {
        token_hash: stored.token_hash,
        accessor: stored.accessor,
        policies: stored.policies,
        display_name: stored.display_name,
        created_time: parse_time(&stored.created_time)?,
        expire_time: stored.expire_time.as_deref().map(parse_time).transpose()?,
        creation_ttl_secs: stored.creation_ttl_secs,
        renewable: stored.renewable,
        parent_accessor: stored.parent_accessor,
        meta: stored.meta,
    })
}

/// Encodes the policy set as a JSON map of name to source text.
pub(crate) fn encode_policies(policies: &[PolicyRecord]) -> Zeroizing<Vec<u8>> {
    let map: BTreeMap<&str, &str> = policies
        .iter()
        .map(|p| (p.name.as_str(), p.text.as_str()))
        .collect();
    Zeroizing::new(serde_json::to_vec(&map).unwrap_or_default())
}

/// Decodes what [`encode_policies`] produced.
pub(crate) fn decode_policies(bytes: &[u8]) -> Result<Vec<PolicyRecord>, CodecError> {
    let map: BTreeMap<String, String> = serde_json::from_slice(bytes).map_err(malformed)?;
    Ok(map
        .into_iter()
        .map(|(name, text)| PolicyRecord { name, text })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn read_round_trips() {
        let meta = VersionMeta {
            version: 4,
            created_time: datetime!(2026-12-04 20:01:07.5 UTC),
            deletion_time: None,
            destroyed: false,
            stage: Stage::Current,
            created_by: "acc".into(),
            grace_deadline: Some(datetime!(2026-12-05 0:00 UTC)),
        };
        let custom = BTreeMap::from([("owner".to_owned(), "ops".to_owned())]);
        let value = json!({ "password": "p4", "n": 1 });
        let data = value.as_object().map(SecretData::from_map);

        let bytes = encode_read(&meta, &custom, data.as_ref());
        let decoded = decode_read(&bytes).expect("decodes");

        assert_eq!(decoded.meta, meta);
        assert_eq!(decoded.custom_metadata, custom);
        let decoded_data = decoded.data.expect("data kept");
        assert_eq!(serde_json::Value::Object(decoded_data.expose_map()), value);
    }

    #[test]
    fn read_without_data_round_trips() {
        let meta = VersionMeta {
            version: 1,
            created_time: datetime!(2026-12-04 20:01:07 UTC),
            deletion_time: Some(datetime!(2026-12-04 21:00 UTC)),
            destroyed: false,
            stage: Stage::Previous,
            created_by: "acc".into(),
            grace_deadline: None,
        };
        let bytes = encode_read(&meta, &BTreeMap::new(), None);
        let decoded = decode_read(&bytes).expect("decodes");
        assert!(decoded.data.is_none());
        assert_eq!(decoded.meta, meta);
    }

    #[test]
    fn truncated_read_is_rejected() {
        assert!(decode_read(&[0, 0]).is_err());
        assert!(decode_read(&[0, 0, 0, 9, b'{']).is_err());
    }

    #[test]
    fn token_and_policies_round_trip() {
        let token = TokenRecord {
            token_hash: "ab12".into(),
            accessor: "acc".into(),
            policies: vec!["default".into()],
            display_name: "app".into(),
            created_time: datetime!(2026-12-04 20:00 UTC),
            expire_time: Some(datetime!(2026-12-05 20:00 UTC)),
            creation_ttl_secs: 86_400,
            renewable: true,
            parent_accessor: None,
            meta: BTreeMap::new(),
        };
        assert_eq!(decode_token(&encode_token(&token)).expect("decodes"), token);

        let policies = vec![PolicyRecord {
            name: "read".into(),
            text: "path \"secret/*\" { capabilities = [\"read\"] }".into(),
        }];
        assert_eq!(
            decode_policies(&encode_policies(&policies)).expect("decodes"),
            policies
        );
    }
}
