//! The integration and end-to-end tests, one module per part of the product, in one binary
//! (one link instead of thirteen) sharing one harness, the `shuttle_tests` library (`tests/src`).
//! Run one part with `bash infra/local/test.sh -p shuttle-tests --test e2e builds::`.
//!
//! Two tests have binaries of their own, because each changes the whole process:
//! `tests/faults_emulator.rs` freezes the AWS emulator every test here uses, and `tests/leaks.rs`
//! installs the process's log subscriber to read every line it logs.

// The adapters, each against its real part (the AWS emulator, HTTP servers, the Kafka broker,
// the Jenkins stand-in, the sources script).
mod adapters;
mod delivery_adapters;
mod fetch;
mod jenkins;
mod prepare_sources;
mod tls;

// The whole stack through the local gateway.
mod api;
mod auth;
mod builds;
mod faults;
mod images;
mod ssrf;
mod webhooks;
