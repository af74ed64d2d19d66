//! The poller alone, as a process of its own, for `bench/memory.sh`: the `poller` Lambda's
//! wiring (`shuttle_adapters::wiring::poller_from_env`, every setting from the environment as in AWS) fed by
//! the local gateway's SQS event source mapping and schedule (`local_gateway::poller`), with no
//! API, no Jenkins stand-in and no AWS emulator in the process — so its resident memory is the
//! poller's.
//!
//! `MEMORY_POLLER_CONCURRENCY` (default 100) is the mapping's maximum concurrency: invocations
//! of up to 10 messages each in flight at once, so that up to 1,000 builds are held by the poller
//! at the same time. (The local gateway of `make run` uses 4, i.e. at most 40 builds at once; the
//! others wait in the queue and cost the poller nothing.) Runs until it is killed.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use local_gateway::mapping::MappingOptions;
use local_gateway::poller::{run_poller, PollerTriggers};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let concurrency: usize = match std::env::var("MEMORY_POLLER_CONCURRENCY") {
        Ok(raw) => raw.parse().with_context(|| format!("MEMORY_POLLER_CONCURRENCY must be a whole number, got '{raw}'"))?,
        Err(_) => 100,
    };
    let queue_url = std::env::var("POLL_QUEUE_URL").context("setting POLL_QUEUE_URL is required")?;
    let poller = shuttle_adapters::wiring::from_env(shuttle_adapters::wiring::poller).await.map_err(|error| anyhow!("{error}"))?;
    let sqs = aws_sdk_sqs::Client::new(&shuttle_adapters::load_sdk_config().await?);
    let triggers = PollerTriggers {
        mapping: MappingOptions { max_concurrency: concurrency, ..MappingOptions::default() },
        ..PollerTriggers::default()
    };
    run_poller(Arc::new(poller), sqs, queue_url, triggers).await;
    Ok(())
}
