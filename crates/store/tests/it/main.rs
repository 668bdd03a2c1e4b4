//! Integration tests of the SQLite store against real database files in temporary directories.

mod at_rest;
mod common;
mod listing;
mod metadata;
mod rewrap;
mod tokens;
mod versions;
