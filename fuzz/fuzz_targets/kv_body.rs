//! Fuzzes the parsing of KV v2 request bodies (write, patch, version lists and metadata),
//! query strings and metadata paths as the server's handlers run it: arbitrary bytes must yield
//! a value or a rejection, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keyward_server::parse_kv_request_parts(data);
});
