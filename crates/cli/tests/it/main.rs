//! End-to-end tests of the `keyward` binary: each test starts real servers as child processes
//! and drives them over TLS with real clients (`curl`, `openssl s_client`, the `bao` CLI, the
//! `keyward` CLI and reqwest).
//!
//! Tests that need the `bao` CLI or an OpenBao dev server read `KEYWARD_TEST_BAO_BIN`,
//! `KEYWARD_TEST_OPENBAO_ADDR` and `KEYWARD_TEST_OPENBAO_TOKEN`, which `scripts/test.sh` sets.

mod access;
mod audit;
mod bad_input;
mod bao_cli;
mod cli;
mod cli_errors;
mod client;
mod compare;
mod doctor;
mod durability;
mod first_use;
mod harness;
mod keys;
mod mtls;
mod outage;
mod pentest;
mod rotation;
mod run;
mod tls;
mod vault_backend;
