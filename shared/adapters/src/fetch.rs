//! Downloads `http(s)` sources into the source cache (SPEC §4, the poller's first step).
//!
//! The body is streamed into a temporary file and uploaded to S3 from there, so memory stays
//! flat whatever the size of the sources, and the size cap is enforced while the bytes arrive.
//! The downloads of one poller (a batch of up to 10 polls at once) share the temporary disk
//! through [`TempDisk`]: each takes room for its whole size before it writes a byte and gives it
//! back once its file is deleted, so together they never write more than the disk had free.
//! Redirects are followed by hand so that every target goes through [`check_target`] and the
//! SSRF guard ([`crate::guard`]), and the credentials of the URL go only to the origin they were
//! given for. The client resolves through the guard, so it connects only to checked addresses.
//! An address the guard refuses fails the build like any other unusable source.
//!
//! Everything that goes wrong on the source server's side (unreachable, slow, 404, too large,
//! too many redirects) is [`FetchError::Failed`] with a message naming the redacted URL: the
//! build fails with that line in its log. So do sources larger than the temporary disk, and a
//! disk found full all the same: retrying would fill it again. Only S3 and our own disk failing
//! otherwise are worth retrying.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
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
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{timeout_at, Instant};
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
/// The unit room on the temporary disk is counted in.
const MIB: u64 = 1024 * 1024;

/// Caches a build's `http(s)` sources in S3 under its source id.
pub struct HttpSourceFetcher {
    /// Built at the first download: most builds' sources are not `http(s)`.
    http: Built<Result<reqwest::Client, String>>,
    sources: Arc<S3SourceStore>,
    max_bytes: u64,
    allowed: AllowedNetworks,
    /// Measured at the first download, for the same reason.
    temp: Built<Result<TempDisk, String>>,
}

impl HttpSourceFetcher {
    /// A fetcher that refuses sources larger than `max_bytes`, and hosts the SSRF guard refuses
    /// unless `allowed` opens them. No network call; the HTTP client is built when first needed.
    /// Downloads are written to the system's temporary directory (`TMPDIR`, else `/tmp`) and share
    /// the space free there at the first one.
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
        Self { http, sources, max_bytes, allowed, temp: TempDisk::on_first_use(std::env::temp_dir(), None) }
    }

    /// Writes the downloads into `dir` instead of the system's temporary directory, and lets
    /// them fill `room` bytes of it at once when given, instead of the space free there at the
    /// first download (a test's small disk).
    pub fn with_temp_disk(mut self, dir: impl Into<PathBuf>, room: Option<u64>) -> Self {
        self.temp = TempDisk::on_first_use(dir.into(), room);
        self
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

    /// The room a download takes on `disk`: its declared length, or the cap when it declares
    /// none, and never more than the whole disk.
    fn room_needed(&self, source: &SourceUrl, response: &Response, disk: &TempDisk) -> Result<u64, FetchError> {
        match response.content_length() {
            Some(length) if length > self.max_bytes => Err(source.too_large(self.max_bytes)),
            Some(length) if length > disk.capacity() => Err(source.larger_than_disk(disk.capacity())),
            Some(length) => Ok(length),
            None => Ok(self.max_bytes.min(disk.capacity())),
        }
    }

    /// Streams the body of `response` into a temporary file on `disk`, within `room`. The file
    /// is deleted, and the room given back, when the returned download is dropped.
    async fn download<'d>(
        &self,
        source: &SourceUrl,
        mut response: Response,
        disk: &TempDisk,
        room: Room<'d>,
    ) -> Result<Download<'d>, FetchError> {
        let file = NamedTempFile::new_in(&disk.dir).map_err(|e| source.disk_error(e))?;
        let mut writer = tokio::fs::File::from_std(file.as_file().try_clone().map_err(|e| source.disk_error(e))?);
        let received = write_body(source, &mut response, &mut writer, self.max_bytes, room.bytes).await?;
        if received == 0 {
            return Err(source.failed("sent no data"));
        }
        Ok(Download { file, _room: room })
    }
}

/// Streams the body of `response` into `file`, stopping as soon as it grows past the cap
/// (`max_bytes`) or past the room taken for it (`room`, smaller than the cap only when the
/// body declared no length and the disk is smaller than the cap). Returns the bytes written.
async fn write_body(
    source: &SourceUrl,
    response: &mut Response,
    file: &mut (impl AsyncWrite + Unpin),
    max_bytes: u64,
    room: u64,
) -> Result<u64, FetchError> {
    let mut received: u64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(|e| source.failed(format!("could not be downloaded: {}", describe(e))))? {
        received += chunk.len() as u64;
        if received > max_bytes {
            return Err(source.too_large(max_bytes));
        }
        if received > room {
            return Err(source.larger_than_disk(room));
        }
        file.write_all(&chunk).await.map_err(|e| source.disk_error(e))?;
    }
    // A tokio file writes in the background: flushing waits until every byte is on disk.
    file.flush().await.map_err(|e| source.disk_error(e))?;
    Ok(received)
}

/// The disk the downloads are written to, and the room left on it, counted in whole MiB.
///
/// A download takes room for its whole size ([`HttpSourceFetcher::room_needed`]) once the
/// source server has answered, before it writes a byte, and waits while the others hold it; the
/// room comes back when its file is deleted ([`Download`]). So the downloads of one poller
/// never write more at once than the disk had free at the first download. Waiting is
/// cancel-safe: a poll cut at its deadline drops a waiting download, which then holds nothing.
struct TempDisk {
    dir: PathBuf,
    /// One permit a MiB.
    room: Semaphore,
    /// All the room there is, in MiB.
    capacity_mib: u32,
}

impl TempDisk {
    /// The disk of `dir`, with `room` bytes or, without it, the space free there when first used.
    fn on_first_use(dir: PathBuf, room: Option<u64>) -> Built<Result<Self, String>> {
        Built::on_first_use(move || {
            let bytes = match room {
                Some(bytes) => bytes,
                None => free_bytes(&dir)?,
            };
            let capacity_mib = u32::try_from(bytes / MIB).unwrap_or(u32::MAX);
            tracing::debug!(dir = %dir.display(), capacity_mib, "room for downloads on the temporary disk");
            Ok(Self { room: Semaphore::new(capacity_mib as usize), capacity_mib, dir })
        })
    }

    /// All the room there is, in bytes.
    fn capacity(&self) -> u64 {
        u64::from(self.capacity_mib) * MIB
    }

    /// Room for `bytes` (in whole MiB, at most all there is), once the other downloads leave it.
    async fn reserve(&self, bytes: u64) -> Room<'_> {
        let mib = u32::try_from(bytes.div_ceil(MIB)).unwrap_or(u32::MAX).min(self.capacity_mib);
        let permit = match self.room.try_acquire_many(mib) {
            Ok(permit) => permit,
            Err(_) => {
                let free_mib = self.room.available_permits();
                tracing::info!(needed_mib = mib, free_mib, "a download waits for room on the temporary disk");
                self.room.acquire_many(mib).await.expect("the temporary disk's room is never closed")
            }
        };
        Room { bytes: u64::from(mib) * MIB, _permit: permit }
    }
}

/// The space an unprivileged process may still fill on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> Result<u64, String> {
    let stats = rustix::fs::statvfs(dir).map_err(|e| format!("the free space of {}: {e}", dir.display()))?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Room taken on the temporary disk: given back when dropped.
struct Room<'d> {
    bytes: u64,
    _permit: SemaphorePermit<'d>,
}

/// A downloaded file and the room it holds.
struct Download<'d> {
    // Fields are dropped in order: the file is deleted before its room is given back.
    file: NamedTempFile,
    _room: Room<'d>,
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
        let disk = self.temp.as_ref().map_err(|e| FetchError::Service(ServiceError::new("temporary disk", e.clone())))?;
        let late = || source.failed(format!("did not arrive within {} s", DOWNLOAD_TIMEOUT.as_secs()));
        let mut deadline = Instant::now() + DOWNLOAD_TIMEOUT;
        let answer = async {
            let response = self.follow_redirects(&source).await?;
            if !response.status().is_success() {
                return Err(source.failed(format!("answered {}", response.status())));
            }
            Ok(response)
        };
        let response = timeout_at(deadline, answer).await.map_err(|_| late())??;
        let room_needed = self.room_needed(&source, &response, disk)?;
        // Waiting for room is not the source server's time: the clock stops meanwhile (the
        // body's read timeout starts at its first read). The poll's own deadline still holds.
        let waiting = Instant::now();
        let room = disk.reserve(room_needed).await;
        deadline += waiting.elapsed();
        let download = timeout_at(deadline, self.download(&source, response, disk, room)).await.map_err(|_| late())??;
        self.sources.put_source_file(source_id, download.file.path()).await?;
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

    fn too_large(&self, max_bytes: u64) -> FetchError {
        self.failed(format!("are larger than {max_bytes} bytes"))
    }

    /// The build's failure when the sources cannot fit in the `room` the temporary disk has.
    fn larger_than_disk(&self, room: u64) -> FetchError {
        self.failed(format!(
            "are larger than the {room} bytes the poller's temporary disk has room for; \
             raise the poller function's ephemeral storage (EphemeralStorage in template.yaml)"
        ))
    }

    /// Our temporary file failing. A full disk fails the build, saying what to do: retrying would
    /// only fill it again. Anything else is worth a retry, as an outage of ours.
    fn disk_error(&self, error: std::io::Error) -> FetchError {
        if !is_disk_full(&error) {
            return FetchError::Service(ServiceError::new("temporary file", error));
        }
        self.failed(format!(
            "could not be written: the poller's temporary disk is full ({error}); raise the poller \
             function's ephemeral storage (EphemeralStorage in template.yaml) or lower SOURCE_MAX_BYTES"
        ))
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

/// Whether writing failed for want of space: `ENOSPC`, `EDQUOT`, or an error that says so.
fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) || error.to_string().contains("No space left on device")
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

    fn source() -> SourceUrl {
        SourceUrl::parse("https://u:canarypw@src.example/a.tgz").unwrap()
    }

    fn answer(body: Vec<u8>) -> Response {
        Response::from(http::Response::new(body))
    }

    #[tokio::test]
    async fn a_write_on_a_full_disk_fails_the_build_saying_what_to_do() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let mut full = tokio::fs::OpenOptions::new().write(true).open("/dev/full").await.expect("open /dev/full");

        let message = failure(write_body(&source(), &mut answer(vec![7; 64 * 1024]), &mut full, MIB, MIB).await);

        assert!(
            message.starts_with("the sources at https://u:***@src.example/a.tgz could not be written: the poller's temporary disk is full"),
            "{message}"
        );
        assert!(message.contains("ephemeral storage") && message.contains("SOURCE_MAX_BYTES"), "{message}");
    }

    #[test]
    fn only_a_full_disk_fails_the_build_other_disk_errors_are_retried() {
        let full = [
            std::io::Error::from_raw_os_error(28),  // ENOSPC
            std::io::Error::from_raw_os_error(122), // EDQUOT
            std::io::Error::from(ErrorKind::StorageFull),
            std::io::Error::other("writing the chunk: No space left on device"),
        ];
        for error in full {
            let shown = error.to_string();
            let message = failure(Err::<(), _>(source().disk_error(error)));
            assert!(message.contains("temporary disk is full"), "{shown}: {message}");
        }
        for error in [std::io::Error::from(ErrorKind::PermissionDenied), std::io::Error::from_raw_os_error(5)] {
            let shown = error.to_string();
            assert!(matches!(source().disk_error(error), FetchError::Service(_)), "{shown} is retried");
        }
    }

    #[tokio::test]
    async fn a_body_without_a_length_stops_at_the_room_it_was_given() {
        let mut sink = tokio::io::sink();

        let message = failure(write_body(&source(), &mut answer(vec![7; 2 * MIB as usize]), &mut sink, 4 * MIB, MIB).await);

        assert!(message.ends_with(&format!("are larger than the {MIB} bytes the poller's temporary disk has room for; raise the poller function's ephemeral storage (EphemeralStorage in template.yaml)")), "{message}");
    }

    fn disk(dir: &Path, room: u64) -> Built<Result<TempDisk, String>> {
        TempDisk::on_first_use(dir.to_owned(), Some(room))
    }

    #[tokio::test]
    async fn room_is_taken_in_whole_mib_and_never_more_than_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 3 * MIB + 5);
        let disk = disk.as_ref().unwrap();
        assert_eq!(disk.capacity(), 3 * MIB);

        let one = disk.reserve(1).await;
        assert_eq!((one.bytes, disk.room.available_permits()), (MIB, 2));
        drop(one);
        let all = disk.reserve(100 * MIB).await;
        assert_eq!((all.bytes, disk.room.available_permits()), (3 * MIB, 0));
    }

    #[tokio::test]
    async fn a_download_waiting_for_room_holds_none_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 2 * MIB);
        let disk = disk.as_ref().unwrap();
        let first = disk.reserve(2 * MIB).await;

        let cut = tokio::time::timeout(Duration::from_millis(50), disk.reserve(MIB)).await;
        assert!(cut.is_err(), "no room while the first download holds it all");
        drop(first);

        assert_eq!(disk.room.available_permits(), 2, "the dropped wait took nothing");
    }

    #[tokio::test]
    async fn a_dropped_download_deletes_its_file_then_gives_its_room_back() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 2 * MIB);
        let disk = disk.as_ref().unwrap();
        let download = Download { file: NamedTempFile::new_in(dir.path()).unwrap(), _room: disk.reserve(MIB).await };
        let path = download.file.path().to_owned();
        assert_eq!(disk.room.available_permits(), 1);

        drop(download);

        assert!(!path.exists(), "the file is deleted");
        assert_eq!(disk.room.available_permits(), 2, "its room is back");
    }

    #[test]
    fn an_unparsable_url_is_not_echoed() {
        let message = failure(SourceUrl::parse("https://u:se/cret@"));
        assert!(!message.contains("se/cret"), "{message}");
    }
}
