//! Integration tests of the manager over a real SQLite store and audit log.

mod access;
mod audit_trail;
mod auth;
mod common;
mod keys;
mod kv;
mod resilience;
mod rotation;
mod tokens;
