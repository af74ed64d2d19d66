//! The poller's schedule, played locally the way EventBridge plays it: every period, the
//! function is invoked with a scheduled event. As in AWS the invocations are asynchronous — a
//! slow one does not hold back the next — and a failure is only logged.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

/// The name of the poller's schedule rule, in the event's `resources`.
pub const SCHEDULE_RULE_NAME: &str = "shuttle-poller-schedule";

/// The account of the local AWS emulator (moto's default, also AWS' documentation account).
pub const LOCAL_ACCOUNT_ID: &str = "123456789012";

/// The shortest period taken: a zero period would make the schedule spin.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// Where a scheduled event says it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventOrigin {
    pub region: String,
    pub account: String,
}

impl EventOrigin {
    /// The local stack's: `AWS_REGION` (else `AWS_DEFAULT_REGION`, else `us-east-1`) and
    /// `MOTO_ACCOUNT_ID` (else moto's default account).
    pub fn from_env() -> Self {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
        Self {
            region: variable("AWS_REGION").or_else(|| variable("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".to_owned()),
            account: variable("MOTO_ACCOUNT_ID").unwrap_or_else(|| LOCAL_ACCOUNT_ID.to_owned()),
        }
    }
}

/// The event EventBridge sends when the schedule fires at `at` (its `time` to the second).
pub fn scheduled_event(origin: &EventOrigin, at: SystemTime) -> Value {
    let seconds = DateTime::from(at).secs();
    let time = DateTime::from_secs(seconds).fmt(DateTimeFormat::DateTime).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned());
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": origin.account,
        "time": time,
        "region": origin.region,
        "resources": [format!("arn:aws:events:{}:{}:rule/{SCHEDULE_RULE_NAME}", origin.region, origin.account)],
        "detail": {}
    })
}

/// Invokes the function with a scheduled event every `every`, the first time one period after
/// the start, until the returned future is dropped (which abandons the invocations in flight).
/// The event's origin is [`EventOrigin::from_env`].
pub async fn run_schedule<F, Fut>(every: Duration, invoke: F)
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    let every = every.max(MIN_PERIOD);
    let origin = EventOrigin::from_env();
    let invoke = Arc::new(invoke);
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(every_ms = every.as_millis() as u64, rule = SCHEDULE_RULE_NAME, "schedule started");
    let mut in_flight = JoinSet::new();
    loop {
        ticks.tick().await;
        while let Some(finished) = in_flight.try_join_next() {
            if finished.as_ref().is_err_and(|error| error.is_panic()) {
                tracing::error!(rule = SCHEDULE_RULE_NAME, "the function panicked on a scheduled event");
            }
        }
        let event = scheduled_event(&origin, SystemTime::now());
        let span = tracing::info_span!("scheduled_event", rule = SCHEDULE_RULE_NAME, id = event["id"].as_str().unwrap_or_default());
        let invoke = invoke.clone();
        in_flight.spawn(
            async move {
                match (*invoke)(event).await {
                    Ok(_) => tracing::debug!("scheduled invocation done"),
                    Err(error) => tracing::warn!(%error, "the scheduled invocation failed"),
                }
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> EventOrigin {
        EventOrigin { region: "eu-west-1".to_owned(), account: "123456789012".to_owned() }
    }

    #[test]
    fn the_event_is_the_one_eventbridge_sends() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_444_323_186_789);
        let mut event = scheduled_event(&origin(), at);
        let id = event["id"].as_str().map(str::to_owned).expect("an id");
        assert_eq!(uuid::Uuid::parse_str(&id).map(|u| u.get_version_num()), Ok(4));
        event["id"] = json!("fixed");
        assert_eq!(
            event,
            json!({
                "version": "0",
                "id": "fixed",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": "2015-10-08T16:53:06Z",
                "region": "eu-west-1",
                "resources": ["arn:aws:events:eu-west-1:123456789012:rule/shuttle-poller-schedule"],
                "detail": {}
            })
        );
    }

    #[test]
    fn every_event_has_its_own_id() {
        let now = SystemTime::now();
        assert_ne!(scheduled_event(&origin(), now)["id"], scheduled_event(&origin(), now)["id"]);
    }

    #[tokio::test]
    async fn the_first_invocation_comes_one_period_after_the_start_and_failures_do_not_stop_it() {
        let every = Duration::from_millis(200);
        let (calls, mut called) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        let schedule = tokio::spawn(run_schedule(every, move |event: Value| {
            let _ = calls.send((Instant::now(), event));
            async { Err::<Value, String>("the poller failed".to_owned()) }
        }));
        let wait = Duration::from_secs(10);
        let (first_at, first) = tokio::time::timeout(wait, called.recv()).await.ok().flatten().expect("a first invocation");
        let (second_at, _) =
            tokio::time::timeout(wait, called.recv()).await.ok().flatten().expect("a second invocation, after a failed first");
        schedule.abort();
        assert_eq!(first["detail-type"], "Scheduled Event");
        assert!(first_at - started >= every, "not at start: {:?}", first_at - started);
        assert!(second_at - first_at >= every / 2, "one period apart: {:?}", second_at - first_at);
    }
}
