//! The value type that carries generated and provider-issued credentials.
//!
//! It zeroizes its buffer on drop, prints `[REDACTED]` in `Debug`, has no `Display` or
//! `Serialize`, and compares in constant time. It does not encrypt anything: encryption at rest
//! is the secret store's job.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A credential value: an API key, a password or any other secret string.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// Wraps a value; the caller's `String` moves in and is zeroized when this is dropped.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// Returns the value. Callers must not log, print or persist it in plaintext.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Compares two values in constant time (for equal lengths).
    pub fn ct_eq(&self, other: &SecretValue) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_value() {
        let value = SecretValue::new("sk-very-secret".to_owned());
        let printed = format!("{value:?}");
        assert!(!printed.contains("very-secret"));
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn equal_values_compare_equal() {
        let a = SecretValue::new("abc".to_owned());
        assert!(a.ct_eq(&SecretValue::new("abc".to_owned())));
        assert!(!a.ct_eq(&SecretValue::new("abd".to_owned())));
        assert!(!a.ct_eq(&SecretValue::new("abcd".to_owned())));
    }
}
