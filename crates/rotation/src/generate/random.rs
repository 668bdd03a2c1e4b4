//! Random API keys and passwords from the CSPRNG, drawn without modulo bias.

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{GenerateError, Generator};
use crate::policy::CharClass;
use crate::secret::SecretValue;

/// Random bytes are drawn in blocks of this size to keep CSPRNG calls few.
const BLOCK: usize = 64;

/// A uniform sampler over `0..bound` fed by the CSPRNG.
struct Sampler {
    buffer: Zeroizing<[u8; BLOCK]>,
    used: usize,
}

impl Sampler {
    fn new() -> Self {
        Self {
            buffer: Zeroizing::new([0; BLOCK]),
            used: BLOCK,
        }
    }

    fn next_byte(&mut self) -> Result<u8, GenerateError> {
        if self.used == BLOCK {
            aws_lc_rs::rand::fill(&mut self.buffer[..]).map_err(|_| GenerateError::Random)?;
            self.used = 0;
        }
        let byte = self.buffer[self.used];
        self.used += 1;
        Ok(byte)
    }

    /// Returns a uniform index below `bound` (1..=65536) by rejection sampling: values from the
    /// incomplete last bucket are drawn again instead of being folded back with `%`.
    fn below(&mut self, bound: usize) -> Result<usize, GenerateError> {
        debug_assert!((1..=65_536).contains(&bound));
        let wide = bound > 256;
        let range: u32 = if wide { 65_536 } else { 256 };
        let bound = u32::try_from(bound).map_err(|_| GenerateError::Random)?;
        let limit = range - range % bound;
        loop {
            let mut draw = u32::from(self.next_byte()?);
            if wide {
                draw = (draw << 8) | u32::from(self.next_byte()?);
            }
            if draw < limit {
                return usize::try_from(draw % bound).map_err(|_| GenerateError::Random);
            }
        }
    }
}

/// Random keys: a fixed prefix followed by characters drawn uniformly from an alphabet.
#[derive(Debug)]
pub struct ApiKeyGenerator {
    prefix: String,
    length: usize,
    alphabet: Vec<char>,
}

impl ApiKeyGenerator {
    /// Creates a generator of `prefix` + `length` characters from `alphabet`.
    pub fn new(prefix: String, length: usize, alphabet: Vec<char>) -> Result<Self, GenerateError> {
        if alphabet.len() < 2 || alphabet.len() > 256 || length == 0 {
            return Err(GenerateError::Invalid(
                "an API key needs a length above 0 and an alphabet of 2 to 256 characters"
                    .to_owned(),
            ));
        }
        Ok(Self {
            prefix,
            length,
            alphabet,
        })
    }

    fn generate_now(&self) -> Result<SecretValue, GenerateError> {
        let mut sampler = Sampler::new();
        let mut value = String::with_capacity(self.prefix.len() + self.length * 4);
        value.push_str(&self.prefix);
        let mut value = Zeroizing::new(value);
        for _ in 0..self.length {
            value.push(self.alphabet[sampler.below(self.alphabet.len())?]);
        }
        Ok(SecretValue::new(std::mem::take(&mut *value)))
    }
}

#[async_trait]
impl Generator for ApiKeyGenerator {
    async fn generate(&self, _path: &str) -> Result<SecretValue, GenerateError> {
        self.generate_now()
    }
}

/// Passwords with at least one character of each required class and none of the excluded ones.
#[derive(Debug)]
pub struct PasswordGenerator {
    length: usize,
    required: Vec<Vec<char>>,
    all: Vec<char>,
}

impl PasswordGenerator {
    /// Creates a generator of `length`-character passwords. With no class required, all four
    /// classes make up the alphabet but none is guaranteed.
    pub fn new(length: usize, require: &[CharClass], exclude: &str) -> Result<Self, GenerateError> {
        let allowed = |class: CharClass| -> Vec<char> {
            class.chars().filter(|c| !exclude.contains(*c)).collect()
        };
        let mut required = Vec::new();
        for class in require {
            let chars = allowed(*class);
            if chars.is_empty() {
                return Err(GenerateError::Invalid(format!(
                    "the excluded characters remove every {class:?} character"
                )));
            }
            required.push(chars);
        }
        let classes: &[CharClass] = if require.is_empty() {
            &[
                CharClass::Lower,
                CharClass::Upper,
                CharClass::Digit,
                CharClass::Symbol,
            ]
        } else {
            require
        };
        let mut all: Vec<char> = classes.iter().flat_map(|class| allowed(*class)).collect();
        all.sort_unstable();
        all.dedup();
        if all.len() < 2 || length < required.len() || length == 0 {
            return Err(GenerateError::Invalid(
                "the password length or allowed characters are too few for the rules".to_owned(),
            ));
        }
        Ok(Self {
            length,
            required,
            all,
        })
    }

    fn generate_now(&self) -> Result<SecretValue, GenerateError> {
        let mut sampler = Sampler::new();
        let mut chars: Zeroizing<Vec<char>> = Zeroizing::new(Vec::with_capacity(self.length));

        // One character from each required class, the rest from the union, then a Fisher-Yates
        // shuffle so the required characters sit at uniformly random positions.
        for class in &self.required {
            chars.push(class[sampler.below(class.len())?]);
        }
        while chars.len() < self.length {
            chars.push(self.all[sampler.below(self.all.len())?]);
        }
        for i in (1..chars.len()).rev() {
            let j = sampler.below(i + 1)?;
            chars.swap(i, j);
        }

        let mut value = Zeroizing::new(String::with_capacity(self.length * 4));
        value.extend(chars.iter());
        Ok(SecretValue::new(std::mem::take(&mut *value)))
    }
}

#[async_trait]
impl Generator for PasswordGenerator {
    async fn generate(&self, _path: &str) -> Result<SecretValue, GenerateError> {
        self.generate_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_has_prefix_length_and_alphabet() {
        let generator = ApiKeyGenerator::new("sk-".to_owned(), 40, "abc123".chars().collect())
            .expect("valid settings");
        let value = generator.generate_now().expect("generate");
        let text = value.expose_secret();
        assert!(text.starts_with("sk-"));
        assert_eq!(text.chars().count(), 43);
        assert!(text[3..].chars().all(|c| "abc123".contains(c)));
    }

    #[test]
    fn api_keys_differ() {
        let generator = ApiKeyGenerator::new(String::new(), 32, "ab".chars().collect())
            .expect("valid settings");
        let first = generator.generate_now().expect("generate");
        let second = generator.generate_now().expect("generate");
        assert!(!first.ct_eq(&second));
    }

    #[test]
    fn sampler_is_unbiased_for_awkward_bound() {
        // 256 % 3 == 1: plain `byte % 3` would favour 0. With rejection sampling each bucket
        // gets a third of 30,000 draws; 4.5 standard deviations is about ±370.
        let mut sampler = Sampler::new();
        let mut counts = [0_u32; 3];
        for _ in 0..30_000 {
            counts[sampler.below(3).expect("draw")] += 1;
        }
        for count in counts {
            assert!((9_630..=10_370).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn sampler_covers_wide_bound() {
        let mut sampler = Sampler::new();
        for _ in 0..1_000 {
            assert!(sampler.below(300).expect("draw") < 300);
        }
    }

    #[test]
    fn password_contains_every_required_class() {
        let generator = PasswordGenerator::new(
            12,
            &[
                CharClass::Lower,
                CharClass::Upper,
                CharClass::Digit,
                CharClass::Symbol,
            ],
            "\"'\\`",
        )
        .expect("valid settings");
        for _ in 0..200 {
            let value = generator.generate_now().expect("generate");
            let text = value.expose_secret();
            assert_eq!(text.chars().count(), 12);
            assert!(text.chars().any(|c| c.is_ascii_lowercase()));
            assert!(text.chars().any(|c| c.is_ascii_uppercase()));
            assert!(text.chars().any(|c| c.is_ascii_digit()));
            assert!(text.chars().any(|c| c.is_ascii_punctuation()));
            assert!(!text.contains(['"', '\'', '\\', '`']));
        }
    }

    #[test]
    fn password_without_requirements_uses_all_classes() {
        let generator = PasswordGenerator::new(64, &[], "").expect("valid settings");
        let value = generator.generate_now().expect("generate");
        assert_eq!(value.expose_secret().chars().count(), 64);
    }

    #[test]
    fn fully_excluded_class_is_rejected() {
        let result = PasswordGenerator::new(16, &[CharClass::Digit], "0123456789");
        assert!(matches!(result, Err(GenerateError::Invalid(_))));
    }
}
