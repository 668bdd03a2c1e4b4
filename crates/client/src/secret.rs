//! Secret values as the client returns them: zeroized on drop, redacted in `Debug`, exposed only
//! through an explicit call.
//!
//! Bytes that pass through reqwest and serde_json before they land here are not zeroized: the
//! guarantee covers the copies this crate keeps (cache entries and returned values).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// One secret string, such as an API key or a password.
#[derive(Clone)]
pub struct SecretValue(Arc<Zeroizing<String>>);

impl SecretValue {
    /// Wraps a string; the original allocation is moved, not copied.
    pub fn new(value: String) -> Self {
        Self(Arc::new(Zeroizing::new(value)))
    }

    /// Returns the value. Every call site is a place where the secret leaves its wrapper.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Compares with `other` in constant time; only the lengths may be learned from timing.
    pub fn ct_eq(&self, other: &str) -> bool {
        self.expose().as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// One version of a secret: its fields and version number.
#[derive(Clone)]
pub struct Secret {
    version: u64,
    /// The `data` object as JSON text, for [`Secret::deserialize`].
    json: Arc<Zeroizing<String>>,
    fields: BTreeMap<String, SecretValue>,
}

impl Secret {
    /// Builds a secret from the JSON text of a KV `data` object. String fields are kept as they
    /// are; other JSON values (numbers, booleans, objects) as their JSON text.
    pub(crate) fn from_json(version: u64, json: Zeroizing<String>) -> Result<Self, String> {
        let parsed: serde_json::Map<String, Value> = serde_json::from_str(&json)
            .map_err(|_| "secret data is not a JSON object".to_owned())?;
        let fields = parsed
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (key, SecretValue::new(text))
            })
            .collect();
        Ok(Self {
            version,
            json: Arc::new(json),
            fields,
        })
    }

    /// Builds a secret from fields, for values that come from the environment fallback.
    pub(crate) fn from_fields(fields: BTreeMap<String, SecretValue>) -> Self {
        let map: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.expose().to_owned())))
            .collect();
        Self {
            version: 0,
            json: Arc::new(Zeroizing::new(Value::Object(map).to_string())),
            fields,
        }
    }

    /// The version number; 0 for a secret assembled from the environment fallback.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Returns one field.
    pub fn field(&self, key: &str) -> Option<&SecretValue> {
        self.fields.get(key)
    }

    /// Iterates over the field names and values in name order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.fields.iter().map(|(key, value)| (key.as_str(), value))
    }

    /// Deserializes the whole `data` object into `T`. Its error may quote a value, so callers
    /// turn it into [`crate::Error::Decode`] with only its category and position.
    pub(crate) fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.json)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("version", &self.version)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "kw-canary-secret-unit";

    #[test]
    fn debug_output_hides_values() {
        let secret = Secret::from_json(
            3,
            Zeroizing::new(format!(r#"{{"api_key":"{CANARY}","port":5432}}"#)),
        )
        .expect("valid JSON object");
        let shown = format!("{secret:?} {:?}", secret.field("api_key"));
        assert!(!shown.contains(CANARY), "{shown}");
        assert!(shown.contains("api_key"), "{shown}");
    }

    #[test]
    fn non_string_fields_become_json_text() {
        let secret = Secret::from_json(1, Zeroizing::new(r#"{"port":5432,"tls":true}"#.into()))
            .expect("valid JSON object");
        assert_eq!(secret.field("port").map(SecretValue::expose), Some("5432"));
        assert_eq!(secret.field("tls").map(SecretValue::expose), Some("true"));
    }

    #[test]
    fn non_object_data_is_rejected() {
        assert!(Secret::from_json(1, Zeroizing::new("[1,2]".into())).is_err());
    }

    #[test]
    fn constant_time_compare_matches_equality() {
        let value = SecretValue::new("abc".into());
        assert!(value.ct_eq("abc"));
        assert!(!value.ct_eq("abd"));
        assert!(!value.ct_eq("abcd"));
    }
}
