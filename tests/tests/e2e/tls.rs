//! The TLS of the shuttle's HTTP clients (`shuttle_adapters::tls`): Mozilla's roots compiled in,
//! replaced by `SSL_CERT_FILE`/`SSL_CERT_DIR` when they are set, and certificates checked
//! against them. The receiver is a real TLS server on loopback whose certificate comes from a
//! CA made for these tests (`tests/fixtures/tls`).

use std::path::PathBuf;
use std::sync::Arc;

use local_gateway::stack::LOCAL_ALLOWED_PRIVATE_CIDRS;
use shuttle_adapters::{tls, HttpWebhookClient};
use shuttle_core::netguard::AllowedNetworks;
use shuttle_core::ports::WebhookClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls").join(name)
}

/// An HTTPS server on 127.0.0.1 answering every request `204`; its `https://localhost:…` URL.
async fn https_receiver() -> String {
    let certs = CertificateDer::pem_file_iter(fixture("receiver.pem")).expect("the certificate").collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("receiver.key")).expect("the key");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a server configuration");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else { return };
                let mut head = Vec::new();
                let mut buffer = [0_u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("https://localhost:{port}/status")
}

fn loopback() -> AllowedNetworks {
    LOCAL_ALLOWED_PRIVATE_CIDRS.parse().expect("the local run's CIDRs")
}

#[test]
fn mozilla_roots_are_the_default_and_ssl_cert_file_replaces_them() {
    let mozilla = tls::roots(None, None).expect("the compiled-in roots");
    assert!(mozilla.len() > 100, "{} roots", mozilla.len());
    let private = tls::roots(Some(fixture("ca.pem")), None).expect("the test CA");
    assert_eq!(private.len(), 1);
    let directory = tls::roots(None, Some(fixture(""))).expect("the fixtures directory");
    assert_eq!(directory.len(), 2, "the CA and the receiver's certificate");
}

#[test]
fn an_unusable_ssl_cert_file_or_dir_is_an_error_naming_the_setting() {
    let missing = tls::roots(Some(fixture("missing.pem")), None).expect_err("no such file");
    assert!(missing.starts_with("SSL_CERT_FILE: "), "{missing}");
    let no_certificate = tls::roots(Some(fixture("README.md")), None).expect_err("no certificate in it");
    assert!(no_certificate.starts_with("SSL_CERT_FILE names no usable certificate"), "{no_certificate}");
    let both = tls::roots(Some(fixture("missing.pem")), Some(fixture("missing"))).expect_err("neither exists");
    assert!(both.starts_with("SSL_CERT_FILE and SSL_CERT_DIR: "), "{both}");
}

#[tokio::test]
async fn a_receiver_whose_certificate_is_not_from_a_trusted_root_is_refused() {
    let url = https_receiver().await;
    // The adapter as deployed: the test CA is neither among Mozilla's roots nor in the system's
    // store, which SSL_CERT_FILE or SSL_CERT_DIR may name on a developer's machine.
    let client = HttpWebhookClient::new(loopback()).expect("a client");
    let error = client.post_json(&url, vec![], "{}".into()).await.expect_err("an unknown issuer");
    assert!(!error.refused, "a TLS failure is retried like any other: {error:?}");

    // The same request with the test CA trusted goes through.
    let trusting = reqwest::Client::builder()
        // The test CA instead of the shared configuration's roots.
        .tls_backend_preconfigured(tls::build(tls::roots(Some(fixture("ca.pem")), None).unwrap()).unwrap())
        .build()
        .unwrap();
    let answer = trusting.post(&url).body("{}").send().await.expect("the test CA is trusted");
    assert_eq!(answer.status(), 204);
}
