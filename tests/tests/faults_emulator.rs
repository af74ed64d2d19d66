//! The AWS emulator unavailable mid-build (issue 6; the rest of the fault matrix is in
//! `faults.rs`). Its own test binary, with one test: freezing the emulator stops every test of
//! the process that uses it, and cargo runs test binaries one after another.
//!
//! What is honest here: the emulator (moto) keeps everything in memory, so restarting it would
//! lose every table, bucket and queue — no build could survive that, nor would AWS ever do it.
//! What AWS does do is become unreachable or slow for a while; the test plays that by freezing
//! the emulator's process (`SIGSTOP`) for some seconds mid-build, then letting it go on
//! (`SIGCONT`): every DynamoDB, S3 and SQS call hangs meanwhile (connections are accepted by the
//! kernel and never answered), then is answered or times out.

use std::time::Duration;

use shuttle_tests::faults::*;
use shuttle_tests::receiver::Receiver;
use shuttle_tests::spawn_app;

/// The emulator's process, frozen until this is dropped (a failing test included).
struct Frozen(String);

impl Frozen {
    fn emulator() -> Self {
        let pid = std::env::var("MOTO_PID").expect("MOTO_PID: run with infra/local/test.sh, which starts the emulator and exports it");
        signal("STOP", &pid);
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("CONT", &self.0);
    }
}

fn signal(name: &str, pid: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid).status().expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_survives_the_aws_emulator_freezing_mid_build() {
    let app = spawn_app().await;
    let receiver = Receiver::ok().await;
    let files = sources("FROM busybox:1\nRUN sleep 12\n").await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], vec![receiver.url("/logs")]).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    append(&app, "app", 1, &numbered_lines("befo", 1_000)).await;
    receiver.until(ENOUGH, "some log at the receiver", |r| !r.log("/logs").is_empty()).await;
    {
        let _frozen = Frozen::emulator();
        // The freeze is real: the API, which reads the table, does not answer meanwhile.
        let status = app.request(reqwest::Method::GET, "/app/1/status").timeout(Duration::from_secs(1)).send().await;
        assert!(status.is_err_and(|e| e.is_timeout()), "the API answered while the emulator was frozen");
        // Jenkins goes on meanwhile.
        for _ in 0..5 {
            append(&app, "app", 1, &numbered_lines("frzn", 100)).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    append(&app, "app", 1, &numbered_lines("aftr", 1_000)).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert_eq!(triggers(&app).await, 1);
    let log = assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    assert!(String::from_utf8_lossy(&log).contains("aftr 000999"));
    until_ended(&receiver, "/status").await;
    assert_eq!(statuses(&receiver, "/status"), ran_and("succeeded"));
}
