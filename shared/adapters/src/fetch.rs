//! Downloads `http(s)` sources into the source cache (SPEC §4, the poller's first step).
//!
//! The body is streamed into a temporary file and uploaded to S3 from there, so memory stays
//! flat whatever the size of the sources, and the size cap is enforced while the bytes arrive.
//! Redirects are followed by hand so that every target goes through [`check_target`] and the
//! SSRF guard ([`crate::guard`]), and the credentials of the URL go only to the origin they were
//! given for. The client resolves through the guard, so it connects only to checked addresses.
//! An address the guard refuses fails the build like any other unusable source.
//!
//! Everything that goes wrong on the source server's side (unreachable, slow, 404, too large,
//! too many redirects) is [`FetchError::Failed`] with a message naming the redacted URL: the
//! build fails with that line in its log. Only our own disk and S3 failing are worth retrying.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};
use shuttle_core::error::{with_causes, ServiceError};
use shuttle_core::netguard::AllowedNetworks;
use shuttle_core::ports::{FetchError, SourceFetcher, SourceStore};
use shuttle_core::redact::redact;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;
use url::{Origin, Url};
use uuid::Uuid;

use crate::built::Built;
use crate::guard::{check_dialled, check_url, refusal_in, DialCheck, GuardedResolver};
use crate::s3::S3SourceStore;

/// How many redirects a download may take (SPEC §4).
const MAX_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a registry's name may take to resolve before it is left to Jenkins.
const REGISTRY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest the source server may stay silent, while answering or while sending the body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a whole download may take: it must end well inside the poller's 90 s timeout,
/// or every retry would be cut off the same way and the build would only end by the give-up bound.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Caches a build's `http(s)` sources in S3 under its source id.
pub struct HttpSourceFetcher {
    /// Built at the first download: most builds' sources are not `http(s)`.
    http: Built<Result<reqwest::Client, String>>,
    sources: Arc<S3SourceStore>,
    max_bytes: u64,
    allowed: AllowedNetworks,
}

impl HttpSourceFetcher {
    /// A fetcher that refuses sources larger than `max_bytes`, and hosts the SSRF guard refuses
    /// unless `allowed` opens them. No network call; the HTTP client is built when first needed.
    pub fn new(sources: Arc<S3SourceStore>, max_bytes: u64, allowed: AllowedNetworks) -> Self {
        let guard = allowed.clone();
        let http = Built::on_first_use(move || {
            crate::tls::reqwest_builder()
                .map_err(|e| e.to_string())?
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(GuardedResolver::new(guard))
                .no_proxy()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .build()
                .map_err(|e| format!("the HTTP client: {e}"))
        });
        Self { http, sources, max_bytes, allowed }
    }

    /// Sends the GETs, following at most [`MAX_REDIRECTS`] redirects, and returns the first
    /// answer that is not a redirect, whatever its status.
    async fn follow_redirects(&self, source: &SourceUrl) -> Result<Response, FetchError> {
        let mut target = source.url.clone();
        let mut redirects = 0;
        loop {
            check_target(&target)?;
            if let Err(refusal) = check_url(&target, &self.allowed) {
                return Err(source.refused(&target, refusal));
            }
            let response = self.get(source, &target).await?;
            if !is_redirect(response.status()) {
                return Ok(response);
            }
            if redirects == MAX_REDIRECTS {
                return Err(source.failed(format!("redirected more than {MAX_REDIRECTS} times")));
            }
            redirects += 1;
            target = source.redirect_target(&target, &response)?;
        }
    }

    async fn get(&self, source: &SourceUrl, target: &Url) -> Result<Response, FetchError> {
        let http = self.http.as_ref().map_err(|e| FetchError::Service(ServiceError::new("sources fetcher", e.clone())))?;
        let mut request = http.get(target.clone());
        if let Some(credentials) = source.credentials_for(target) {
            request = request.basic_auth(&credentials.user, Some(&credentials.password));
        }
        request.send().await.map_err(|e| match refusal_in(&e) {
            Some(refusal) => source.refused(target, refusal),
            None => source.failed(format!("could not be downloaded: {}", describe(e))),
        })
    }

    /// Streams the body of `response` into a temporary file, stopping as soon as it grows past
    /// the cap. The file is deleted when the returned handle is dropped.
    async fn download(&self, source: &SourceUrl, mut response: Response) -> Result<NamedTempFile, FetchError> {
        let too_large = || source.failed(format!("are larger than {} bytes", self.max_bytes));
        if response.content_length().is_some_and(|length| length > self.max_bytes) {
            return Err(too_large());
        }
        let temp = NamedTempFile::new().map_err(disk_error)?;
        let mut file = tokio::fs::File::from_std(temp.as_file().try_clone().map_err(disk_error)?);
        let mut received: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(|e| source.failed(format!("could not be downloaded: {}", describe(e))))? {
            received += chunk.len() as u64;
            if received > self.max_bytes {
                return Err(too_large());
            }
            file.write_all(&chunk).await.map_err(disk_error)?;
        }
        // A tokio file writes in the background: flushing waits until every byte is on disk.
        file.flush().await.map_err(disk_error)?;
        if received == 0 {
            return Err(source.failed("sent no data"));
        }
        Ok(temp)
    }
}

#[async_trait]
impl SourceFetcher for HttpSourceFetcher {
    async fn fetch(&self, url: &str, source_id: Uuid) -> Result<(), FetchError> {
        // A poll handled twice, or retried after S3 failed, must not download again: the link
        // may have expired meanwhile, and the first copy wins anyway.
        if self.sources.source_exists(source_id).await? {
            return Ok(());
        }
        let source = SourceUrl::parse(url)?;
        let download = async {
            let response = self.follow_redirects(&source).await?;
            if !response.status().is_success() {
                return Err(source.failed(format!("answered {}", response.status())));
            }
            self.download(&source, response).await
        };
        let file = tokio::time::timeout(DOWNLOAD_TIMEOUT, download)
            .await
            .map_err(|_| source.failed(format!("did not arrive within {} s", DOWNLOAD_TIMEOUT.as_secs())))??;
        self.sources.put_source_file(source_id, file.path()).await?;
        Ok(())
    }

    async fn check_registry(&self, registry: &str) -> Result<(), FetchError> {
        let refused = |what: String| Err(FetchError::Failed(format!("the registry {} is refused: {what}", redact(registry))));
        // A registry that cannot be checked here is not handed to Jenkins, whose own lookups
        // could reach what the guard refuses: it fails the build, with the reason.
        let unchecked = |what: String| {
            Err(FetchError::Failed(format!(
                "the registry {} could not be checked: {what}; the shuttle hands Jenkins only registries it resolved",
                redact(registry)
            )))
        };
        match tokio::time::timeout(REGISTRY_LOOKUP_TIMEOUT, check_dialled(registry, 443, &self.allowed)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(DialCheck::NotPlain)) => refused("it is not a plain host[:port]".into()),
            Ok(Err(DialCheck::Refused(reason))) => refused(reason),
            Ok(Err(DialCheck::Unresolved(error))) => unchecked(format!("it did not resolve ({})", redact(&error.to_string()))),
            Err(_) => unchecked(format!("it did not resolve within {} s", REGISTRY_LOOKUP_TIMEOUT.as_secs())),
        }
    }
}

/// Whether the shuttle may download from `url`: called for the URL given and for every
/// redirect target before it is requested.
///
/// It checks that the URL is `http` or `https` and names a host; the SSRF guard (SPEC §7) comes
/// next: [`check_url`] for address literals, the client's resolver for names.
fn check_target(url: &Url) -> Result<(), FetchError> {
    let shown = redact(url.as_str());
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Failed(format!("the sources at {shown} are not an http or https URL")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::Failed(format!("the sources at {shown} name no host")));
    }
    Ok(())
}

/// The URL a build's sources come from, parsed once: what is requested, what messages call it,
/// and the credentials its userinfo carried.
struct SourceUrl {
    /// The URL to request: the one given, without its userinfo.
    url: Url,
    /// The URL given, redacted, for messages.
    shown: String,
    credentials: Option<Credentials>,
}

/// HTTP Basic credentials, and the only origin they may be sent to.
struct Credentials {
    origin: Origin,
    user: String,
    password: String,
}

impl SourceUrl {
    fn parse(url: &str) -> Result<Self, FetchError> {
        // The text cannot be shown: without a parsed authority, redaction could miss a password.
        let given = Url::parse(url).map_err(|e| FetchError::Failed(format!("the sources URL is not a valid URL ({e})")))?;
        let credentials = (!given.username().is_empty() || given.password().is_some()).then(|| Credentials {
            origin: given.origin(),
            user: decoded(given.username()),
            password: given.password().map(decoded).unwrap_or_default(),
        });
        Ok(Self { shown: redact(given.as_str()), url: without_userinfo(given), credentials })
    }

    /// The credentials to send to `target`: only to the origin of the URL given, so a redirect
    /// elsewhere never sees them.
    fn credentials_for(&self, target: &Url) -> Option<&Credentials> {
        self.credentials.as_ref().filter(|credentials| credentials.origin == target.origin())
    }

    /// Where a redirect answered at `current` leads: its `Location`, resolved against `current`.
    /// Userinfo in it is dropped: credentials come from the URL given only.
    fn redirect_target(&self, current: &Url, response: &Response) -> Result<Url, FetchError> {
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .ok_or_else(|| self.failed(format!("answered {status} without a Location")))?
            .to_str()
            .map_err(|_| self.failed(format!("answered {status} with a Location that is not text")))?;
        let target = current.join(location).map_err(|e| self.failed(format!("answered {status} with an invalid Location ({e})")))?;
        Ok(without_userinfo(target))
    }

    /// The build's failure when the SSRF guard refuses `target`: the URL given, or a redirect.
    fn refused(&self, target: &Url, refusal: impl std::fmt::Display) -> FetchError {
        if *target == self.url {
            self.failed(format!("are refused: {refusal}"))
        } else {
            self.failed(format!("redirect to {}, which is refused: {refusal}", redact(target.as_str())))
        }
    }

    /// The build's failure: "the sources at <redacted URL> <what>".
    fn failed(&self, what: impl std::fmt::Display) -> FetchError {
        FetchError::Failed(format!("the sources at {} {what}", self.shown))
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

pub(crate) fn decoded(userinfo_part: &str) -> String {
    percent_encoding::percent_decode_str(userinfo_part).decode_utf8_lossy().into_owned()
}

pub(crate) fn without_userinfo(mut url: Url) -> Url {
    // Both fail only for URLs without a host, which `check_target` refuses anyway.
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url
}

/// A transport error with its causes ("error sending request: … : connection refused"), without
/// the URL reqwest adds: it names the redirect target, which may carry a signed query.
pub(crate) fn describe(error: reqwest::Error) -> String {
    redact(&with_causes(&error.without_url()))
}

/// Our own temporary file failing: not the source server's fault, worth a retry.
fn disk_error(error: std::io::Error) -> FetchError {
    FetchError::Service(ServiceError::new("temporary file", error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(result: Result<impl Sized, FetchError>) -> String {
        match result {
            Err(FetchError::Failed(message)) => message,
            Err(other) => panic!("expected a build failure, got {other:?}"),
            Ok(_) => panic!("expected a build failure, got Ok"),
        }
    }

    #[test]
    fn only_http_and_https_targets_are_taken() {
        for url in ["http://example.com/a.tgz", "https://example.com:8443/a.tgz"] {
            assert!(check_target(&Url::parse(url).unwrap()).is_ok(), "{url}");
        }
        for url in ["file:///etc/passwd", "ftp://example.com/a.tgz", "docker://example.com/org/repo:tag", "data:,hello"] {
            let message = failure(check_target(&Url::parse(url).unwrap()));
            assert!(message.contains("not an http or https URL"), "{url}: {message}");
        }
    }

    #[test]
    fn userinfo_becomes_decoded_credentials_and_leaves_the_url() {
        let source = SourceUrl::parse("https://bot:p%40ss%3Aw0rd@src.example/a.tgz").unwrap();
        assert_eq!(source.url.as_str(), "https://src.example/a.tgz");
        assert_eq!(source.shown, "https://bot:***@src.example/a.tgz");
        let credentials = source.credentials.unwrap();
        assert_eq!((credentials.user.as_str(), credentials.password.as_str()), ("bot", "p@ss:w0rd"));
    }

    #[test]
    fn a_lone_token_is_the_user_with_an_empty_password() {
        let source = SourceUrl::parse("https://tok%20en@src.example/a.tgz").unwrap();
        assert_eq!(source.shown, "https://***@src.example/a.tgz");
        let credentials = source.credentials.unwrap();
        assert_eq!((credentials.user.as_str(), credentials.password.as_str()), ("tok en", ""));
    }

    #[test]
    fn credentials_go_to_their_own_origin_only() {
        let source = SourceUrl::parse("https://u:p@src.example/a.tgz").unwrap();
        let same = Url::parse("https://src.example:443/elsewhere").unwrap();
        assert!(source.credentials_for(&same).is_some());
        for other in ["https://cdn.example/a.tgz", "http://src.example/a.tgz", "https://src.example:8443/a.tgz"] {
            assert!(source.credentials_for(&Url::parse(other).unwrap()).is_none(), "{other}");
        }
    }

    #[test]
    fn an_unparsable_url_is_not_echoed() {
        let message = failure(SourceUrl::parse("https://u:se/cret@"));
        assert!(!message.contains("se/cret"), "{message}");
    }
}
