//! The `poller` Lambda: wires the clients once per cold start, then handles SQS batches and
//! scheduled events.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use poller::handler::PollerEvent;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shuttle_http::init_tracing();
    let poller = shuttle_http::poller_from_env().await?;
    run(service_fn(|event: LambdaEvent<PollerEvent>| poller::handler::handle(&poller, event.payload))).await
}
