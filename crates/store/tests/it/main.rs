//! Integration tests of the SQLite store against real database files in temporary directories,
//! and of the Vault store against a real OpenBao server.

mod at_rest;
mod batch;
mod common;
mod listing;
mod metadata;
mod read_cache;
mod rewrap;
mod stages;
mod tokens;
mod vault;
mod versions;
