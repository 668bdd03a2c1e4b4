//! Rotation policies: the schedule, the generator of new values, the rotator that installs them,
//! and the webhooks that receive notifications.
//!
//! A policy is data (TOML or JSON through serde) and holds no secret: signing keys, admin keys
//! and admin database URLs are named by the secret path that holds them. Parsing validates the
//! whole policy and reports the first invalid field by name.
//!
//! ```
//! use keyward_rotation::RotationPolicy;
//!
//! let policy = RotationPolicy::from_toml(r#"
//!     schedule = "monthly"
//!     grace = "7d"
//!
//!     [generator]
//!     type = "random"
//!     length = 48
//!     prefix = "sk-"
//! "#)?;
//! assert_eq!(policy.grace, time::Duration::days(7));
//! # Ok::<(), keyward_rotation::PolicyError>(())
//! ```

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::schedule::Schedule;

/// Maximum grace period of a policy.
pub const MAX_GRACE: Duration = Duration::days(366);

/// Rotation settings of one secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicy {
    /// When the secret rotates.
    pub schedule: Schedule,
    /// The instant named schedules count from (RFC 3339); when absent, the time the policy is
    /// registered with the scheduler.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub anchor: Option<OffsetDateTime>,
    /// How long the replaced version stays valid, e.g. `"24h"`, `"7d"`, `"0s"`.
    #[serde(with = "crate::duration::duration_text")]
    pub grace: Duration,
    /// The generator of new values.
    pub generator: GeneratorSpec,
    /// The rotator that installs, tests and revokes the credential at its provider. None for
    /// secrets that only live in Keyward.
    #[serde(default)]
    pub rotator: Option<RotatorSpec>,
    /// Webhooks notified of every rotation step.
    #[serde(default)]
    pub notify: Vec<NotifySpec>,
}

/// Settings of a value generator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GeneratorSpec {
    /// A random API key: `prefix` followed by `length` characters from `charset`.
    Random {
        /// Characters after the prefix.
        #[serde(default = "default_key_length")]
        length: usize,
        /// `alphanumeric`, `hex`, `base64url`, or `custom` with `alphabet`.
        #[serde(default)]
        charset: Charset,
        /// The characters to draw from when `charset` is `custom`.
        #[serde(default)]
        alphabet: Option<String>,
        /// Fixed text in front of the random part, such as `sk-`.
        #[serde(default)]
        prefix: String,
    },
    /// A password of `length` characters with at least one of each required class.
    Password {
        /// Total length.
        #[serde(default = "default_password_length")]
        length: usize,
        /// Classes that must each appear at least once; all four by default.
        #[serde(default = "all_classes")]
        require: Vec<CharClass>,
        /// Characters that must never appear (for systems that choke on quotes, for example).
        #[serde(default)]
        exclude: String,
    },
    /// An external program whose standard output (one trailing newline removed) is the value.
    Command {
        /// The program and its arguments; no shell is involved.
        argv: Vec<String>,
        /// Seconds after which the program is killed.
        #[serde(default = "default_command_timeout")]
        timeout_secs: u64,
    },
    /// A generator registered in [`crate::Generators`] by the embedding program.
    Custom {
        /// The name it was registered under.
        name: String,
    },
}

/// A named alphabet for random keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// `A-Z a-z 0-9`.
    #[default]
    Alphanumeric,
    /// `0-9 a-f`.
    Hex,
    /// `A-Z a-z 0-9 - _`.
    Base64url,
    /// The policy's `alphabet`.
    Custom,
}

/// A class of password characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CharClass {
    /// `a-z`.
    Lower,
    /// `A-Z`.
    Upper,
    /// `0-9`.
    Digit,
    /// ASCII punctuation.
    Symbol,
}

/// Settings of the provider rotator that installs new values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RotatorSpec {
    /// POSTs the new credential to `url`, signed with HMAC-SHA256.
    Webhook {
        /// Receives the new credential.
        url: String,
        /// Called with the new credential to prove it works; a 2xx status means it does.
        verify_url: String,
        /// Told to revoke an old version after its grace period, if set.
        #[serde(default)]
        revoke_url: Option<String>,
        /// Path of the secret holding the HMAC signing key.
        signing_key_secret: String,
    },
    /// Changes a PostgreSQL login role's password, or alternates between two roles.
    Postgres {
        /// Path of the secret holding an admin connection URL (with its password).
        admin_url_secret: String,
        /// The login role whose password rotates.
        role: String,
        /// A second login role; when set, the two take turns so that the old one keeps working
        /// during the grace period.
        #[serde(default)]
        alternate_role: Option<String>,
    },
    /// Creates project service-account keys through the OpenAI Admin API.
    Openai {
        /// API base, `https://api.openai.com` unless set.
        #[serde(default = "default_openai_base")]
        base_url: String,
        /// The project id (`proj_...`).
        project_id: String,
        /// The service account id (`svc_acct_...`).
        service_account_id: String,
        /// Path of the secret holding the organization admin key.
        admin_key_secret: String,
    },
    /// A rotator registered by the embedding program.
    Custom {
        /// The name it was registered under.
        name: String,
    },
}

/// A webhook notified of rotation events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Receives a signed JSON POST per event.
    pub url: String,
    /// Path of the secret holding the HMAC signing key.
    pub signing_key_secret: String,
}

/// Errors of policy parsing and validation.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not valid TOML for a policy.
    #[error("invalid rotation policy (TOML): {0}")]
    Toml(#[from] toml::de::Error),
    /// The text is not valid JSON for a policy.
    #[error("invalid rotation policy (JSON): {0}")]
    Json(#[from] serde_json::Error),
    /// A field has a value outside its allowed range.
    #[error("invalid rotation policy: {field} {problem}")]
    Invalid {
        /// The field, e.g. `generator.length`.
        field: &'static str,
        /// The problem and the allowed values.
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field,
        problem: problem.into(),
    }
}

impl RotationPolicy {
    /// Parses and validates a policy written in TOML.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let policy: Self = toml::from_str(text)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses and validates a policy written in JSON.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let policy: Self = serde_json::from_str(text)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks every field's range and every URL; parsing calls this.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.grace.is_negative() || self.grace > MAX_GRACE {
            return Err(invalid("grace", "must be between 0s and 366d"));
        }
        // Due times are computed by adding periods and jitter to the anchor; far from today they
        // would leave the supported date range.
        if let Some(anchor) = self.anchor
            && !(1970..=9000).contains(&anchor.year())
        {
            return Err(invalid(
                "anchor",
                "must be a time between the years 1970 and 9000",
            ));
        }
        self.generator.validate()?;
        if let Some(rotator) = &self.rotator {
            rotator.validate()?;
        }
        for notify in &self.notify {
            check_url("notify.url", &notify.url)?;
            check_secret_path("notify.signing_key_secret", &notify.signing_key_secret)?;
        }
        Ok(())
    }
}

impl GeneratorSpec {
    fn validate(&self) -> Result<(), PolicyError> {
        match self {
            GeneratorSpec::Random {
                length,
                charset,
                alphabet,
                prefix,
            } => {
                if !(16..=512).contains(length) {
                    return Err(invalid("generator.length", "must be between 16 and 512"));
                }
                if prefix.chars().count() > 64 || prefix.chars().any(char::is_control) {
                    return Err(invalid(
                        "generator.prefix",
                        "must be at most 64 printable characters",
                    ));
                }
                match (charset, alphabet) {
                    (Charset::Custom, Some(alphabet)) => check_alphabet(alphabet),
                    (Charset::Custom, None) => Err(invalid(
                        "generator.alphabet",
                        "is required when charset is custom",
                    )),
                    (_, Some(_)) => Err(invalid(
                        "generator.alphabet",
                        "is only allowed when charset is custom",
                    )),
                    (_, None) => Ok(()),
                }
            }
            GeneratorSpec::Password {
                length,
                require,
                exclude,
            } => {
                if !(12..=256).contains(length) {
                    return Err(invalid("generator.length", "must be between 12 and 256"));
                }
                if require.len() > *length {
                    return Err(invalid(
                        "generator.require",
                        "lists more classes than the password has characters",
                    ));
                }
                for class in require {
                    if class.chars().all(|c| exclude.contains(c)) {
                        return Err(invalid(
                            "generator.exclude",
                            format!("removes every character of the required class {class:?}"),
                        ));
                    }
                }
                Ok(())
            }
            GeneratorSpec::Command { argv, timeout_secs } => {
                if argv.first().is_none_or(|program| program.is_empty()) {
                    return Err(invalid("generator.argv", "must name a program"));
                }
                if !(1..=600).contains(timeout_secs) {
                    return Err(invalid(
                        "generator.timeout_secs",
                        "must be between 1 and 600",
                    ));
                }
                Ok(())
            }
            GeneratorSpec::Custom { name } => check_name("generator.name", name),
        }
    }
}

impl RotatorSpec {
    fn validate(&self) -> Result<(), PolicyError> {
        match self {
            RotatorSpec::Webhook {
                url,
                verify_url,
                revoke_url,
                signing_key_secret,
            } => {
                check_url("rotator.url", url)?;
                check_url("rotator.verify_url", verify_url)?;
                if let Some(revoke_url) = revoke_url {
                    check_url("rotator.revoke_url", revoke_url)?;
                }
                check_secret_path("rotator.signing_key_secret", signing_key_secret)
            }
            RotatorSpec::Postgres {
                admin_url_secret,
                role,
                alternate_role,
            } => {
                check_secret_path("rotator.admin_url_secret", admin_url_secret)?;
                check_role("rotator.role", role)?;
                if let Some(alternate) = alternate_role {
                    check_role("rotator.alternate_role", alternate)?;
                    if alternate == role {
                        return Err(invalid(
                            "rotator.alternate_role",
                            "must differ from rotator.role",
                        ));
                    }
                }
                Ok(())
            }
            RotatorSpec::Openai {
                base_url,
                project_id,
                service_account_id,
                admin_key_secret,
            } => {
                check_url("rotator.base_url", base_url)?;
                check_name("rotator.project_id", project_id)?;
                check_name("rotator.service_account_id", service_account_id)?;
                check_secret_path("rotator.admin_key_secret", admin_key_secret)
            }
            RotatorSpec::Custom { name } => check_name("rotator.name", name),
        }
    }
}

impl CharClass {
    /// Returns the characters of the class.
    pub fn chars(self) -> impl Iterator<Item = char> {
        let set: &'static str = match self {
            CharClass::Lower => "abcdefghijklmnopqrstuvwxyz",
            CharClass::Upper => "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            CharClass::Digit => "0123456789",
            CharClass::Symbol => "!#$%&()*+,-./:;<=>?@[]^_{|}~",
        };
        set.chars()
    }
}

fn check_alphabet(alphabet: &str) -> Result<(), PolicyError> {
    let mut seen = std::collections::HashSet::new();
    for c in alphabet.chars() {
        if c.is_control() || c.is_whitespace() || !seen.insert(c) {
            return Err(invalid(
                "generator.alphabet",
                "must have distinct printable characters",
            ));
        }
    }
    if !(2..=256).contains(&seen.len()) {
        return Err(invalid(
            "generator.alphabet",
            "must have between 2 and 256 characters",
        ));
    }
    Ok(())
}

fn check_url(field: &'static str, url: &str) -> Result<(), PolicyError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| invalid(field, format!("is not a valid URL ({error})")))?;
    // Credentials and signed values travel to these URLs, so plain http is for a service on
    // the same host only.
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                field,
                "must be an https URL (plain http is accepted for loopback addresses only)",
            ));
        }
        _ => return Err(invalid(field, "must be an https URL")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            field,
            "must not carry credentials; name a secret that holds them instead",
        ));
    }
    Ok(())
}

fn check_secret_path(field: &'static str, path: &str) -> Result<(), PolicyError> {
    let valid_segment = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if path.len() > 512 || !path.split('/').all(valid_segment) {
        return Err(invalid(
            field,
            "must be a secret path such as team/service/name",
        ));
    }
    Ok(())
}

fn check_name(field: &'static str, name: &str) -> Result<(), PolicyError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(field, "must be 1 to 128 of [A-Za-z0-9._-]"));
    }
    Ok(())
}

fn check_role(field: &'static str, role: &str) -> Result<(), PolicyError> {
    // PostgreSQL truncates identifiers to 63 bytes; NUL cannot be quoted.
    if role.is_empty() || role.len() > 63 || role.contains('\0') {
        return Err(invalid(field, "must be a role name of 1 to 63 bytes"));
    }
    Ok(())
}

fn default_key_length() -> usize {
    40
}

fn default_password_length() -> usize {
    32
}

fn all_classes() -> Vec<CharClass> {
    vec![
        CharClass::Lower,
        CharClass::Upper,
        CharClass::Digit,
        CharClass::Symbol,
    ]
}

fn default_command_timeout() -> u64 {
    10
}

fn default_openai_base() -> String {
    "https://api.openai.com".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_POLICY: &str = r#"
        schedule = "0 4 1 * *"
        grace = "1d12h"

        [generator]
        type = "password"
        length = 24
        exclude = "'\"\\"

        [rotator]
        type = "openai"
        project_id = "proj_abc"
        service_account_id = "svc_acct_abc"
        admin_key_secret = "ops/openai/admin"

        [[notify]]
        url = "https://hooks.example.com/keyward"
        signing_key_secret = "ops/hooks/signing"
    "#;

    #[test]
    fn toml_policy_parses_every_section() {
        let policy = RotationPolicy::from_toml(OPENAI_POLICY).expect("valid policy");
        assert_eq!(policy.schedule, Schedule::Cron("0 4 1 * *".to_owned()));
        assert_eq!(policy.grace, Duration::hours(36));
        assert!(matches!(
            policy.generator,
            GeneratorSpec::Password { length: 24, .. }
        ));
        assert!(matches!(
            policy.rotator,
            Some(RotatorSpec::Openai { ref base_url, .. }) if base_url == "https://api.openai.com"
        ));
        assert_eq!(policy.notify.len(), 1);
    }

    #[test]
    fn policy_round_trips_through_json() {
        let policy = RotationPolicy::from_toml(OPENAI_POLICY).expect("valid policy");
        let json = serde_json::to_string(&policy).expect("serialize");
        assert_eq!(RotationPolicy::from_json(&json).expect("parse"), policy);
    }

    #[test]
    fn unknown_field_is_rejected() {
        let error = RotationPolicy::from_toml(
            "schedule = \"daily\"\ngrace = \"1h\"\ncolour = 1\n[generator]\ntype = \"random\"\n",
        )
        .expect_err("unknown field");
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn short_random_key_is_rejected() {
        let error = RotationPolicy::from_json(
            r#"{"schedule":"daily","grace":"1h","generator":{"type":"random","length":8}}"#,
        )
        .expect_err("too short");
        assert!(error.to_string().contains("generator.length"), "{error}");
    }

    #[test]
    fn excluding_a_required_class_is_rejected() {
        let error = RotationPolicy::from_json(
            r#"{"schedule":"daily","grace":"1h","generator":{"type":"password","require":["digit"],"exclude":"0123456789"}}"#,
        )
        .expect_err("digits excluded");
        assert!(error.to_string().contains("generator.exclude"), "{error}");
    }

    #[test]
    fn url_with_credentials_is_rejected() {
        let error = RotationPolicy::from_json(
            r#"{"schedule":"daily","grace":"1h","generator":{"type":"random"},
               "notify":[{"url":"https://user:pw@hooks.example.com/","signing_key_secret":"a/b"}]}"#,
        )
        .expect_err("credentials in URL");
        assert!(error.to_string().contains("notify.url"), "{error}");
    }

    #[test]
    fn same_alternate_role_is_rejected() {
        let error = RotationPolicy::from_json(
            r#"{"schedule":"daily","grace":"1h","generator":{"type":"password"},
               "rotator":{"type":"postgres","admin_url_secret":"db/admin","role":"app","alternate_role":"app"}}"#,
        )
        .expect_err("same role twice");
        assert!(error.to_string().contains("alternate_role"), "{error}");
    }

    #[test]
    fn grace_over_a_year_is_rejected() {
        let error = RotationPolicy::from_json(
            r#"{"schedule":"daily","grace":"400d","generator":{"type":"random"}}"#,
        )
        .expect_err("grace too long");
        assert!(error.to_string().contains("grace"), "{error}");
    }

    #[test]
    fn far_anchor_is_rejected() {
        for anchor in ["9999-12-31T23:59:59Z", "1900-01-01T00:00:00Z"] {
            let json = format!(
                r#"{{"schedule":"daily","grace":"1h","anchor":"{anchor}","generator":{{"type":"random"}}}}"#
            );
            let error = RotationPolicy::from_json(&json).expect_err(anchor);
            assert!(error.to_string().contains("anchor"), "{anchor}: {error}");
        }
    }

    #[test]
    fn plain_http_is_loopback_only() {
        assert!(check_url("notify.url", "http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("notify.url", "http://[::1]:9/hook").is_ok());
        assert!(check_url("notify.url", "https://hooks.example.com/x").is_ok());
        for url in [
            "http://hooks.example.com/x",
            "http://10.0.0.5/x",
            "ftp://127.0.0.1/x",
        ] {
            let error = check_url("notify.url", url).expect_err(url);
            assert!(error.to_string().contains("https"), "{url}: {error}");
        }
    }
}
