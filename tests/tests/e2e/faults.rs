//! Faults end to end through the local stack (issue 6): after each, every build ends with the
//! right status, and no status change or log byte is lost or duplicated at any receiver.
//!
//! The whole matrix, fault → test:
//!
//! | fault | test |
//! |---|---|
//! | Jenkins answering 5xx, then stalling | `builds.rs` `jenkins_answering_500_then_stalling_still_ends_the_build_right` |
//! | Jenkins resetting connections on `buildWithParameters` | [`jenkins_resetting_the_trigger_still_triggers_once`] |
//! | Jenkins resetting connections on the log tail, then on everything, mid-build | [`jenkins_resetting_connections_mid_build_loses_no_log_byte`] |
//! | a webhook receiver slow (slower than a poll interval, within the 10 s timeout) | [`a_slow_receiver_gets_every_status_once_and_the_exact_log`] |
//! | a webhook receiver down (connection refused) for a while | [`a_receiver_down_for_a_while_gets_everything_once_it_is_up`] |
//! | a webhook receiver down for good (accepts, never answers) | `webhooks.rs` `a_dead_target_never_holds_back_a_live_one` |
//! | a webhook receiver resetting connections | [`a_receiver_resetting_its_first_connections_gets_every_status_once_and_the_exact_log`] |
//! | a webhook receiver dropping a log stream mid-body | `webhooks.rs` `a_receiver_that_drops_the_connection_mid_stream_still_ends_with_the_exact_log` |
//! | a webhook receiver answering 5xx | `webhooks.rs` `a_receiver_answering_500_twice_gets_the_status_again_with_the_same_id_and_a_valid_signature` |
//! | the first Kafka broker down | `webhooks.rs` `failover_whose_first_broker_is_dead_still_delivers_every_line` |
//! | the AWS emulator unavailable mid-build (frozen) | `faults_emulator.rs` `a_build_survives_the_aws_emulator_freezing_mid_build` |
//! | a poller invocation killed mid-log-tail | [`a_poller_killed_mid_log_tail_loses_no_log_byte`] |
//! | a poller invocation killed right after a status change | [`a_poller_killed_right_after_a_status_change_loses_no_status`] |
//! | duplicated SQS deliveries, pollers racing | `builds.rs` `duplicated_messages_and_racing_pollers_give_one_build_and_one_copy_of_the_log` |
//! | a poll message lost | `builds.rs` `a_build_whose_poll_message_is_lost_is_redriven_by_the_schedule` |
//! | reordered SQS deliveries (a stale round after a newer one, a round from the future) | [`reordered_poll_messages_are_dropped_and_the_build_ends_once`] |

use std::time::Duration;

use serde_json::json;
use shuttle_core::poll::Polled;
use shuttle_core::ports::PollMessage;
use shuttle_tests::faults::*;
use shuttle_tests::receiver::{Receiver, Reply};
use shuttle_tests::{spawn_app, spawn_app_with, AppOptions};
use tokio::net::TcpListener;

/// A build that runs long enough for a test to act while it runs.
const SLOW_BUILD: &str = "FROM busybox:1\nRUN sleep 5\n";

#[tokio::test]
async fn jenkins_resetting_the_trigger_still_triggers_once() {
    let app = spawn_app().await;
    app.jenkins_fault(json!({"reset": true, "count": 3, "path_contains": "buildWithParameters"})).await;
    let receiver = Receiver::ok().await;
    let files = sources("FROM busybox:1\nRUN echo fine\n").await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], vec![receiver.url("/logs")]).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert_eq!(unanswered(&app, "buildWithParameters").await, 3, "the trigger was reset three times");
    assert_eq!(triggers(&app).await, 1, "and then triggered once");
    assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    until_ended(&receiver, "/status").await;
    assert_eq!(statuses(&receiver, "/status"), ran_and("succeeded"));
}

#[tokio::test]
async fn jenkins_resetting_connections_mid_build_loses_no_log_byte() {
    let app = spawn_app().await;
    let receiver = Receiver::ok().await;
    let files = sources(SLOW_BUILD).await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], vec![receiver.url("/logs")]).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    append(&app, "app", 1, &numbered_lines("befo", 500)).await;
    // For a while the log tail, then every Jenkins request, gets its connection closed.
    app.jenkins_fault(json!({"reset": true, "count": 6, "path_contains": "progressiveText"})).await;
    app.jenkins_fault(json!({"reset": true, "count": 6})).await;
    append(&app, "app", 1, &numbered_lines("midd", 500)).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert!(unanswered(&app, "progressiveText").await >= 6, "the log tail was reset");
    assert_eq!(unanswered(&app, "").await, 12, "every fault was used: {:?}", app.jenkins_requests().await);
    assert_eq!(triggers(&app).await, 1);
    let log = assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    assert!(String::from_utf8_lossy(&log).contains("midd 000499"));
    until_ended(&receiver, "/status").await;
    assert_eq!(statuses(&receiver, "/status"), ran_and("succeeded"));
}

#[tokio::test]
async fn a_slow_receiver_gets_every_status_once_and_the_exact_log() {
    let app = spawn_app().await;
    // Each answer comes 1.5 s after the request: seven poll intervals, within the 10 s timeout.
    let receiver = Receiver::start(|_, _| Reply::Delay(Duration::from_millis(1500), 200)).await;
    let files = sources(SLOW_BUILD).await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], vec![receiver.url("/logs")]).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    append(&app, "app", 1, &numbered_lines("slow", 2_000)).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    until_ended(&receiver, "/status").await;
    assert_eq!(statuses(&receiver, "/status"), ran_and("succeeded"), "each status once, in order");
}

#[tokio::test]
async fn a_receiver_resetting_its_first_connections_gets_every_status_once_and_the_exact_log() {
    let app = spawn_app().await;
    let receiver = Receiver::start(|_, n| if n < 3 { Reply::Reset } else { Reply::Status(200) }).await;
    let files = sources(SLOW_BUILD).await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], vec![receiver.url("/logs")]).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    append(&app, "app", 1, &numbered_lines("rset", 2_000)).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    until_ended(&receiver, "/status").await;
    let requests = receiver.requests("/status");
    assert!(requests[..3].iter().all(|r| !r.complete && r.answered.is_none()), "the first three were reset");
    assert_eq!(statuses(&receiver, "/status"), ran_and("succeeded"), "each status once, in order");
    assert!(receiver.requests("/logs")[..3].iter().all(|r| r.answered.is_none()), "the first three streams were reset");
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_once_it_is_up() {
    let app = spawn_app().await;
    // A port nobody listens on (connection refused) until the receiver comes up on it.
    let address = TcpListener::bind("127.0.0.1:0").await.expect("bind a port").local_addr().expect("an address");
    let url = |path: &str| format!("http://{address}{path}");
    let files = sources(SLOW_BUILD).await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![url("/status")], vec![url("/logs")]).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    append(&app, "app", 1, &numbered_lines("down", 1_000)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let receiver = Receiver::on(TcpListener::bind(address).await.expect("the same port again"), |_, _| Reply::Status(200));
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    until_ended(&receiver, "/status").await;
    assert_eq!(statuses(&receiver, "/status"), ran_and("succeeded"), "each status once, in order");
}

/// An app whose status requests carry a `webhook-id`, so that a resend can be told from a new
/// status; a killed poll holds its lease until it expires (the poller's timeout + 30 s), so these
/// builds take a few minutes.
fn signed() -> AppOptions {
    AppOptions { settings: vec![("WEBHOOK_SIGNING_SECRET", SIGNING_SECRET.into())], ..AppOptions::default() }
}

const AFTER_A_KILL: Duration = Duration::from_secs(240);

/// The poller killed while a log stream is open: the handler's futures are dropped as when Lambda
/// kills an invocation. The next poll (once the dead one's lease expired) resends from the
/// receiver's acknowledged offset; the receiver, honouring `X-Log-Offset`, has the exact log
/// (a resent range must equal what it got before). Statuses: at least once, so a resend (same
/// `webhook-id`, same body) is allowed; with resends dropped the sequence is exact.
#[tokio::test]
async fn a_poller_killed_mid_log_tail_loses_no_log_byte() {
    let app = spawn_app_with(signed()).await;
    let receiver = Receiver::ok().await;
    let files = sources("FROM busybox:1\nRUN sleep 6\n").await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], vec![receiver.url("/logs")]).await;
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    append(&app, "app", 1, &numbered_lines("kill", 3_000)).await;
    receiver.until(ENOUGH, "an open log stream", |r| r.requests("/logs").iter().any(|s| !s.complete && !s.body.is_empty())).await;
    app.start_poller();
    append(&app, "app", 1, &numbered_lines("more", 1_000)).await;
    assert_eq!(app.finished("/app/1", AFTER_A_KILL).await["status"], "succeeded");
    let streams = receiver.requests("/logs");
    assert!(streams.iter().any(|s| s.answered.is_none()), "a stream was cut by the kill");
    assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    until_ended(&receiver, "/status").await;
    assert_eq!(distinct_statuses(&receiver, "/status"), ran_and("succeeded"));
    assert_eq!(triggers(&app).await, 1);
}

/// The poller killed right after the build moved to building, while that status is at the
/// receiver but not yet answered: it is not lost, it comes again with the same `webhook-id`.
#[tokio::test]
async fn a_poller_killed_right_after_a_status_change_loses_no_status() {
    let app = spawn_app_with(signed()).await;
    // The third status (building) is answered slowly: the kill comes while it waits.
    let receiver =
        Receiver::start(|path, n| if path == "/status" && n == 2 { Reply::Delay(Duration::from_secs(3), 200) } else { Reply::Status(200) })
            .await;
    let files = sources("FROM busybox:1\nRUN sleep 4\n").await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], vec![receiver.url("/logs")]).await;
    receiver.until(ENOUGH, "the building status on its way", |r| r.requests("/status").len() == 3).await;
    app.start_poller();
    assert_eq!(app.finished("/app/1", AFTER_A_KILL).await["status"], "succeeded");
    assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    until_ended(&receiver, "/status").await;
    assert_eq!(distinct_statuses(&receiver, "/status"), ran_and("succeeded"), "no status lost, none out of order");
    assert_eq!(resends(&receiver, "/status"), 1, "the unanswered one was sent again");
    assert_eq!(triggers(&app).await, 1);
}

/// SQS does not keep order: a message of an older round arrives after a newer one was handled,
/// and one names a round the build has not reached. Both are dropped; the build ends once.
#[tokio::test]
async fn reordered_poll_messages_are_dropped_and_the_build_ends_once() {
    let app = spawn_app_with(AppOptions { poller: false, ..AppOptions::default() }).await;
    let receiver = Receiver::ok().await;
    let files = sources(SLOW_BUILD).await;
    create(&app, "/app/1", &files.url("/src.tgz"), vec![receiver.url("/status")], vec![receiver.url("/logs")]).await;
    let source_id = app.find("app", "1").await.expect("the build").source_id;
    // Before the first poll: a message from the future is dropped and leaves the build as it was.
    let future = PollMessage { source_id, round: 3 };
    assert!(matches!(app.poller.poll(&future).await.expect("a poll"), Polled::Dropped(_)));
    assert_eq!(app.find("app", "1").await.expect("the build").progress.round, 0);
    app.poller.queue.enqueue(&future, Duration::ZERO).await.expect("enqueue");
    app.start_poller();
    app.status_until("/app/1", ENOUGH, |s| s["building"] == true).await;
    let round = app.find("app", "1").await.expect("the build").progress.round;
    assert!(round >= 1, "the build went through a round: {round}");
    // Late deliveries of every round already handled, and the round after the current one, early.
    for round in (0..round).chain([round + 1]) {
        app.poller.queue.enqueue(&PollMessage { source_id, round }, Duration::ZERO).await.expect("enqueue");
    }
    assert!(matches!(app.poller.poll(&PollMessage { source_id, round: 0 }).await.expect("a poll"), Polled::Dropped(_)));
    append(&app, "app", 1, &numbered_lines("ordr", 1_000)).await;
    assert_eq!(app.finished("/app/1", ENOUGH).await["status"], "succeeded");
    assert_eq!(triggers(&app).await, 1, "triggered once");
    assert_log_exact(&app, "/app/1", "app", 1, &receiver).await;
    until_ended(&receiver, "/status").await;
    assert_eq!(statuses(&receiver, "/status"), ran_and("succeeded"));
}
