//! `infra/jenkins/prepare-sources.sh` on the fixture archives of `infra/jenkins/fixtures/`.
//!
//! A real HTTP server in the test process plays the shuttle and S3: `GET /link/<name>` answers
//! `302` to `/objects/<name>?X-Amz-Signature=secret-sig` (a presigned URL), `/objects/<name>`
//! answers the fixture's bytes (only with the signature), anything else `404`. The real script
//! runs as a child process into a fresh directory; its output never shows the signatures.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread;

use uuid::Uuid;

const SIGNATURE: &str = "secret-sig";
const LINK_SIGNATURE: &str = "secret-link-sig";
const ARG_NAMES: [&str; 2] = ["NODE_ENV", "API_TOKEN"];

fn jenkins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/jenkins")
}

fn fixtures_dir() -> PathBuf {
    jenkins_dir().join("fixtures")
}

/// The base URL of the server, started once for the whole test binary on its own thread.
fn server() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let origin = base.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let origin = origin.clone();
                thread::spawn(move || {
                    // A broken connection only fails the request, never the server.
                    let _ = serve(stream, &origin);
                });
            }
        });
        base
    })
}

fn serve(mut stream: TcpStream, origin: &str) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.lines().next().and_then(|line| line.split(' ').nth(1)).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));

    let (status, headers, body) = if let Some(name) = path.strip_prefix("/link/") {
        let location = format!("{origin}/objects/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={SIGNATURE}");
        ("302 Found", format!("Location: {location}\r\n"), Vec::new())
    } else if let Some(name) = path.strip_prefix("/objects/") {
        let file = fixtures_dir().join(name);
        if !query.contains(&format!("X-Amz-Signature={SIGNATURE}")) {
            ("403 Forbidden", String::new(), b"missing signature".to_vec())
        } else if name.contains('/') || !file.is_file() {
            ("404 Not Found", String::new(), b"no such object".to_vec())
        } else {
            ("200 OK", "Content-Type: application/octet-stream\r\n".to_string(), std::fs::read(file)?)
        }
    } else {
        ("404 Not Found", String::new(), b"not found".to_vec())
    };
    let mut response = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(&body);
    stream.write_all(&response)?;
    stream.flush()
}

/// A fresh directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("prepare-sources-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn workdir(&self) -> PathBuf {
        self.0.join("work")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    output: Output,
    stdout: String,
    stderr: String,
}

impl Run {
    fn succeeded(&self) -> bool {
        self.output.status.success()
    }

    fn assert_success(&self) {
        assert!(self.succeeded(), "script failed ({:?})\nstdout:\n{}\nstderr:\n{}", self.output.status, self.stdout, self.stderr);
        assert!(self.stderr.is_empty(), "nothing on stderr on success, got:\n{}", self.stderr);
    }

    /// Exit code 1 and exactly one line on stderr, `[prepare] error: <reason>`; the line is returned.
    fn assert_failure(&self) -> String {
        assert_eq!(self.output.status.code(), Some(1), "exit code 1 expected\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert!(self.stderr.ends_with('\n') && self.stderr.matches('\n').count() == 1, "one line on stderr, got {:?}", self.stderr);
        assert!(self.stderr.starts_with("[prepare] error: "), "got {:?}", self.stderr);
        self.stderr.trim_end().to_string()
    }
}

/// Runs the script on the link of `name` (with a signature of its own in the query).
fn prepare(scratch: &Scratch, name: &str, args: &[&str]) -> Run {
    prepare_url(scratch, &format!("{}/link/{name}?expires=1700000000&signature={LINK_SIGNATURE}", server()), args)
}

fn prepare_url(scratch: &Scratch, url: &str, args: &[&str]) -> Run {
    let output = Command::new(jenkins_dir().join("prepare-sources.sh"))
        .arg(url)
        .arg(scratch.workdir())
        .args(args)
        .env("TMPDIR", &scratch.0)
        .output()
        .expect("run prepare-sources.sh");
    let run = Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
    };
    for secret in [SIGNATURE, LINK_SIGNATURE, "X-Amz-", "expires="] {
        assert!(!run.stdout.contains(secret), "{secret:?} in stdout:\n{}", run.stdout);
        assert!(!run.stderr.contains(secret), "{secret:?} in stderr:\n{}", run.stderr);
    }
    run
}

fn expected_dockerfile(fixture: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(format!("{fixture}.expected-Dockerfile"))).expect("expected Dockerfile")
}

fn prepared_dockerfile(scratch: &Scratch) -> Vec<u8> {
    std::fs::read(scratch.workdir().join("Dockerfile")).expect("prepared Dockerfile")
}

/// The entries at the top of the workdir, sorted.
fn top_level(scratch: &Scratch) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(scratch.workdir())
        .expect("read workdir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_same_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert!(
        actual == expected,
        "{what} differs\n--- actual ---\n{:?}\n--- expected ---\n{:?}",
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(expected)
    );
}

#[test]
fn multi_stage_dockerfile_gets_args_after_every_from() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "single-folder.tar.gz", &ARG_NAMES);
    run.assert_success();
    assert_same_bytes(&prepared_dockerfile(&scratch), &expected_dockerfile("single-folder.tar.gz"), "Dockerfile");
    assert!(run.stdout.contains("[prepare] extracted tar.gz ("), "{}", run.stdout);
    assert!(run.stdout.contains("[prepare] added ARG NODE_ENV after 3 FROM lines\n"), "{}", run.stdout);
    assert!(run.stdout.contains("[prepare] added ARG API_TOKEN after 3 FROM lines\n"), "{}", run.stdout);
}

#[test]
fn single_top_level_folder_is_flattened_with_its_dotfiles_and_subfolders() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "single-folder.tar.gz", &ARG_NAMES);
    run.assert_success();
    assert_eq!(top_level(&scratch), [".dockerignore", "Dockerfile", "package.json", "src"]);
    assert_eq!(std::fs::read(scratch.workdir().join(".dockerignore")).expect("dotfile"), b"node_modules\n.git\n");
    assert!(scratch.workdir().join("src/index.js").is_file());
    assert!(run.stdout.contains("[prepare] flattened top-level folder 'app-1.0'\n"), "{}", run.stdout);
}

#[test]
fn crlf_line_endings_and_a_missing_final_newline_are_kept() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "flat.tar", &ARG_NAMES);
    run.assert_success();
    let dockerfile = prepared_dockerfile(&scratch);
    assert_same_bytes(&dockerfile, &expected_dockerfile("flat.tar"), "Dockerfile");
    assert!(dockerfile.windows(2).any(|w| w == b"\r\n") && !dockerfile.ends_with(b"\n"), "the fixture keeps its CRLF and its last line");
    assert!(run.stdout.contains("[prepare] extracted tar (3 files)\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("flattened"), "a flat archive is not flattened:\n{}", run.stdout);
    assert_eq!(top_level(&scratch), ["Dockerfile", "app.py", "requirements.txt"]);
}

#[test]
fn continued_from_instructions_and_heredocs_are_understood_in_a_zip() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "flat.zip", &ARG_NAMES);
    run.assert_success();
    assert_same_bytes(&prepared_dockerfile(&scratch), &expected_dockerfile("flat.zip"), "Dockerfile");
    assert!(run.stdout.contains("[prepare] extracted zip (3 files)\n"), "{}", run.stdout);
    assert!(run.stdout.contains("[prepare] added ARG NODE_ENV after 2 FROM lines\n"), "{}", run.stdout);
}

#[test]
fn zip_from_a_mac_is_flattened_without_its_macosx_folder() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "single-folder.zip", &ARG_NAMES);
    run.assert_success();
    assert_same_bytes(&prepared_dockerfile(&scratch), &expected_dockerfile("single-folder.zip"), "Dockerfile");
    assert_eq!(top_level(&scratch), [".DS_Store", ".env.example", "Dockerfile", "Gemfile", "app.rb", "lib"]);
    assert!(scratch.workdir().join("lib/helper.rb").is_file());
    assert!(run.stdout.contains("[prepare] flattened top-level folder 'project'\n"), "{}", run.stdout);
    assert!(run.stdout.contains("[prepare] added ARG API_TOKEN after 1 FROM line\n"), "{}", run.stdout);
}

#[test]
fn without_build_args_the_dockerfile_is_left_untouched() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "flat.tar", &[]);
    run.assert_success();
    let expected = String::from_utf8(expected_dockerfile("flat.tar")).expect("utf-8");
    let original: String = expected.split_inclusive('\n').filter(|line| !line.starts_with("ARG ")).collect();
    assert_same_bytes(&prepared_dockerfile(&scratch), original.as_bytes(), "Dockerfile");
    assert!(!run.stdout.contains("added ARG"), "{}", run.stdout);
}

#[test]
fn dockerfile_without_from_is_refused() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "no-from.tar.gz", &ARG_NAMES);
    assert_eq!(run.assert_failure(), "[prepare] error: Dockerfile has no FROM instruction");
}

#[test]
fn sources_without_a_dockerfile_at_the_top_are_refused() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "no-dockerfile.zip", &ARG_NAMES);
    assert_eq!(run.assert_failure(), "[prepare] error: no Dockerfile at the top of the sources");
}

#[test]
fn entries_leaving_the_workdir_are_refused_before_anything_is_extracted() {
    for (fixture, entry) in [("traversal.tar", "../evil"), ("absolute.tar", "/tmp/prepare-sources-evil")] {
        let scratch = Scratch::new();
        let run = prepare(&scratch, fixture, &ARG_NAMES);
        let line = run.assert_failure();
        assert!(line.starts_with(&format!("[prepare] error: unsafe path in archive: '{entry}'")), "{fixture}: {line}");
        assert!(top_level(&scratch).is_empty(), "{fixture}: nothing extracted");
        assert!(!scratch.0.join("evil").exists(), "{fixture}: nothing written next to the workdir");
    }
}

#[test]
fn content_that_is_not_an_archive_is_refused() {
    let scratch = Scratch::new();
    let run = prepare(&scratch, "not-an-archive.bin", &ARG_NAMES);
    assert_eq!(run.assert_failure(), "[prepare] error: sources are not a tar.gz, tar or zip archive");
}

#[test]
fn failed_download_is_refused_with_its_status() {
    let scratch = Scratch::new();
    let run = prepare_url(&scratch, &format!("{}/missing?signature={LINK_SIGNATURE}", server()), &ARG_NAMES);
    assert_eq!(run.assert_failure(), "[prepare] error: download failed: HTTP 404");

    let scratch = Scratch::new();
    let run = prepare(&scratch, "no-such-object.tar.gz", &ARG_NAMES);
    assert_eq!(run.assert_failure(), "[prepare] error: download failed: HTTP 404", "a 404 after the redirect");
}

#[test]
fn invalid_build_arg_name_is_refused() {
    for bad in ["1BAD", "BAD-NAME", "", "A B", "X;rm"] {
        let scratch = Scratch::new();
        let run = prepare(&scratch, "single-folder.tar.gz", &["NODE_ENV", bad]);
        let line = run.assert_failure();
        assert!(line.starts_with(&format!("[prepare] error: invalid build argument name '{bad}'")), "{bad:?}: {line}");
        assert!(!run.stdout.contains("downloading"), "refused before downloading:\n{}", run.stdout);
    }
}

#[test]
fn logged_url_has_no_query_and_no_userinfo() {
    let scratch = Scratch::new();
    let base = server();
    let with_user = base.replacen("http://", "http://deploy:secret-password@", 1);
    let run = prepare_url(&scratch, &format!("{with_user}/link/flat.zip?signature={LINK_SIGNATURE}#frag"), &ARG_NAMES);
    run.assert_success();
    assert!(run.stdout.starts_with(&format!("[prepare] downloading {base}/link/flat.zip\n")), "{}", run.stdout);
    assert!(!run.stdout.contains("secret-password") && !run.stdout.contains("deploy"), "{}", run.stdout);
}

#[test]
fn workdir_must_be_empty() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.workdir()).expect("workdir");
    std::fs::write(scratch.workdir().join("left-over"), b"x").expect("file");
    let run = prepare(&scratch, "flat.tar", &ARG_NAMES);
    let line = run.assert_failure();
    assert!(line.starts_with("[prepare] error: workdir '") && line.ends_with("' is not empty"), "{line}");
}
