//! Conversions between the store's records and SQLite column values.
//!
//! Times are stored as INTEGER nanoseconds since the Unix epoch (UTC). That keeps the
//! precision Vault's RFC 3339 output needs and sorts correctly, but the range ends in 2262.
//! Unsigned counters are stored as INTEGER, which SQLite keeps as a signed 64-bit value.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::model::Stage;
use crate::store::StoreError;

/// Maps a driver error to [`StoreError::Backend`]. sqlx errors carry the SQL text and SQLite's
/// message, never bound values, so no secret reaches the message.
pub(super) fn backend_error(err: sqlx::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// Converts a time to stored nanoseconds.
pub(super) fn time_to_nanos(time: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(time.unix_timestamp_nanos())
        .map_err(|_| StoreError::Invalid(format!("time {time} is outside the storable range")))
}

/// Converts stored nanoseconds back to a UTC time.
pub(super) fn nanos_to_time(nanos: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|_| StoreError::Corrupt(format!("stored time {nanos} is out of range")))
}

/// Converts an optional stored time.
pub(super) fn optional_time(nanos: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    nanos.map(nanos_to_time).transpose()
}

/// Converts a request counter (version, seconds) to a column value.
pub(super) fn to_column(value: u64, field: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{field} {value} is too large")))
}

/// Converts a stored counter back; a negative value means the row was edited outside the store.
pub(super) fn from_column(value: i64, field: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("stored {field} {value} is negative")))
}

/// Parses a stored stage name.
pub(super) fn parse_stage(raw: &str) -> Result<Stage, StoreError> {
    Stage::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("unknown stored stage {raw:?}")))
}

/// Serialises a string map (custom metadata, token meta) as a JSON object.
pub(super) fn map_to_json(map: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises.
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

/// Parses a stored JSON object of strings.
pub(super) fn json_to_map(raw: &str, field: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(raw).map_err(|err| {
        StoreError::Corrupt(format!("stored {field} is not a JSON string map: {err}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips_with_nanoseconds() {
        let time = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .expect("test time is valid");
        let nanos = time_to_nanos(time).expect("time fits");
        assert_eq!(nanos, 1_700_000_000_123_456_789);
        assert_eq!(nanos_to_time(nanos).expect("nanos convert back"), time);
    }

    #[test]
    fn time_after_2262_is_rejected() {
        let far = OffsetDateTime::from_unix_timestamp(i64::MAX / 1_000_000_000 + 1)
            .expect("test time is valid");
        assert!(matches!(time_to_nanos(far), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn counters_outside_i64_are_rejected() {
        assert_eq!(to_column(7, "version").expect("small value fits"), 7);
        assert!(matches!(
            to_column(u64::MAX, "version"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            from_column(-1, "version"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn string_map_round_trips_through_json() {
        let map = BTreeMap::from([("owner".to_owned(), "team-a".to_owned())]);
        let json = map_to_json(&map);
        assert_eq!(
            json_to_map(&json, "custom metadata").expect("json parses"),
            map
        );
        assert!(matches!(
            json_to_map("[1]", "custom metadata"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn unknown_stage_is_corrupt() {
        assert_eq!(
            parse_stage("previous").expect("known stage"),
            Stage::Previous
        );
        assert!(matches!(parse_stage("gone"), Err(StoreError::Corrupt(_))));
    }
}
