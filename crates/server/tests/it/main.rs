//! Integration tests of the HTTPS API against a real server on 127.0.0.1 with a fresh data
//! dir and a development certificate.

mod client_auth;
mod golden;
mod harness;
mod keys;
mod routes;
mod telemetry;
mod tls;
mod transport;
