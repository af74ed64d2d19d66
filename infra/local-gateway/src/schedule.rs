//! The poller's schedule, played locally the way EventBridge Scheduler plays `template.yaml`'s:
//! every period the function is invoked with the schedule's `Input`, exactly as the template
//! declares it (read from the template, [`crate::template`]). As in AWS the invocations are
//! asynchronous — a slow one does not hold back the next — and a failure is only logged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

/// The shortest period taken: a zero period would make the schedule spin.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// Invokes the function with `input` every `every`, the first time one period after the start,
/// until the returned future is dropped (which abandons the invocations in flight).
pub async fn run_schedule<F, Fut>(name: String, every: Duration, input: Value, invoke: F)
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    let every = every.max(MIN_PERIOD);
    let invoke = Arc::new(invoke);
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(every_ms = every.as_millis() as u64, schedule = %name, "schedule started");
    let mut in_flight = JoinSet::new();
    loop {
        ticks.tick().await;
        while let Some(finished) = in_flight.try_join_next() {
            if finished.as_ref().is_err_and(|error| error.is_panic()) {
                tracing::error!(schedule = %name, "the function panicked on a scheduled invocation");
            }
        }
        let event = input.clone();
        let span = tracing::info_span!("scheduled_invocation", schedule = %name);
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
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn the_first_invocation_comes_one_period_after_the_start_with_the_input_and_failures_do_not_stop_it() {
        let every = Duration::from_millis(200);
        let (calls, mut called) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        let input = json!({"action": "redrive"});
        let schedule = tokio::spawn(run_schedule("Redrive".to_owned(), every, input.clone(), move |event: Value| {
            let _ = calls.send((Instant::now(), event));
            async { Err::<Value, String>("the poller failed".to_owned()) }
        }));
        let wait = Duration::from_secs(10);
        let (first_at, first) = tokio::time::timeout(wait, called.recv()).await.ok().flatten().expect("a first invocation");
        let (second_at, second) =
            tokio::time::timeout(wait, called.recv()).await.ok().flatten().expect("a second invocation, after a failed first");
        schedule.abort();
        assert_eq!((first, second), (input.clone(), input), "exactly the input, every time");
        assert!(first_at - started >= every, "not at start: {:?}", first_at - started);
        assert!(second_at - first_at >= every / 2, "one period apart: {:?}", second_at - first_at);
    }
}
