//! The client-side commands: each maps onto one or two API calls and prints the result.

pub mod audit;
pub mod export;
pub mod import;
pub mod keys;
pub mod kv;
mod mask;
pub mod policy;
mod rotate_root;
pub mod rotation;
pub mod run;
pub mod token;

use serde_json::Value;

/// Prints rows of key and value in two aligned columns.
pub fn print_table(rows: &[(String, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0).max(3);
    println!("{:<width$}    Value", "Key");
    println!("{:<width$}    -----", "---");
    for (key, value) in rows {
        println!("{key:<width$}    {value}");
    }
}

/// Renders a JSON value for a table cell: strings bare, everything else as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "n/a".to_owned(),
        other => other.to_string(),
    }
}

/// Prints a JSON value on one line.
pub fn print_json(value: &Value) {
    println!("{value}");
}
