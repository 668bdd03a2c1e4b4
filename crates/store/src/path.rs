//! The validated secret path type.
//!
//! Every path that reaches a store has been parsed here once. The parser rejects anything that
//! could name a different secret after normalisation (`.`/`..` segments, empty segments, percent
//! escapes, non-ASCII look-alikes), so later layers compare paths as plain strings.

use std::fmt;

use thiserror::Error;

/// Maximum length of a secret path in bytes.
pub const MAX_PATH_LEN: usize = 512;

/// Maximum number of segments in a secret path.
pub const MAX_SEGMENTS: usize = 32;

/// Maximum length of one path segment in bytes.
pub const MAX_SEGMENT_LEN: usize = 128;

/// Why a string is not a valid secret path.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty.
    #[error("invalid secret path: empty")]
    Empty,
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("invalid secret path: longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// The path has more than [`MAX_SEGMENTS`] segments.
    #[error("invalid secret path: more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    /// Two slashes in a row, or a leading or trailing slash where none is allowed.
    #[error("invalid secret path: empty segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("invalid secret path: '.' and '..' segments are not allowed")]
    DotSegment,
    /// A segment longer than [`MAX_SEGMENT_LEN`].
    #[error("invalid secret path: segment longer than {MAX_SEGMENT_LEN} bytes")]
    SegmentTooLong,
    /// A character outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid secret path: character {0:?} is not allowed (use A-Z, a-z, 0-9, '.', '_', '-')"
    )]
    InvalidCharacter(char),
}

/// A secret's path: `/`-separated segments of `[A-Za-z0-9._-]`, none empty, none `.` or `..`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretPath(String);

impl SecretPath {
    /// Parses and validates a secret path such as `team/service/name`.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        validate(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// Returns the path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretPath({:?})", self.0)
    }
}

/// A folder for listing: empty (the mount's root) or a valid path whose listing ends in `/`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FolderPath(String);

impl FolderPath {
    /// Parses a folder such as `team/` or `team/service`; a trailing slash is optional and the
    /// empty string names the root.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        if trimmed.is_empty() {
            return Ok(Self(String::new()));
        }
        validate(trimmed)?;
        Ok(Self(format!("{trimmed}/")))
    }

    /// Returns the folder as a prefix: empty, or ending with `/`.
    pub fn as_prefix(&self) -> &str {
        &self.0
    }
}

fn validate(raw: &str) -> Result<(), PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }

    let mut count = 0;
    for segment in raw.split('/') {
        count += 1;
        if count > MAX_SEGMENTS {
            return Err(PathError::TooManySegments);
        }
        if segment.is_empty() {
            return Err(PathError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return Err(PathError::SegmentTooLong);
        }
        if let Some(bad) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(PathError::InvalidCharacter(bad));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths_parse() {
        for raw in ["a", "team/service/name", "a.b/c_d/e-f", "v1.2/x"] {
            assert_eq!(
                SecretPath::parse(raw).map(|p| p.0),
                Ok(raw.to_owned()),
                "{raw}"
            );
        }
    }

    #[test]
    fn traversal_and_empty_segments_are_rejected() {
        let cases = [
            ("", PathError::Empty),
            ("a//b", PathError::EmptySegment),
            ("/a", PathError::EmptySegment),
            ("a/", PathError::EmptySegment),
            ("a/../b", PathError::DotSegment),
            ("./a", PathError::DotSegment),
            ("a/%2e%2e/b", PathError::InvalidCharacter('%')),
            ("caf\u{e9}", PathError::InvalidCharacter('\u{e9}')),
            ("a b", PathError::InvalidCharacter(' ')),
            ("a\\b", PathError::InvalidCharacter('\\')),
        ];
        for (raw, expected) in cases {
            assert_eq!(SecretPath::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn length_limits_are_enforced() {
        let long_segment = "a".repeat(MAX_SEGMENT_LEN + 1);
        assert_eq!(
            SecretPath::parse(&long_segment),
            Err(PathError::SegmentTooLong)
        );

        let many = vec!["a"; MAX_SEGMENTS + 1].join("/");
        assert_eq!(SecretPath::parse(&many), Err(PathError::TooManySegments));

        let long = vec!["a".repeat(100); 6].join("/");
        assert_eq!(SecretPath::parse(&long), Err(PathError::TooLong));
    }

    #[test]
    fn folder_accepts_root_and_trailing_slash() {
        assert_eq!(FolderPath::parse("").map(|f| f.0), Ok(String::new()));
        assert_eq!(
            FolderPath::parse("team").map(|f| f.0),
            Ok("team/".to_owned())
        );
        assert_eq!(
            FolderPath::parse("team/").map(|f| f.0),
            Ok("team/".to_owned())
        );
        assert_eq!(FolderPath::parse("team//"), Err(PathError::EmptySegment));
        assert_eq!(FolderPath::parse("../"), Err(PathError::DotSegment));
    }
}
