//! The TLS configuration of the shuttle's own HTTP clients (Jenkins, sources, webhooks), built
//! once per process and shared by all three.
//!
//! The roots are Mozilla's, compiled in (`webpki-roots`): no file is read at start, which on a
//! machine with a few hundred certificates in `/etc/ssl/certs` was most of a function's cold
//! start (issue 7). `SSL_CERT_FILE` or `SSL_CERT_DIR`, when set, name the certificates to trust
//! instead, read as OpenSSL reads them: that is how a private Jenkins CA is trusted.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use shuttle_core::error::ServiceError;

/// The settings that replace the compiled-in roots.
const TRUST_SETTINGS: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The client configuration, built at the first call; an unusable `SSL_CERT_FILE` or
/// `SSL_CERT_DIR` is an error naming it, at every call.
pub fn client_config() -> Result<ClientConfig, ServiceError> {
    static CONFIG: OnceLock<Result<ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let [file, dir] = TRUST_SETTINGS.map(|name| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from));
            roots(file, dir).and_then(build)
        })
        .clone()
        .map_err(|problem| ServiceError::new("tls", problem))
}

/// A reqwest client builder on this TLS configuration: reqwest has no cryptography of its own
/// here (`rustls-no-provider`), so every reqwest client in the workspace starts from this one.
pub fn reqwest_builder() -> Result<reqwest::ClientBuilder, ServiceError> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(client_config()?))
}

/// Mozilla's roots, or the certificates in `file` and `dir` (`SSL_CERT_FILE`, `SSL_CERT_DIR`)
/// when either is given.
pub fn roots(file: Option<PathBuf>, dir: Option<PathBuf>) -> Result<RootCertStore, String> {
    if file.is_none() && dir.is_none() {
        return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    }
    let named = [(&file, TRUST_SETTINGS[0]), (&dir, TRUST_SETTINGS[1])]
        .iter()
        .filter_map(|(value, name)| value.as_ref().map(|_| *name))
        .collect::<Vec<_>>()
        .join(" and ");
    let found = rustls_native_certs::load_certs_from_paths(file.as_deref(), dir.as_deref());
    if let Some(error) = found.errors.first() {
        return Err(format!("{named}: {error}"));
    }
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(format!("{named} names no usable certificate ({unusable} could not be read as one)"));
    }
    Ok(roots)
}

/// A client configuration trusting `roots`, with ring as its cryptography (as the AWS SDK's,
/// see [`crate::wiring::load_sdk_config`]).
pub fn build(roots: RootCertStore) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    Ok(config.with_root_certificates(roots).with_no_client_auth())
}
