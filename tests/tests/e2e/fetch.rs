//! The sources download (`HttpSourceFetcher`) against real HTTP servers in the test process,
//! caching into the S3 of the local AWS emulator. Each test has its own bucket and servers.
//!
//! The servers write their HTTP/1.1 answers by hand, so a test can send what a well-behaved
//! server would not: a body that never ends, a `Content-Length` that nothing follows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use local_gateway::stack::LOCAL_ALLOWED_PRIVATE_CIDRS;
use shuttle_adapters::s3::source_key;
use shuttle_adapters::{HttpSourceFetcher, S3SourceStore};
use shuttle_core::ports::{FetchError, SourceFetcher, SourceStore};
use shuttle_tests::{Answer, Stack, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

const MAX_BYTES: u64 = 1024 * 1024;
/// Longer than any of these downloads takes, shorter than the fetcher's own read timeout: a
/// test that hits it shows the fetcher waiting for bytes it should not have waited for.
const PATIENCE: Duration = Duration::from_secs(20);

fn sources(stack: &Stack) -> Arc<S3SourceStore> {
    Arc::new(S3SourceStore::new(stack.s3.clone(), &stack.resources.s3_bucket))
}

/// A fetcher allowing what the local run allows: loopback, where the test servers are.
fn fetcher(stack: &Stack) -> HttpSourceFetcher {
    fetcher_allowing(stack, LOCAL_ALLOWED_PRIVATE_CIDRS)
}

fn fetcher_allowing(stack: &Stack, cidrs: &str) -> HttpSourceFetcher {
    HttpSourceFetcher::new(sources(stack), MAX_BYTES, cidrs.parse().expect("CIDRs"))
}

/// Fetches, failing the test if the fetcher waits for bytes that will never come.
async fn fetch(fetcher: &HttpSourceFetcher, url: &str, source_id: Uuid) -> Result<(), FetchError> {
    tokio::time::timeout(PATIENCE, fetcher.fetch(url, source_id)).await.expect("the fetch ends without waiting for more bytes")
}

/// The reason the build fails with.
fn failure(result: Result<(), FetchError>) -> String {
    match result {
        Err(FetchError::Failed(reason)) => reason,
        other => panic!("expected the build to fail, got {other:?}"),
    }
}

/// The cached sources, read back the way Jenkins does: through a presigned link.
async fn cached(stack: &Stack, source_id: Uuid) -> Vec<u8> {
    let link = sources(stack).presign_source(source_id, Duration::from_secs(60)).await.expect("presign");
    let response = shuttle_tests::get(&link).await.expect("GET the presigned link");
    assert_eq!(response.status().as_u16(), 200, "the sources are cached");
    response.bytes().await.expect("the cached body").to_vec()
}

async fn assert_not_cached(stack: &Stack, source_id: Uuid) {
    let keys = stack.object_keys().await;
    assert!(!keys.contains(&source_key(source_id)), "nothing is cached under sources/{source_id}: {keys:?}");
}

fn basic(user_and_password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_and_password))
}

/// `/r/<n>` redirects to `/r/<n-1>`, cycling through the redirect statuses and three kinds of
/// `Location`: an absolute URL, an absolute path and a relative path. `/r/0` is the archive.
fn redirect_chain(archive: &'static [u8]) -> impl Fn(&str, &str) -> Answer + Send + Sync + 'static {
    const STATUSES: [&str; 5] = ["301 Moved Permanently", "302 Found", "303 See Other", "307 Temporary Redirect", "308 Permanent Redirect"];
    move |base, path| {
        let Some(n) = path.strip_prefix("/r/").and_then(|n| n.parse::<usize>().ok()) else { return Answer::status("404 Not Found") };
        if n == 0 {
            return Answer::ok(archive);
        }
        let next = n - 1;
        let location = match n % 3 {
            0 => format!("{base}/r/{next}"),
            1 => format!("/r/{next}"),
            _ => next.to_string(),
        };
        Answer::redirect(STATUSES[n % STATUSES.len()], location)
    }
}

#[tokio::test]
async fn a_300_kb_body_arrives_byte_exact() {
    let stack = Stack::new().await;
    let archive: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let served = archive.clone();
    let server = TestServer::start(move |_, _| Answer::ok(&served)).await;
    let source_id = Uuid::new_v4();

    fetch(&fetcher(&stack), &server.url("/app.tgz"), source_id).await.expect("the download is cached");

    assert!(cached(&stack, source_id).await == archive, "the cached sources are the served bytes");
    assert_eq!(server.paths(), ["/app.tgz"]);
}

#[tokio::test]
async fn five_redirects_mixing_relative_and_absolute_locations_are_followed() {
    let stack = Stack::new().await;
    let server = TestServer::start(redirect_chain(b"the archive")).await;
    let source_id = Uuid::new_v4();

    fetch(&fetcher(&stack), &server.url("/r/5"), source_id).await.expect("five redirects are followed");

    assert_eq!(cached(&stack, source_id).await, b"the archive");
    assert_eq!(server.paths(), ["/r/5", "/r/4", "/r/3", "/r/2", "/r/1", "/r/0"]);
}

#[tokio::test]
async fn a_sixth_redirect_fails_the_build() {
    let stack = Stack::new().await;
    let server = TestServer::start(redirect_chain(b"the archive")).await;
    let source_id = Uuid::new_v4();
    let url = server.url_with_userinfo("user:canarypw", "/r/6");

    let reason = failure(fetch(&fetcher(&stack), &url, source_id).await);

    assert_eq!(reason, format!("the sources at {} redirected more than 5 times", server.url_with_userinfo("user:***", "/r/6")));
    assert_eq!(server.paths(), ["/r/6", "/r/5", "/r/4", "/r/3", "/r/2", "/r/1"], "the sixth redirect is not followed");
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn a_404_fails_naming_the_status_with_the_password_redacted() {
    let stack = Stack::new().await;
    let server = TestServer::start(|_, _| Answer::status("404 Not Found")).await;
    let source_id = Uuid::new_v4();
    let url = server.url_with_userinfo("user:canarypw", "/x.tgz");

    let reason = failure(fetch(&fetcher(&stack), &url, source_id).await);

    assert_eq!(reason, format!("the sources at {} answered 404 Not Found", server.url_with_userinfo("user:***", "/x.tgz")));
    assert!(!reason.contains("canarypw"), "{reason}");
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn a_server_error_fails_the_build_too() {
    let stack = Stack::new().await;
    let server = TestServer::start(|_, _| Answer::status("503 Service Unavailable")).await;

    let reason = failure(fetch(&fetcher(&stack), &server.url("/x.tgz"), Uuid::new_v4()).await);

    assert!(reason.ends_with("answered 503 Service Unavailable"), "{reason}");
}

#[tokio::test]
async fn a_body_over_the_cap_fails_as_soon_as_it_passes_the_cap() {
    let stack = Stack::new().await;
    // No Content-Length and no end: only counting the bytes as they arrive can stop this.
    let server = TestServer::start(|_, _| Answer::Endless).await;
    let source_id = Uuid::new_v4();

    let reason = failure(fetch(&fetcher(&stack), &server.url("/huge.tgz"), source_id).await);

    assert_eq!(reason, format!("the sources at {} are larger than {MAX_BYTES} bytes", server.url("/huge.tgz")));
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn a_content_length_over_the_cap_is_refused_before_the_body() {
    let stack = Stack::new().await;
    // The announced body never comes: waiting for it would run into the test's patience.
    let server = TestServer::start(|_, _| Answer::Announced(MAX_BYTES + 1)).await;
    let source_id = Uuid::new_v4();

    let reason = failure(fetch(&fetcher(&stack), &server.url("/huge.tgz"), source_id).await);

    assert!(reason.ends_with(&format!("are larger than {MAX_BYTES} bytes")), "{reason}");
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn a_body_exactly_at_the_cap_is_taken() {
    let stack = Stack::new().await;
    let server = TestServer::start(|_, _| Answer::ok(&vec![7u8; MAX_BYTES as usize])).await;
    let source_id = Uuid::new_v4();

    fetch(&fetcher(&stack), &server.url("/just-fits.tgz"), source_id).await.expect("a body of exactly the cap is cached");

    assert_eq!(cached(&stack, source_id).await.len() as u64, MAX_BYTES);
}

#[tokio::test]
async fn an_empty_body_fails_the_build() {
    let stack = Stack::new().await;
    let server = TestServer::start(|_, _| Answer::ok(b"")).await;
    let source_id = Uuid::new_v4();

    let reason = failure(fetch(&fetcher(&stack), &server.url("/empty.tgz"), source_id).await);

    assert_eq!(reason, format!("the sources at {} sent no data", server.url("/empty.tgz")));
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn userinfo_arrives_as_basic_auth_and_leaves_the_url() {
    let stack = Stack::new().await;
    let server = TestServer::start(|_, _| Answer::ok(b"private archive")).await;
    let fetcher = fetcher(&stack);

    fetch(&fetcher, &server.url_with_userinfo("bot:p%40ss%3Aw0rd", "/a.tgz"), Uuid::new_v4()).await.expect("user and password");
    fetch(&fetcher, &server.url_with_userinfo("tok3n", "/b.tgz"), Uuid::new_v4()).await.expect("a lone token");

    let seen = server.seen();
    assert_eq!(seen[0].authorization, Some(basic("bot:p@ss:w0rd")), "user and password, percent-decoded");
    assert_eq!(seen[1].authorization, Some(basic("tok3n:")), "a lone token is the user, with an empty password");
    assert_eq!(server.paths(), ["/a.tgz", "/b.tgz"]);
}

#[tokio::test]
async fn credentials_follow_redirects_within_their_origin_only() {
    let stack = Stack::new().await;
    let elsewhere = TestServer::start(|_, _| Answer::ok(b"the archive")).await;
    let cdn = elsewhere.url("/a.tgz");
    let origin = TestServer::start(move |_, path| match path {
        "/start" => Answer::redirect("302 Found", "/moved"),
        _ => Answer::redirect("307 Temporary Redirect", cdn.clone()),
    })
    .await;
    let source_id = Uuid::new_v4();

    fetch(&fetcher(&stack), &origin.url_with_userinfo("user:canarypw", "/start"), source_id).await.expect("the redirects are followed");

    let expected = Some(basic("user:canarypw"));
    assert_eq!(origin.seen().iter().map(|s| s.authorization.clone()).collect::<Vec<_>>(), [expected.clone(), expected]);
    assert_eq!(elsewhere.seen()[0].authorization, None, "another origin (another port) never sees the credentials");
    assert_eq!(cached(&stack, source_id).await, b"the archive");
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    let stack = Stack::new().await;
    let server = TestServer::start(|_, _| Answer::redirect("302 Found", "file:///etc/passwd")).await;
    let source_id = Uuid::new_v4();

    let reason = failure(fetch(&fetcher(&stack), &server.url("/a.tgz"), source_id).await);

    assert!(reason.contains("file:///etc/passwd") && reason.contains("not an http or https URL"), "{reason}");
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn an_unreachable_server_fails_the_build_with_a_redacted_reason() {
    let stack = Stack::new().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind a port").local_addr().expect("a bound address");
    let url = format!("http://user:canarypw@{closed}/a.tgz");
    let source_id = Uuid::new_v4();

    let reason = failure(fetch(&fetcher(&stack), &url, source_id).await);

    assert!(reason.starts_with(&format!("the sources at http://user:***@{closed}/a.tgz could not be downloaded: ")), "{reason}");
    assert!(!reason.contains("canarypw"), "{reason}");
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn only_http_and_https_sources_are_fetched() {
    let stack = Stack::new().await;
    let source_id = Uuid::new_v4();

    for url in ["ftp://user:canarypw@127.0.0.1/a.tgz", "file:///etc/passwd", "not a url"] {
        let reason = failure(fetch(&fetcher(&stack), url, source_id).await);
        assert!(!reason.contains("canarypw"), "{reason}");
    }
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn sources_already_cached_are_left_as_they_are() {
    let stack = Stack::new().await;
    let source_id = Uuid::new_v4();
    sources(&stack).put_source(source_id, Bytes::from_static(b"first")).await.expect("cache the first sources");
    let server = TestServer::start(|_, _| Answer::ok(b"second")).await;

    fetch(&fetcher(&stack), &server.url("/a.tgz"), source_id).await.expect("cached sources are a success");

    assert_eq!(cached(&stack, source_id).await, b"first");
    assert!(server.seen().is_empty(), "nothing is downloaded again");
}

// The temporary disk the downloads are written to (issue 20).

/// A directory of the test's own for the fetcher's temporary files, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(shuttle_tests::unique_name("shuttle-fetch"));
        std::fs::create_dir(&dir).expect("create the temporary directory");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// The files in it and their bytes.
    fn usage(&self) -> (usize, u64) {
        let entries = std::fs::read_dir(&self.0).expect("list the temporary directory");
        entries.flatten().filter_map(|entry| entry.metadata().ok()).fold((0, 0), |(files, bytes), file| (files + 1, bytes + file.len()))
    }

    /// Waits until its files hold `bytes` at least.
    async fn holds(&self, bytes: u64) {
        let filled = async {
            while self.usage().1 < bytes {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(PATIENCE, filled).await.expect("the downloads write into the temporary directory");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server whose answers declare `length` bytes and send half of them at once, the other half
/// once `gate` opens. Returns its base URL and how many requests it has received.
async fn gated_server(length: usize, gate: watch::Receiver<bool>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let base = format!("http://{}", listener.local_addr().expect("a bound address"));
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (mut gate, counted) = (gate.clone(), counted.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = vec![b'x'; length];
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
                if stream.write_all(answer.as_bytes()).await.is_err() || stream.write_all(&body[..length / 2]).await.is_err() {
                    return;
                }
                if gate.wait_for(|open| *open).await.is_ok() {
                    let _ = stream.write_all(&body[length / 2..]).await;
                }
            });
        }
    });
    (base, received)
}

#[tokio::test]
async fn downloads_together_larger_than_the_disk_take_turns_and_all_arrive() {
    const DOWNLOADS: usize = 5;
    let stack = Stack::new().await;
    let disk = TempDir::new();
    // Room for two of the 1 MiB downloads at once.
    let room = 2 * MAX_BYTES;
    let (open, gate) = watch::channel(false);
    let (base, received) = gated_server(MAX_BYTES as usize, gate).await;
    let fetcher = Arc::new(fetcher(&stack).with_temp_disk(disk.path(), Some(room)));
    let source_ids: Vec<Uuid> = (0..DOWNLOADS).map(|_| Uuid::new_v4()).collect();
    let mut fetches = JoinSet::new();
    for &source_id in &source_ids {
        let (fetcher, url) = (fetcher.clone(), format!("{base}/{source_id}.tgz"));
        fetches.spawn(async move { fetch(&fetcher, &url, source_id).await });
    }

    // Every download has been asked for, and the two given room have written their first halves;
    // the bodies stay held a while longer, and nothing else may write meanwhile.
    let all_asked = async {
        while received.load(Ordering::SeqCst) < DOWNLOADS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, all_asked).await.expect("every download is asked for");
    disk.holds(room / 2).await;
    let mut most = (0, 0);
    for _ in 0..50 {
        let (files, bytes) = disk.usage();
        most = (most.0.max(files), most.1.max(bytes));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(most.0 <= 2 && most.1 <= room, "at most two downloads write at once, {room} bytes in all; the disk held {most:?}");
    open.send(true).expect("open the gate");

    while let Some(fetched) = fetches.join_next().await {
        fetched.expect("the fetch task").expect("every download is cached in its turn");
    }
    for source_id in source_ids {
        assert_eq!(cached(&stack, source_id).await, vec![b'x'; MAX_BYTES as usize]);
    }
    assert_eq!(disk.usage(), (0, 0), "every temporary file is deleted");
}

#[tokio::test]
async fn a_download_cut_off_while_writing_leaves_no_file_and_gives_its_room_back() {
    let stack = Stack::new().await;
    let disk = TempDir::new();
    // The gate never opens: the download is cut off half written, as a poll at its deadline.
    let (_closed, gate) = watch::channel(false);
    let (base, _) = gated_server(MAX_BYTES as usize, gate).await;
    let fetcher = fetcher(&stack).with_temp_disk(disk.path(), Some(MAX_BYTES));
    let (url, source_id) = (format!("{base}/a.tgz"), Uuid::new_v4());

    tokio::select! {
        fetched = fetcher.fetch(&url, source_id) => panic!("the body is held, yet the fetch ended: {fetched:?}"),
        () = disk.holds(MAX_BYTES / 2) => {}
    }

    assert_eq!(disk.usage(), (0, 0), "the cut download's file is deleted");
    let server = TestServer::start(|_, _| Answer::ok(&vec![7u8; MAX_BYTES as usize])).await;
    fetch(&fetcher, &server.url("/b.tgz"), source_id).await.expect("the next download has the whole disk");
    assert_eq!(cached(&stack, source_id).await.len() as u64, MAX_BYTES);
}

#[tokio::test]
async fn sources_larger_than_the_disk_fail_the_build_saying_what_to_do() {
    let stack = Stack::new().await;
    let disk = TempDir::new();
    // The cap would take 4 MiB; the disk has room for 1.
    let fetcher = HttpSourceFetcher::new(sources(&stack), 4 * MAX_BYTES, LOCAL_ALLOWED_PRIVATE_CIDRS.parse().expect("CIDRs"))
        .with_temp_disk(disk.path(), Some(MAX_BYTES));
    // One says so before its body, the other never ends and declares no length.
    let announced = TestServer::start(|_, _| Answer::Announced(2 * MAX_BYTES)).await;
    let endless = TestServer::start(|_, _| Answer::Endless).await;

    for server in [announced, endless] {
        let source_id = Uuid::new_v4();
        let reason = failure(fetch(&fetcher, &server.url("/big.tgz"), source_id).await);
        assert_eq!(
            reason,
            format!(
                "the sources at {} are larger than the {MAX_BYTES} bytes the poller's temporary disk has room for; \
                 raise the poller function's ephemeral storage (EphemeralStorage in template.yaml)",
                server.url("/big.tgz")
            )
        );
        assert_not_cached(&stack, source_id).await;
    }
    assert_eq!(disk.usage(), (0, 0), "no temporary file is left");
}

// The SSRF guard (SPEC §7).

/// A listener on `address` that counts the connections made to it, and answers none.
async fn counting_listener(address: &str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind(address).await.expect("bind a port");
    let base = format!("http://{}", listener.local_addr().expect("a bound address"));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (base, count)
}

#[tokio::test]
async fn a_source_on_loopback_is_refused_unless_allowed() {
    let stack = Stack::new().await;
    let server = TestServer::files(vec![("/a.tgz", Answer::ok(b"the archive"))]).await;
    let url = server.url_with_userinfo("user:canarypw", "/a.tgz");
    let source_id = Uuid::new_v4();

    let reason = failure(fetch(&fetcher_allowing(&stack, ""), &url, source_id).await);

    let shown = server.url_with_userinfo("user:***", "/a.tgz");
    assert_eq!(reason, format!("the sources at {shown} are refused: 127.0.0.1 is loopback"));
    assert!(server.paths().is_empty(), "nothing was requested");
    assert_not_cached(&stack, source_id).await;

    fetch(&fetcher_allowing(&stack, "127.0.0.0/8"), &url, source_id).await.expect("allowed, it is downloaded");
    assert_eq!(cached(&stack, source_id).await, b"the archive");
}

#[tokio::test]
async fn a_redirect_to_the_metadata_service_is_refused_even_when_everything_is_allowed() {
    let stack = Stack::new().await;
    let server = TestServer::files(vec![("/a.tgz", Answer::redirect("302 Found", "http://0xA9FEA9FE/latest/meta-data/"))]).await;
    let source_id = Uuid::new_v4();

    let reason = failure(fetch(&fetcher_allowing(&stack, "0.0.0.0/0,::/0"), &server.url("/a.tgz"), source_id).await);

    assert_eq!(
        reason,
        format!(
            "the sources at {} redirect to http://169.254.169.254/latest/meta-data/, which is refused: \
             169.254.169.254 is link-local (instance metadata)",
            server.url("/a.tgz")
        )
    );
    assert_eq!(server.paths(), ["/a.tgz"]);
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn a_redirect_out_of_the_allowed_range_is_refused_without_requesting_it() {
    let stack = Stack::new().await;
    let (elsewhere, connections) = counting_listener("127.0.0.2:0").await;
    let target = format!("{elsewhere}/a.tgz");
    let server = TestServer::files(vec![("/a.tgz", Answer::redirect("307 Temporary Redirect", target.clone()))]).await;
    let source_id = Uuid::new_v4();

    let reason = failure(fetch(&fetcher_allowing(&stack, "127.0.0.1/32"), &server.url("/a.tgz"), source_id).await);

    assert!(reason.ends_with(&format!("redirect to {target}, which is refused: 127.0.0.2 is loopback")), "{reason}");
    assert_eq!(server.paths(), ["/a.tgz"], "the allowed host was asked");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0, "the refused one never was");
}

#[tokio::test]
async fn a_name_that_resolves_only_to_refused_addresses_is_refused_at_connection() {
    let stack = Stack::new().await;
    let server = TestServer::files(vec![("/a.tgz", Answer::ok(b"the archive"))]).await;
    let url = server.url("/a.tgz").replacen("127.0.0.1", "localhost", 1);
    let source_id = Uuid::new_v4();

    // Some loopback address is allowed, so `localhost` is not refused by name: its addresses are.
    let reason = failure(fetch(&fetcher_allowing(&stack, "127.0.0.2/32"), &url, source_id).await);

    assert_eq!(reason, format!("the sources at {url} are refused: localhost resolves only to refused addresses (loopback)"));
    assert!(server.paths().is_empty(), "nothing was requested");

    let reason = failure(fetch(&fetcher_allowing(&stack, ""), &url, source_id).await);
    assert_eq!(reason, format!("the sources at {url} are refused: localhost names the loopback host"));
    assert_not_cached(&stack, source_id).await;
}

#[tokio::test]
async fn a_registry_is_checked_after_resolving_it() {
    let stack = Stack::new().await;
    let failed = |result: Result<(), FetchError>| match result {
        Err(FetchError::Failed(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let some_loopback = fetcher_allowing(&stack, "127.0.0.2/32");
    let reason = failed(some_loopback.check_registry("localhost:5000").await);
    assert_eq!(reason, "the registry localhost:5000 is refused: localhost resolves to loopback");
    let reason = failed(some_loopback.check_registry("0251.0376.0251.0376").await);
    assert!(reason.contains("link-local"), "{reason}");
    assert!(fetcher_allowing(&stack, "127.0.0.0/8").check_registry("localhost:5000").await.is_ok(), "allowed loopback");
    // Issue 20: a name the guard cannot resolve is never handed to Jenkins' own DNS.
    let reason = failed(some_loopback.check_registry("no-such-registry.invalid:5000").await);
    assert!(reason.starts_with("the registry no-such-registry.invalid:5000 could not be checked: it did not resolve"), "{reason}");
}
