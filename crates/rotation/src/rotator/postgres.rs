//! A rotator for PostgreSQL login roles.
//!
//! With one role, `set` changes its password and the old password stops working at once, so
//! clients must pick up the new version before the next connection. With an alternate role, the
//! two roles take turns: each rotation sets the password of the role the current version does
//! not use, both logins work during the grace period, and `revoke` removes the old role's
//! password afterwards. Each version stores its role as the `username` attribute.
//!
//! The password never reaches the server in clear text: `set` sends a SCRAM-SHA-256 verifier
//! computed here (as `psql`'s `\password` does), so statement logs on the server hold no
//! password. `test` logs in as the role with the new password over the admin URL's host.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use zeroize::Zeroizing;

use super::{Credential, Prepared, RollBack, Rotator, RotatorError, VersionRef, read_own_secret};
use crate::secret::SecretValue;
use crate::target::SecretSource;

const NAME: &str = "postgres";

/// PostgreSQL's default SCRAM iteration count (`scram_iterations`, PostgreSQL 16 and earlier).
const SCRAM_ITERATIONS: u32 = 4096;

/// Rotates the password of one login role, or alternates between two.
pub struct PostgresRotator {
    source: Arc<dyn SecretSource>,
    admin_url_secret: String,
    role: String,
    alternate_role: Option<String>,
}

impl PostgresRotator {
    /// Creates a rotator; the admin URL is read from `admin_url_secret` on every call.
    pub fn new(
        source: Arc<dyn SecretSource>,
        admin_url_secret: String,
        role: String,
        alternate_role: Option<String>,
    ) -> Self {
        Self {
            source,
            admin_url_secret,
            role,
            alternate_role,
        }
    }

    async fn admin_options(&self) -> Result<PgConnectOptions, RotatorError> {
        let url = read_own_secret(self.source.as_ref(), NAME, &self.admin_url_secret).await?;
        // The parser's message may quote the URL, which contains the admin password.
        PgConnectOptions::from_str(url.expose_secret())
            .map(|options| options.disable_statement_logging())
            .map_err(|_| {
                RotatorError::new(
                    NAME,
                    "read the admin URL",
                    format!(
                        "secret {:?} is not a valid PostgreSQL URL",
                        self.admin_url_secret
                    ),
                )
            })
    }

    async fn execute(&self, operation: &'static str, statement: &str) -> Result<(), RotatorError> {
        let options = self.admin_options().await?;
        let mut connection = options.connect().await.map_err(|error| {
            RotatorError::new(NAME, operation, format!("admin login failed: {error}"))
        })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut connection)
            .await
            .map_err(|error| RotatorError::new(NAME, operation, error.to_string()))?;
        Ok(())
    }

    async fn set_password(
        &self,
        operation: &'static str,
        role: &str,
        password: Option<&SecretValue>,
    ) -> Result<(), RotatorError> {
        let literal = match password {
            Some(password) => quote_literal(
                &scram_verifier(password)
                    .map_err(|reason| RotatorError::new(NAME, operation, reason))?,
            ),
            None => Zeroizing::new("NULL".to_owned()),
        };
        let statement = Zeroizing::new(format!(
            "ALTER ROLE {} WITH LOGIN PASSWORD {}",
            quote_ident(role),
            literal.as_str()
        ));
        self.execute(operation, &statement).await
    }

    fn role_of<'a>(&'a self, provider_ref: Option<&'a str>) -> &'a str {
        provider_ref.unwrap_or(&self.role)
    }
}

#[async_trait]
impl Rotator for PostgresRotator {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn prepare(
        &self,
        _path: &str,
        current: Option<&VersionRef>,
        generated: SecretValue,
    ) -> Result<Prepared, RotatorError> {
        let current_role = current.and_then(|current| current.provider_ref.as_deref());
        let role = match &self.alternate_role {
            Some(alternate) if current_role == Some(self.role.as_str()) => alternate.clone(),
            _ => self.role.clone(),
        };
        Ok(Prepared {
            value: generated,
            provider_ref: Some(role.clone()),
            attributes: [("username".to_owned(), role)].into(),
        })
    }

    async fn set(&self, _path: &str, new: Credential<'_>) -> Result<(), RotatorError> {
        let role = self.role_of(new.provider_ref);
        self.set_password("install the new password", role, Some(new.value))
            .await
    }

    async fn test(&self, _path: &str, new: Credential<'_>) -> Result<(), RotatorError> {
        const OPERATION: &str = "log in with the new password";
        let role = self.role_of(new.provider_ref);
        let options = self
            .admin_options()
            .await?
            .username(role)
            .password(new.value.expose_secret());
        let mut connection = options.connect().await.map_err(|error| {
            RotatorError::new(
                NAME,
                OPERATION,
                format!("login as {role:?} failed: {error}"),
            )
        })?;
        sqlx::raw_sql("SELECT 1")
            .execute(&mut connection)
            .await
            .map_err(|error| RotatorError::new(NAME, OPERATION, error.to_string()))?;
        Ok(())
    }

    async fn revoke(&self, _path: &str, old: &VersionRef) -> Result<(), RotatorError> {
        // With a single role the old password was replaced by `set` already.
        if self.alternate_role.is_none() {
            return Ok(());
        }
        let role = self.role_of(old.provider_ref.as_deref());
        self.set_password("remove the old role's password", role, None)
            .await
    }

    async fn roll_back(&self, _path: &str, undo: RollBack<'_>) -> Result<(), RotatorError> {
        if !undo.set_attempted {
            return Ok(());
        }
        let pending_role = self.role_of(undo.pending_ref);
        let current_role = undo
            .current
            .map(|current| self.role_of(current.provider_ref));
        match undo.current {
            // The abandoned password went onto the role the current version uses: put the
            // current password back.
            Some(current) if current_role == Some(pending_role) => {
                self.set_password(
                    "reinstall the current password",
                    pending_role,
                    Some(current.value),
                )
                .await
            }
            // The abandoned password went onto the idle role: clear it.
            _ => {
                self.set_password("clear the abandoned password", pending_role, None)
                    .await
            }
        }
    }
}

/// Quotes an identifier for PostgreSQL: doubled quotes inside double quotes.
fn quote_ident(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Quotes a string literal for PostgreSQL. The `E''` form with doubled backslashes is correct
/// whatever `standard_conforming_strings` is set to.
fn quote_literal(text: &str) -> Zeroizing<String> {
    let escaped = Zeroizing::new(text.replace('\\', "\\\\").replace('\'', "''"));
    Zeroizing::new(format!("E'{}'", escaped.as_str()))
}

/// Computes PostgreSQL's SCRAM-SHA-256 verifier for `password` with a random salt (RFC 5802
/// and RFC 7677): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
fn scram_verifier(password: &SecretValue) -> Result<String, String> {
    let text = password.expose_secret();
    // Clients SASLprep the password before hashing; printable ASCII is unchanged by it, so
    // limiting passwords to it keeps both sides in agreement without a SASLprep table.
    if text.is_empty() || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("the password must be non-empty printable ASCII".to_owned());
    }

    let mut salt = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "random number generator failed".to_owned())?;
    let iterations = NonZeroU32::new(SCRAM_ITERATIONS).ok_or("zero SCRAM iterations")?;
    let mut salted = Zeroizing::new([0_u8; 32]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        text.as_bytes(),
        &mut salted[..],
    );

    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted[..]);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    Ok(format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key.as_ref()),
        BASE64.encode(server_key.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's").as_str(), "E'it''s'");
        assert_eq!(quote_literal("a\\b").as_str(), "E'a\\\\b'");
    }

    #[test]
    fn verifier_has_postgres_shape() {
        let verifier =
            scram_verifier(&SecretValue::new("pa'ss\\word".to_owned())).expect("verifier");
        let rest = verifier
            .strip_prefix("SCRAM-SHA-256$4096:")
            .expect("prefix");
        let (salt, keys) = rest.split_once('$').expect("salt");
        let (stored, server) = keys.split_once(':').expect("keys");
        assert_eq!(BASE64.decode(salt).expect("salt").len(), 16);
        assert_eq!(BASE64.decode(stored).expect("stored").len(), 32);
        assert_eq!(BASE64.decode(server).expect("server").len(), 32);
        assert!(!verifier.contains("word"));
    }

    #[test]
    fn non_ascii_password_is_rejected() {
        assert!(scram_verifier(&SecretValue::new("pässword".to_owned())).is_err());
        assert!(scram_verifier(&SecretValue::new(String::new())).is_err());
    }
}
