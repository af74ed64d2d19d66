//! The `poller` Lambda: wires the clients once per cold start, then handles SQS batches and
//! scheduled events.

use lambda_runtime::{run, service_fn, LambdaEvent};
use poller::handler::PollerEvent;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let poller = shuttle_adapters::wiring::from_env(shuttle_adapters::wiring::poller).await?;
    run(service_fn(|event: LambdaEvent<PollerEvent>| {
        let deadline = poller::handler::deadline_of(&event.context);
        poller::handler::handle(&poller, event.payload, deadline)
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
