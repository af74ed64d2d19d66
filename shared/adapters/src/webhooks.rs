//! Webhook delivery over `http(s)` (SPEC §5): one JSON `POST` per status change, and log
//! streams, chunked `POST`s held open while the poller tails Jenkins.
//!
//! Userinfo in a target URL is sent as HTTP Basic auth, never in the request itself. Redirects
//! are answers like any other, never followed: the credentials go only where they were given for.
//!
//! Every target goes through the SSRF guard ([`crate::guard`]): address literals are checked
//! before the request, names by the client's resolver, which connects only to checked addresses.
//! A refusal is a [`SendError::refused`]: final.
//!
//! A log stream has no whole-request timeout (it lives for a window, up to 60 s, and may be idle
//! for seconds between frames); the receiver's answer must come within the client's timeout
//! once the writer has finished the body.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, Response};
use shuttle_core::error::ServiceError;
use shuttle_core::netguard::AllowedNetworks;
use shuttle_core::ports::{Answer, LogStream, SendError, WebhookClient};
use shuttle_core::redact::redact;
use tokio::sync::{mpsc, oneshot};
use url::Url;

use crate::fetch::{decoded, describe, without_userinfo};
use crate::guard::{check_url, refusal_in, GuardedResolver};

/// How long a receiver may take to answer: a whole JSON `POST`, or a log stream once its body
/// has ended.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many body frames of a log stream may wait to be sent before writing to it waits.
const STREAM_FRAMES: usize = 16;
/// How often a log stream checks whether its writer has finished the body.
const WRITER_CHECK: Duration = Duration::from_millis(200);
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Sends webhooks with one HTTP client (and its connection pool) for every target. Cheap to
/// clone: clones share the client.
#[derive(Clone, Debug)]
pub struct HttpWebhookClient {
    http: reqwest::Client,
    timeout: Duration,
    allowed: AllowedNetworks,
}

impl HttpWebhookClient {
    /// A client whose receivers must answer within [`WEBHOOK_TIMEOUT`], and whose targets the
    /// SSRF guard refuses unless `allowed` opens them. Builds the HTTP client only: no network call.
    pub fn new(allowed: AllowedNetworks) -> Result<Self, ServiceError> {
        Self::with_timeout(WEBHOOK_TIMEOUT, allowed)
    }

    /// A client whose receivers must answer within `timeout`: a JSON `POST` as a whole, a log
    /// stream once its body has ended.
    pub fn with_timeout(timeout: Duration, allowed: AllowedNetworks) -> Result<Self, ServiceError> {
        let http = crate::tls::reqwest_builder()?
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver::new(allowed.clone()))
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ServiceError::new("http client", e))?;
        Ok(Self { http, timeout, allowed })
    }

    /// A `POST` to `url` with `headers` (a `Content-Type` among them wins over `content_type`),
    /// and the URL's userinfo as Basic auth unless the headers carry an `Authorization`.
    fn post(&self, url: &str, headers: Vec<(String, String)>, content_type: &'static str) -> Result<RequestBuilder, SendError> {
        let target = Target::parse(url)?;
        if let Err(refusal) = check_url(&target.url, &self.allowed) {
            return Err(SendError::refused(format!("{} is refused: {refusal}", redact(url))));
        }
        let mut map = HeaderMap::with_capacity(headers.len() + 2);
        for (name, value) in headers {
            // Neither is ever valid on a later attempt: final, never retried.
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::refused(format!("'{}' is not a header name", redact(&name))))?;
            // The value is not shown: it may be a credential.
            let value = HeaderValue::from_str(&value)
                .map_err(|_| SendError::refused(format!("the value of the {name} header is not a valid HTTP header value")))?;
            map.append(name, value);
        }
        map.entry(CONTENT_TYPE).or_insert(HeaderValue::from_static(content_type));
        let authorized = map.contains_key(AUTHORIZATION);
        let request = self.http.post(target.url).headers(map);
        Ok(match target.credentials {
            Some((user, password)) if !authorized => request.basic_auth(user, Some(password)),
            _ => request,
        })
    }
}

#[async_trait]
impl WebhookClient for HttpWebhookClient {
    async fn post_json(&self, url: &str, headers: Vec<(String, String)>, body: Bytes) -> Result<Answer, SendError> {
        let request = self.post(url, headers, JSON)?.timeout(self.timeout).body(body);
        let response = request.send().await.map_err(|e| send_error(url, e))?;
        Ok(answer_of(&response))
    }

    /// Must be called within a Tokio runtime: the request runs in a task of its own.
    fn stream(&self, url: &str, headers: Vec<(String, String)>) -> LogStream {
        let (body, frames) = mpsc::channel(STREAM_FRAMES);
        let (answer_tx, answer) = oneshot::channel();
        let request = self.post(url, headers, TEXT);
        let (writer, timeout, url) = (body.downgrade(), self.timeout, url.to_owned());
        tokio::spawn(async move {
            match request {
                Ok(request) => send_stream(&url, request, frames, writer, timeout, answer_tx).await,
                // Dropping `frames` closes the body: the writer sees it at once.
                Err(error) => {
                    let _ = answer_tx.send(Err(error));
                }
            }
        });
        LogStream { body, answer }
    }
}

/// Sends a log stream and reports its answer: the receiver's, or why there is none (the request
/// failed, or no answer came within `timeout` of the writer finishing the body).
async fn send_stream(
    url: &str,
    request: RequestBuilder,
    frames: mpsc::Receiver<Bytes>,
    writer: mpsc::WeakSender<Bytes>,
    timeout: Duration,
    mut answer: oneshot::Sender<Result<Answer, SendError>>,
) {
    let frames = Arc::new(Mutex::new(Frames { receiver: frames, stopped: false }));
    let response = request.body(reqwest::Body::wrap_stream(BodyFrames(frames.clone()))).send();
    // From the writer's end, not the body's: a receiver that stops reading must not hold the
    // answer back past the deadline.
    let deadline = async {
        while writer.strong_count() > 0 {
            tokio::time::sleep(WRITER_CHECK).await;
        }
        tokio::time::sleep(timeout).await;
    };
    let result = tokio::select! {
        response = response => response.map(|r| answer_of(&r)).map_err(|e| send_error(url, e)),
        () = deadline => Err(SendError::new(format!("no answer within {timeout:?} of the end of the log stream"))),
        // Nobody waits for the answer any more: the request is dropped.
        () = answer.closed() => Err(SendError::new("the log stream was abandoned".to_owned())),
    };
    // Whatever the answer, nothing more is sent, and the writer learns it.
    frames.lock().unwrap_or_else(PoisonError::into_inner).stop();
    let _ = answer.send(result);
}

/// The receiving end of a log stream's body, shared by the body and the task sending it, so
/// that the task can close it once the stream has an answer.
struct Frames {
    receiver: mpsc::Receiver<Bytes>,
    stopped: bool,
}

impl Frames {
    fn stop(&mut self) {
        self.stopped = true;
        self.receiver.close();
    }
}

/// A log stream's body: the frames written, until the writer drops its sender. Once the stream
/// has an answer, the body fails rather than ending: what was sent is not a finished body.
struct BodyFrames(Arc<Mutex<Frames>>);

impl Stream for BodyFrames {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut frames = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if frames.stopped {
            return Poll::Ready(Some(Err(std::io::Error::other("the log stream has already been answered"))));
        }
        frames.receiver.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

/// Why a request to `url` got no answer: the SSRF guard's refusal (final), or a transport error.
fn send_error(url: &str, error: reqwest::Error) -> SendError {
    match refusal_in(&error) {
        Some(refusal) => SendError::refused(format!("{} is refused: {refusal}", redact(url))),
        None => SendError::new(describe(error)),
    }
}

fn answer_of(response: &Response) -> Answer {
    let retry_after = response.headers().get(RETRY_AFTER).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    Answer { status: response.status().as_u16(), retry_after }
}

/// A webhook URL, parsed: what is requested, and the credentials its userinfo carried.
#[derive(Debug)]
struct Target {
    /// The URL given, without its userinfo.
    url: Url,
    /// User and password, percent-decoded; a lone token is the user, with an empty password.
    credentials: Option<(String, String)>,
}

impl Target {
    fn parse(url: &str) -> Result<Self, SendError> {
        // The text is not shown: without a parsed authority, redaction could miss a password.
        // A URL that no request can be made to is final.
        let given = Url::parse(url).map_err(|e| SendError::refused(format!("the webhook URL is not a valid URL ({e})")))?;
        if !matches!(given.scheme(), "http" | "https") || given.host_str().is_none_or(str::is_empty) || given.port() == Some(0) {
            return Err(SendError::refused(format!("{} is not an http or https URL that can be dialled", redact(given.as_str()))));
        }
        let credentials = (!given.username().is_empty() || given.password().is_some())
            .then(|| (decoded(given.username()), given.password().map(decoded).unwrap_or_default()));
        Ok(Self { url: without_userinfo(given), credentials })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_decoded_credentials_and_leaves_the_url() {
        let target = Target::parse("https://b%40t:p%3Ass@hooks.example/logs?x=1").unwrap();
        assert_eq!(target.url.as_str(), "https://hooks.example/logs?x=1");
        assert_eq!(target.credentials, Some(("b@t".to_owned(), "p:ss".to_owned())));
    }

    #[test]
    fn a_lone_token_is_the_user_with_an_empty_password() {
        let target = Target::parse("https://token@hooks.example/status").unwrap();
        assert_eq!(target.url.as_str(), "https://hooks.example/status");
        assert_eq!(target.credentials, Some(("token".to_owned(), String::new())));
        assert_eq!(Target::parse("https://hooks.example/status").unwrap().credentials, None);
    }

    #[test]
    fn bad_urls_are_refused_without_showing_credentials() {
        for url in ["ftp://u:s3cret@hooks.example/x", "https://u:se/cret@", "kafka://u:s3cret@k:9092/t", "https://u:s3cret@h.example:0/"] {
            let SendError { message, refused } = Target::parse(url).unwrap_err();
            assert!(!message.contains("s3cret") && !message.contains("se/cret"), "{url}: {message}");
            assert!(refused, "{url}: no request can ever be made to it, so it is final");
        }
    }

    #[test]
    fn a_header_no_request_can_carry_is_final() {
        let client = HttpWebhookClient::new(AllowedNetworks::none()).unwrap();
        for header in [("X-Token", "a\nb"), ("Bad Name", "v")] {
            let headers = vec![(header.0.to_owned(), header.1.to_owned())];
            let Err(error) = client.post("https://hooks.example/s", headers, JSON) else { panic!("{header:?} was sent") };
            assert!(error.refused, "{header:?}: {error}");
            assert!(!error.message.contains("a\nb"), "the value is not shown: {error}");
        }
    }
}
