//! Fuzzes the audit line parser that `keyward audit verify` runs on every line: arbitrary
//! bytes must yield a sequence number or an error, never a panic.

#![no_main]

use keyward_audit::{VerifyError, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_line(data) {
        Ok(_) | Err(VerifyError::Malformed { .. } | VerifyError::Edited { .. }) => {}
        Err(other) => panic!("unexpected error kind from parse_line: {other}"),
    }
});
