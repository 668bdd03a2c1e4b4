//! `keyward import FILE.env PATH`: writes the variables of a dotenv file as a new version of
//! one secret. The new version contains exactly the file's variables: fields of the current
//! version that the file lacks are not carried over.
//!
//! Accepted syntax: `KEY=VALUE` lines with an optional `export ` prefix, blank lines and `#`
//! comments. Unquoted values are trimmed and end at ` #`. Single-quoted values are literal.
//! Double-quoted values take the escapes `\n`, `\r`, `\t`, `\"`, `\\`, `\$`, `` \` `` and `\'`.
//! Quoted values may span lines. Variable references (`${OTHER}`) are not expanded.
//! Errors name the line, never the value.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use keyward_store::SecretPath;

use crate::cli::ClientArgs;
use crate::client::Client;
use crate::error::CliError;

/// Options of `keyward import`.
#[derive(Debug, Args)]
#[command(
    after_help = "The import replaces the whole secret: its new version contains exactly the file's variables, and fields of the current version that the file lacks are not carried over."
)]
pub struct ImportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Dotenv file to read; `-` reads standard input.
    pub file: PathBuf,
    /// Secret path to write, e.g. team/service/config.
    pub path: String,
}

/// Runs `keyward import`.
pub async fn run(args: ImportArgs) -> Result<(), CliError> {
    let path = SecretPath::parse(&args.path)
        .map_err(|e| CliError::Usage(format!("invalid secret path {:?}: {e}", args.path)))?;
    let text = read_input(&args.file)?;
    let variables = parse_dotenv(&text)?;
    if variables.is_empty() {
        return Err(CliError::Usage(format!(
            "{} contains no variables; nothing to import",
            args.file.display()
        )));
    }

    let data: serde_json::Map<String, Value> = variables
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.to_string())))
        .collect();
    let body = json!({ "data": data });
    let response = Client::new(&args.client)?
        .request(Method::PUT, &format!("secret/data/{path}"), Some(&body))
        .await?;
    eprintln!(
        "imported {} into {path} (version {})",
        count_variables(variables.len()),
        response["data"]["version"]
    );
    Ok(())
}

/// Formats a variable count with the right plural, e.g. "1 variable", "3 variables".
fn count_variables(count: usize) -> String {
    if count == 1 {
        "1 variable".to_owned()
    } else {
        format!("{count} variables")
    }
}

fn read_input(file: &PathBuf) -> Result<Zeroizing<String>, CliError> {
    let mut text = Zeroizing::new(String::new());
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Other(format!("cannot read standard input: {e}")))?;
    } else {
        let mut opened = std::fs::File::open(file)
            .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
        opened
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    }
    Ok(text)
}

/// Parses dotenv text into variables. A later line overrides an earlier one with the same key.
pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, Zeroizing<String>>, CliError> {
    let mut variables = BTreeMap::new();
    let mut lines = text.split('\n').enumerate().peekable();

    while let Some((index, raw_line)) = lines.next() {
        let number = index + 1;
        let line = raw_line.trim_end_matches('\r').trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(line, str::trim_start);

        let invalid = |why: &str| CliError::Usage(format!("invalid dotenv line {number}: {why}"));
        let (key, rest) = line
            .split_once('=')
            .ok_or_else(|| invalid("expected KEY=VALUE"))?;
        let key = key.trim_end();
        if !is_valid_key(key) {
            return Err(invalid(
                "the key must start with a letter or _ and contain only letters, digits, _, . and -",
            ));
        }
        let rest = rest.trim_start();

        let value = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let mut body = rest[1..].to_owned();
                let end = loop {
                    if let Some(end) = closing_quote(&body, quote) {
                        break end;
                    }
                    let Some((_, next)) = lines.next() else {
                        return Err(invalid("missing closing quote"));
                    };
                    body.push('\n');
                    body.push_str(next.trim_end_matches('\r'));
                };
                let trailing = body[end + 1..].trim();
                if !(trailing.is_empty() || trailing.starts_with('#')) {
                    return Err(invalid("unexpected text after the closing quote"));
                }
                let inner = &body[..end];
                if quote == '"' {
                    unescape(inner).map_err(|why| invalid(&why))?
                } else {
                    inner.to_owned()
                }
            }
            _ => {
                let end = rest.find(" #").or_else(|| rest.find("\t#"));
                rest[..end.unwrap_or(rest.len())].trim_end().to_owned()
            }
        };
        variables.insert(key.to_owned(), Zeroizing::new(value));
    }
    Ok(variables)
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Finds the unescaped closing quote (a backslash escapes only inside double quotes).
fn closing_quote(body: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (index, c) in body.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote == '"' {
            escaped = true;
        } else if c == quote {
            return Some(index);
        }
    }
    None
}

fn unescape(inner: &str) -> Result<String, String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other @ ('"' | '\\' | '$' | '`' | '\'')) => out.push(other),
            Some(other) => return Err(format!("unknown escape \\{other}")),
            None => return Err("backslash at the end of the value".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> BTreeMap<String, String> {
        parse_dotenv(text)
            .expect("valid dotenv")
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    #[test]
    fn plain_quoted_and_exported_lines_parse() {
        let vars = parsed(
            "# comment\n\nA=1\nexport B = two words  # note\nC='single $x \\n'\nD=\"esc \\\"q\\\" \\n \\\\ \\$HOME\"\r\n",
        );
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "single $x \\n");
        assert_eq!(vars["D"], "esc \"q\" \n \\ $HOME");
    }

    #[test]
    fn quoted_values_span_lines() {
        let vars = parsed("KEY=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT=x\n");
        assert_eq!(vars["KEY"], "-----BEGIN-----\nabc\n-----END-----");
        assert_eq!(vars["NEXT"], "x");
    }

    #[test]
    fn hash_inside_value_is_kept() {
        let vars = parsed("URL=https://x/#frag\nQ=\"a # b\"\n");
        assert_eq!(vars["URL"], "https://x/#frag");
        assert_eq!(vars["Q"], "a # b");
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        for (text, line) in [
            ("A=1\nnot a pair\n", 2),
            ("A=\"kw-canary-open\n", 1),
            ("1BAD=x\n", 1),
            ("A=\"kw-canary-esc\\q\"\n", 1),
            ("A=\"kw-canary\" trailing\n", 1),
        ] {
            let error = parse_dotenv(text).expect_err(text).to_string();
            assert!(error.contains(&format!("line {line}")), "{error}");
            assert!(!error.contains("kw-canary"), "{error}");
        }
    }

    #[test]
    fn escaped_backtick_in_double_quotes_is_a_backtick() {
        let vars = parsed("A=\"\\`id\\`\"\n");
        assert_eq!(vars["A"], "`id`");
    }

    #[test]
    fn variable_count_uses_singular_for_one() {
        assert_eq!(count_variables(1), "1 variable");
        assert_eq!(count_variables(0), "0 variables");
        assert_eq!(count_variables(2), "2 variables");
    }

    #[test]
    fn export_word_alone_is_a_key() {
        let vars = parsed("exported=1\nexport=2\n");
        assert_eq!(vars["exported"], "1");
        assert_eq!(vars["export"], "2");
    }
}
