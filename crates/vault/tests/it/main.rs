//! Integration tests of the Vault client against a real OpenBao server.
//!
//! They need `KEYWARD_TEST_OPENBAO_ADDR` and `KEYWARD_TEST_OPENBAO_TOKEN` (a dev server and its
//! root token), and `KEYWARD_TEST_BAO_BIN` for the tests that start servers of their own.
//! `scripts/test.sh` sets them. Each test mounts its engines under unique names, so tests can
//! share one server.

mod approle;
mod health;
mod kv;
mod support;
mod transit;
