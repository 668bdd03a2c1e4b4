//! The passphrase strength check. It reads the passphrase from the configured environment
//! variable and reports only its length in characters and how many character classes it
//! uses, never the passphrase itself.

use zeroize::Zeroizing;

use super::Check;
use crate::config::RootKeySource;
use crate::datadir::MIN_PASSPHRASE_CHARS;

const NAME: &str = "passphrase strength";

/// Length in characters below which a passphrase gets a warning.
const RECOMMENDED_CHARS: usize = 16;

/// Checks the passphrase in the configured variable, or skips when the root key does not
/// come from a passphrase.
pub fn check(source: &RootKeySource) -> Check {
    let RootKeySource::PassphraseEnv { name } = source else {
        return Check::skip(NAME, "the root key does not come from a passphrase");
    };
    match std::env::var(name) {
        Ok(value) => judge(name, &Zeroizing::new(value)),
        Err(_) => Check::warn(
            NAME,
            format!("environment variable {name} is not set, so the passphrase cannot be checked"),
            format!("run keyward doctor with {name} set as for the server"),
        ),
    }
}

/// Judges a passphrase: fail under [`MIN_PASSPHRASE_CHARS`] characters, warn under
/// [`RECOMMENDED_CHARS`] or when it uses one character class only.
fn judge(variable: &str, passphrase: &str) -> Check {
    let chars = passphrase.chars().count();
    let fix =
        "rotate to a longer passphrase with keyward keys rotate-root --new-passphrase-env VAR";

    if chars < MIN_PASSPHRASE_CHARS {
        return Check::fail(
            NAME,
            format!(
                "the passphrase in {variable} has {chars} characters, fewer than {MIN_PASSPHRASE_CHARS}"
            ),
            fix,
        );
    }
    if chars < RECOMMENDED_CHARS {
        return Check::warn(
            NAME,
            format!(
                "the passphrase in {variable} has {chars} characters, fewer than the recommended {RECOMMENDED_CHARS}"
            ),
            fix,
        );
    }
    if character_classes(passphrase) == 1 {
        return Check::warn(
            NAME,
            format!("the passphrase in {variable} uses one character class only"),
            "rotate to a passphrase that mixes letters, digits and symbols, or several random words, with keyward keys rotate-root --new-passphrase-env VAR",
        );
    }
    Check::pass(
        NAME,
        format!("the passphrase in {variable} has {chars} characters"),
    )
}

/// Counts the classes among lowercase letters, uppercase letters, digits and everything else
/// (symbols, spaces, letters without case) that `text` uses.
fn character_classes(text: &str) -> usize {
    let has = |test: fn(char) -> bool| text.chars().any(test);
    [
        has(char::is_lowercase),
        has(char::is_uppercase),
        has(|c| c.is_ascii_digit()),
        has(|c| !c.is_lowercase() && !c.is_uppercase() && !c.is_ascii_digit()),
    ]
    .into_iter()
    .filter(|&present| present)
    .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn short_passphrase_fails() {
        let check = judge("KEYWARD_PASSPHRASE", "Short-pass1");
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(check.message.contains("11 characters"), "{check:?}");
    }

    #[test]
    fn passphrase_under_sixteen_warns() {
        let check = judge("KEYWARD_PASSPHRASE", "Mixed-pass-12");
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.message.contains("13 characters"), "{check:?}");
    }

    #[test]
    fn single_class_passphrase_warns() {
        let check = judge("KEYWARD_PASSPHRASE", "onlylowercaseletters");
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.message.contains("one character class"), "{check:?}");
    }

    #[test]
    fn long_mixed_passphrase_passes() {
        let check = judge("KEYWARD_PASSPHRASE", "correct horse battery staple");
        assert_eq!(check.status, Status::Pass, "{check:?}");
    }

    #[test]
    fn passphrase_never_appears_in_check() {
        for passphrase in ["Short-pass1", "Mixed-pass-12", "onlylowercaseletters"] {
            let check = judge("KEYWARD_PASSPHRASE", passphrase);
            let text = format!("{} {:?}", check.message, check.fix);
            assert!(!text.contains(passphrase), "{text}");
        }
    }

    #[test]
    fn character_classes_are_counted() {
        assert_eq!(character_classes("abc"), 1);
        assert_eq!(character_classes("ABC123"), 2);
        assert_eq!(character_classes("aB3!"), 4);
        assert_eq!(character_classes("two words"), 2);
    }

    #[test]
    fn key_file_source_is_skipped() {
        let check = check(&RootKeySource::KeyFile {
            path: "root.key".into(),
        });
        assert_eq!(check.status, Status::Skip, "{check:?}");
    }

    #[test]
    fn unset_variable_warns() {
        let check = check(&RootKeySource::PassphraseEnv {
            name: "KEYWARD_DOCTOR_TEST_UNSET_PASSPHRASE".into(),
        });
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.message.contains("is not set"), "{check:?}");
    }
}
