//! Generators of new secret values: random API keys, passwords with rules, an external command,
//! and any generator an embedding program registers.
//!
//! Randomness comes from aws-lc-rs's CSPRNG, and every draw from an alphabet uses rejection
//! sampling so that no character is more likely than another. Generators never log values.

mod command;
mod random;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use command::CommandGenerator;
pub use random::{ApiKeyGenerator, PasswordGenerator};

use crate::policy::{Charset, GeneratorSpec};
use crate::secret::SecretValue;

/// Errors of value generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The operating system's random source failed.
    #[error("random number generator failed")]
    Random,
    /// The external command could not be started.
    #[error("failed to start generator command {program:?}: {source}")]
    Spawn {
        /// The program named in the policy.
        program: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The external command ran past its timeout and was killed.
    #[error("generator command {program:?} timed out after {timeout_secs}s and was killed")]
    Timeout {
        /// The program named in the policy.
        program: String,
        /// The timeout, in seconds.
        timeout_secs: u64,
    },
    /// The external command failed or printed nothing usable. Its output is withheld because it
    /// may contain the value.
    #[error("generator command {program:?} failed: {reason} (its output is withheld)")]
    Command {
        /// The program named in the policy.
        program: String,
        /// Exit status or what was wrong with the output.
        reason: String,
    },
    /// The policy names a custom generator that was never registered.
    #[error("no generator named {0:?} is registered")]
    UnknownGenerator(String),
    /// The generator's settings cannot produce a value.
    #[error("invalid generator settings: {0}")]
    Invalid(String),
}

/// Makes new secret values. Implement it to add a generator for a service with its own rules,
/// then register it with [`Generators::register`].
#[async_trait]
pub trait Generator: Send + Sync {
    /// Generates a new value for the secret at `path`.
    async fn generate(&self, path: &str) -> Result<SecretValue, GenerateError>;
}

/// Builds generators from policy specs, including the ones the embedding program registered.
#[derive(Clone, Default)]
pub struct Generators {
    custom: HashMap<String, Arc<dyn Generator>>,
}

impl Generators {
    /// Creates a registry with only the built-in generators.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a generator that policies select with `type = "custom"` and `name`.
    pub fn register(&mut self, name: impl Into<String>, generator: Arc<dyn Generator>) {
        self.custom.insert(name.into(), generator);
    }

    /// Returns the generator that a policy's spec selects.
    pub fn build(&self, spec: &GeneratorSpec) -> Result<Arc<dyn Generator>, GenerateError> {
        Ok(match spec {
            GeneratorSpec::Random {
                length,
                charset,
                alphabet,
                prefix,
            } => {
                let alphabet: Vec<char> = match (charset, alphabet) {
                    (Charset::Custom, Some(custom)) => custom.chars().collect(),
                    (Charset::Custom, None) => {
                        return Err(GenerateError::Invalid(
                            "charset custom needs an alphabet".to_owned(),
                        ));
                    }
                    (named, _) => named_alphabet(*named).chars().collect(),
                };
                Arc::new(ApiKeyGenerator::new(prefix.clone(), *length, alphabet)?)
            }
            GeneratorSpec::Password {
                length,
                require,
                exclude,
            } => Arc::new(PasswordGenerator::new(*length, require, exclude)?),
            GeneratorSpec::Command { argv, timeout_secs } => Arc::new(CommandGenerator::new(
                argv.clone(),
                std::time::Duration::from_secs(*timeout_secs),
            )?),
            GeneratorSpec::Custom { name } => self
                .custom
                .get(name)
                .cloned()
                .ok_or_else(|| GenerateError::UnknownGenerator(name.clone()))?,
        })
    }
}

fn named_alphabet(charset: Charset) -> &'static str {
    match charset {
        Charset::Hex => "0123456789abcdef",
        Charset::Base64url => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        Charset::Alphanumeric | Charset::Custom => {
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    #[async_trait]
    impl Generator for Fixed {
        async fn generate(&self, path: &str) -> Result<SecretValue, GenerateError> {
            Ok(SecretValue::new(format!("fixed-for-{path}")))
        }
    }

    #[tokio::test]
    async fn registered_generator_is_built_by_name() {
        let mut generators = Generators::new();
        generators.register("fixed", Arc::new(Fixed));
        let generator = generators
            .build(&GeneratorSpec::Custom {
                name: "fixed".to_owned(),
            })
            .expect("registered");
        let value = generator.generate("a/b").await.expect("generate");
        assert_eq!(value.expose_secret(), "fixed-for-a/b");
    }

    #[test]
    fn unknown_generator_is_reported() {
        let result = Generators::new().build(&GeneratorSpec::Custom {
            name: "missing".to_owned(),
        });
        assert!(matches!(result, Err(GenerateError::UnknownGenerator(name)) if name == "missing"));
    }

    #[tokio::test]
    async fn random_spec_uses_named_charset() {
        let generator = Generators::new()
            .build(&GeneratorSpec::Random {
                length: 64,
                charset: Charset::Hex,
                alphabet: None,
                prefix: "key_".to_owned(),
            })
            .expect("valid spec");
        let value = generator.generate("a/b").await.expect("generate");
        let text = value.expose_secret();
        assert!(text.starts_with("key_"));
        assert!(
            text[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(text.len(), 68);
    }
}
