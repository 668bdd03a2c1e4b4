//! Access policies: parsing Vault-style HCL or JSON policies and deciding what a token may do.
//!
//! A policy is a list of path patterns with capabilities, written against API paths such as
//! `secret/data/app/*`. Access is denied unless some rule grants it. Matching follows Vault's
//! rules: a pattern ending in `*` matches by prefix, a `+` segment matches exactly one segment,
//! and when several patterns match, the most specific one decides alone; `deny` on it beats
//! every grant. This module does not know about tokens, HTTP or storage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::Deserialize;

/// The name of the built-in policy that allows everything.
pub const ROOT_POLICY: &str = "root";

/// Maximum size of a policy's source text in bytes.
pub const MAX_POLICY_LEN: usize = 64 * 1024;

/// Maximum length of a policy name.
pub const MAX_POLICY_NAME_LEN: usize = 128;

/// One thing a rule may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Read a secret or a record.
    Read,
    /// List the names under a folder.
    List,
    /// Write a path that does not exist yet.
    Create,
    /// Change a path that exists.
    Update,
    /// Apply a JSON merge patch to a secret.
    Patch,
    /// Delete a path.
    Delete,
    /// Start a rotation of a secret.
    Rotate,
    /// Privileged operations (Vault calls this `sudo`).
    Sudo,
    /// Everything on the path.
    Admin,
    /// Nothing on the path, overriding any grant of the same rule.
    Deny,
}

impl Capability {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "read" => Capability::Read,
            "list" => Capability::List,
            "create" => Capability::Create,
            "update" => Capability::Update,
            "patch" => Capability::Patch,
            "delete" => Capability::Delete,
            "rotate" => Capability::Rotate,
            "sudo" => Capability::Sudo,
            "admin" => Capability::Admin,
            "deny" => Capability::Deny,
            _ => return None,
        })
    }
}

/// Why a policy's source text was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is neither valid HCL nor valid JSON of the policy shape.
    #[error("invalid policy syntax: {0}")]
    Syntax(String),
    /// A rule names an unknown capability.
    #[error("invalid policy: unknown capability {capability:?} on path {path:?}")]
    UnknownCapability {
        /// The rule's path.
        path: String,
        /// The unknown word.
        capability: String,
    },
    /// A path pattern is malformed.
    #[error(
        "invalid policy: bad path pattern {0:?} (use segments of A-Z a-z 0-9 . _ - , '+' for one segment, '*' only at the end)"
    )]
    BadPattern(String),
    /// The policy or its name is too long or the name is malformed.
    #[error("invalid policy: {0}")]
    Limit(String),
}

#[derive(Deserialize)]
struct PolicyDocument {
    #[serde(default)]
    path: HashMap<String, RuleDocument>,
}

#[derive(Deserialize)]
struct RuleDocument {
    #[serde(default)]
    capabilities: Vec<String>,
}

/// A parsed, validated policy.
#[derive(Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| &r.pattern))
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    pattern: String,
    capabilities: BTreeSet<Capability>,
}

/// Checks that a policy name is usable: 1 to 128 characters of `[A-Za-z0-9._-]`.
pub fn validate_policy_name(name: &str) -> Result<(), PolicyError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty()
        || name.len() > MAX_POLICY_NAME_LEN
        || !valid_chars
        || name == "."
        || name == ".."
    {
        return Err(PolicyError::Limit(format!(
            "policy name {name:?} must be 1 to {MAX_POLICY_NAME_LEN} characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

impl Policy {
    /// Parses a policy written in HCL (`path "secret/data/*" { capabilities = ["read"] }`) or in
    /// the equivalent JSON (`{"path": {"secret/data/*": {"capabilities": ["read"]}}}`).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(PolicyError::Limit(format!(
                "policy text longer than {MAX_POLICY_LEN} bytes"
            )));
        }

        let document: PolicyDocument = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?
        } else {
            check_hcl_brackets(text)?;
            hcl::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?
        };

        let mut rules = Vec::with_capacity(document.path.len());
        for (pattern, rule) in document.path {
            validate_pattern(&pattern)?;
            let mut capabilities = BTreeSet::new();
            for word in &rule.capabilities {
                let capability =
                    Capability::parse(word).ok_or_else(|| PolicyError::UnknownCapability {
                        path: pattern.clone(),
                        capability: word.clone(),
                    })?;
                capabilities.insert(capability);
            }
            rules.push(Rule {
                pattern,
                capabilities,
            });
        }
        rules.sort_by(|a, b| a.pattern.cmp(&b.pattern));
        Ok(Self { rules })
    }
}

/// Deepest nesting of brackets, braces and parentheses accepted in HCL policy text. Real
/// policies nest two levels (`path "..." { capabilities = [...] }`).
const MAX_HCL_NESTING: usize = 32;

/// Rejects HCL text whose brackets, braces and parentheses do not pair up, or nest deeper than
/// [`MAX_HCL_NESTING`].
///
/// The HCL parser (hcl-rs 0.20) backtracks exponentially over unclosed brackets: 22 unclosed
/// index expressions in 382 bytes took about a minute to reject. This linear scan rejects such
/// text first. It skips quoted strings and comments, but not heredocs, so a heredoc with
/// unpaired brackets is rejected too; policies do not use heredocs.
fn check_hcl_brackets(text: &str) -> Result<(), PolicyError> {
    let unpaired = || PolicyError::Syntax("brackets, braces or parentheses do not pair up".into());
    let mut open = Vec::new();
    let mut chars = text.chars().peekable();

    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Skip to the closing quote; a backslash escapes the next character.
                while let Some(inner) = chars.next() {
                    match inner {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '#' => {
                chars.find(|&next| next == '\n');
            }
            '/' if chars.peek() == Some(&'/') => {
                chars.find(|&next| next == '\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for next in chars.by_ref() {
                    if previous == '*' && next == '/' {
                        break;
                    }
                    previous = next;
                }
            }
            '[' | '{' | '(' => {
                open.push(c);
                if open.len() > MAX_HCL_NESTING {
                    return Err(PolicyError::Syntax(format!(
                        "brackets, braces or parentheses nest deeper than {MAX_HCL_NESTING} levels"
                    )));
                }
            }
            ']' | '}' | ')' => {
                let expected = match c {
                    ']' => '[',
                    '}' => '{',
                    _ => '(',
                };
                if open.pop() != Some(expected) {
                    return Err(unpaired());
                }
            }
            _ => {}
        }
    }

    if open.is_empty() {
        Ok(())
    } else {
        Err(unpaired())
    }
}

fn validate_pattern(pattern: &str) -> Result<(), PolicyError> {
    let bad = || PolicyError::BadPattern(pattern.to_owned());
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if body.contains('*') || pattern.starts_with('/') {
        return Err(bad());
    }
    if body.is_empty() {
        // A lone `*` matches every path.
        return Ok(());
    }

    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        // The last segment may be empty (`secret/data/`) or a partial name before `*`.
        if segment.is_empty() && index != last {
            return Err(bad());
        }
        if *segment == "+" {
            continue;
        }
        if *segment == "." || *segment == ".." {
            return Err(bad());
        }
        let valid = segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(bad());
        }
    }
    Ok(())
}

/// Whether `pattern` matches the API path `path`.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (body, prefix) = match pattern.strip_suffix('*') {
        Some(body) => (body, true),
        None => (pattern, false),
    };
    if !body.contains('+') {
        return if prefix {
            path.starts_with(body)
        } else {
            path == body
        };
    }

    let pattern_segments: Vec<&str> = body.split('/').collect();
    let path_segments: Vec<&str> = path.split('/').collect();
    if path_segments.len() < pattern_segments.len()
        || (!prefix && path_segments.len() != pattern_segments.len())
    {
        return false;
    }

    let last = pattern_segments.len() - 1;
    for (index, (want, have)) in pattern_segments.iter().zip(&path_segments).enumerate() {
        if *want == "+" {
            continue;
        }
        let segment_matches = if index == last && prefix {
            have.starts_with(want)
        } else {
            want == have
        };
        if !segment_matches {
            return false;
        }
    }
    if prefix && path_segments.len() > pattern_segments.len() {
        // `a/+*` style patterns: the prefix covers the rest of the path.
        return true;
    }
    true
}

/// Vault's priority order: a later first wildcard wins, then a pattern without `*`, then fewer
/// `+` segments, then the longer pattern, then the lexically greater one.
fn specificity(pattern: &str) -> (usize, bool, std::cmp::Reverse<usize>, usize, &str) {
    let first_wildcard = pattern.find(['+', '*']).unwrap_or(pattern.len());
    let plus_count = pattern.split('/').filter(|s| *s == "+").count();
    (
        first_wildcard,
        !pattern.ends_with('*'),
        std::cmp::Reverse(plus_count),
        pattern.len(),
        pattern,
    )
}

/// The policies of one token, merged for evaluation.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    root: bool,
    rules: BTreeMap<String, BTreeSet<Capability>>,
}

impl PolicySet {
    /// Merges the named policies; capabilities of identical patterns are united.
    pub fn merge<'a>(names: &[String], lookup: impl Fn(&str) -> Option<&'a Policy>) -> Self {
        let mut set = PolicySet::default();
        for name in names {
            if name == ROOT_POLICY {
                set.root = true;
                continue;
            }
            let Some(policy) = lookup(name) else {
                continue;
            };
            for rule in &policy.rules {
                set.rules
                    .entry(rule.pattern.clone())
                    .or_default()
                    .extend(rule.capabilities.iter().copied());
            }
        }
        set
    }

    /// Whether the set contains the `root` policy.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// Returns the capabilities granted on `path` by its most specific matching rule.
    pub fn capabilities(&self, path: &str) -> BTreeSet<Capability> {
        if self.root {
            return [Capability::Admin].into();
        }

        let best = self
            .rules
            .iter()
            .filter(|(pattern, _)| pattern_matches(pattern, path))
            .max_by(|(a, _), (b, _)| specificity(a).cmp(&specificity(b)));
        match best {
            Some((_, capabilities)) if !capabilities.contains(&Capability::Deny) => {
                capabilities.clone()
            }
            _ => BTreeSet::new(),
        }
    }

    /// Whether any of `wanted` is granted on `path`.
    pub fn allows_any(&self, path: &str, wanted: &[Capability]) -> bool {
        let granted = self.capabilities(path);
        granted.contains(&Capability::Admin) || wanted.iter().any(|c| granted.contains(c))
    }

    /// Whether any rule could grant something at or below `prefix`. The server uses it to decide
    /// whether a mount is visible to the caller at all.
    pub fn grants_anything_under(&self, prefix: &str) -> bool {
        self.root
            || self.rules.iter().any(|(pattern, capabilities)| {
                !capabilities.contains(&Capability::Deny)
                    && !capabilities.is_empty()
                    && (pattern.starts_with(prefix)
                        || pattern_matches(pattern, prefix)
                        || prefix.starts_with(pattern.trim_end_matches('*')))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(texts: &[&str]) -> PolicySet {
        let policies: Vec<Policy> = texts
            .iter()
            .map(|t| Policy::parse(t).expect("test policy parses"))
            .collect();
        let names: Vec<String> = (0..policies.len()).map(|i| i.to_string()).collect();
        PolicySet::merge(&names, |name| {
            name.parse::<usize>().ok().and_then(|i| policies.get(i))
        })
    }

    #[test]
    fn hcl_and_json_parse_to_same_policy() {
        let hcl = r#"
            path "secret/data/app/*" { capabilities = ["read", "list"] }
            path "secret/metadata/app/*" { capabilities = ["list"] }
        "#;
        let json = r#"{"path": {"secret/data/app/*": {"capabilities": ["read", "list"]},
                               "secret/metadata/app/*": {"capabilities": ["list"]}}}"#;
        assert_eq!(Policy::parse(hcl), Policy::parse(json));
        assert!(Policy::parse(hcl).is_ok());
    }

    #[test]
    fn unknown_capability_is_rejected() {
        let err = Policy::parse(r#"path "a/*" { capabilities = ["reed"] }"#);
        assert!(
            matches!(err, Err(PolicyError::UnknownCapability { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for pattern in ["a/*/b", "a//b", "a/../b", "/a", "a b"] {
            let text = format!(r#"path "{pattern}" {{ capabilities = ["read"] }}"#);
            assert!(
                matches!(Policy::parse(&text), Err(PolicyError::BadPattern(_))),
                "{pattern}"
            );
        }
    }

    #[test]
    fn invalid_syntax_is_rejected() {
        assert!(matches!(
            Policy::parse("path {"),
            Err(PolicyError::Syntax(_))
        ));
        assert!(matches!(
            Policy::parse("{\"path\": 3}"),
            Err(PolicyError::Syntax(_))
        ));
    }

    #[test]
    fn unclosed_brackets_are_rejected_quickly() {
        // Found by the `policy` fuzz target: without the bracket check, the HCL parser took
        // about 12 s to reject this text, and four times longer per two more groups.
        let text = format!("ities=[\n{}", "OO*OO%OOOO[ eOM[\n".repeat(20));
        let started = std::time::Instant::now();

        let result = Policy::parse(&text);

        assert!(matches!(result, Err(PolicyError::Syntax(_))), "{result:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "rejecting took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn bracket_check_skips_strings_and_comments() {
        let text = "# a ] in a comment\n// and [ here\n/* { */\npath \"secret/data/[x\\\"]\" {\n  capabilities = [\"read\"]\n}\n";

        // The pattern is invalid, so parsing stops there, past the bracket check.
        assert!(matches!(
            Policy::parse(text),
            Err(PolicyError::BadPattern(_))
        ));
    }

    #[test]
    fn deep_or_unpaired_nesting_is_rejected() {
        let deep = format!("a = {}{}", "[".repeat(40), "]".repeat(40));
        let crossed = "path \"secret/*\" { capabilities = [\"read\"} ]";

        for text in [deep.as_str(), crossed, "a = (1]"] {
            assert!(
                matches!(Policy::parse(text), Err(PolicyError::Syntax(_))),
                "{text:?} was not rejected"
            );
        }
    }

    #[test]
    fn deny_by_default() {
        let empty = set(&[]);
        assert!(empty.capabilities("secret/data/x").is_empty());
    }

    #[test]
    fn prefix_glob_matches_only_below_prefix() {
        let s = set(&[r#"path "secret/data/app/*" { capabilities = ["read"] }"#]);
        assert!(s.allows_any("secret/data/app/db", &[Capability::Read]));
        assert!(s.allows_any("secret/data/app/a/b", &[Capability::Read]));
        assert!(!s.allows_any("secret/data/other", &[Capability::Read]));
        assert!(!s.allows_any("secret/data/app", &[Capability::Read]));
        assert!(!s.allows_any("secret/data/app/db", &[Capability::Update]));
        assert!(!s.allows_any("secret/metadata/app/db", &[Capability::Read]));
    }

    #[test]
    fn plus_matches_exactly_one_segment() {
        let s = set(&[r#"path "secret/data/+/db" { capabilities = ["read"] }"#]);
        assert!(s.allows_any("secret/data/team/db", &[Capability::Read]));
        assert!(!s.allows_any("secret/data/a/b/db", &[Capability::Read]));
        assert!(!s.allows_any("secret/data/team/db2", &[Capability::Read]));
    }

    #[test]
    fn most_specific_rule_decides() {
        let s = set(&[r#"
            path "secret/*" { capabilities = ["read", "update"] }
            path "secret/data/app/key" { capabilities = ["read"] }
        "#]);
        assert!(s.allows_any("secret/data/app/key", &[Capability::Read]));
        assert!(!s.allows_any("secret/data/app/key", &[Capability::Update]));
        assert!(s.allows_any("secret/data/other", &[Capability::Update]));
    }

    #[test]
    fn deny_overrides_grant_on_same_pattern() {
        let s = set(&[
            r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
            r#"path "secret/data/app/*" { capabilities = ["deny"] }"#,
        ]);
        assert!(!s.allows_any("secret/data/app/x", &[Capability::Read]));
    }

    #[test]
    fn grants_from_several_policies_unite() {
        let s = set(&[
            r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
            r#"path "secret/data/app/*" { capabilities = ["update"] }"#,
        ]);
        assert!(s.allows_any("secret/data/app/x", &[Capability::Update]));
        assert!(s.allows_any("secret/data/app/x", &[Capability::Read]));
    }

    #[test]
    fn root_policy_allows_everything() {
        let root = PolicySet::merge(&[ROOT_POLICY.to_owned()], |_| None);
        assert!(root.allows_any("anything/at/all", &[Capability::Delete]));
        assert!(root.is_root());
    }

    #[test]
    fn policy_names_are_validated() {
        assert!(validate_policy_name("app-read.v2").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(200)] {
            assert!(validate_policy_name(bad).is_err(), "{bad:?}");
        }
    }
}
