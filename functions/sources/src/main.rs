//! The `sources` Lambda: wires the clients once per cold start, then serves requests.

use lambda_http::{run, service_fn, Request};
use shuttle_adapters::wiring::{shuttle_from_env, Uses};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shuttle_http::init_tracing();
    // What its requests use: the sources looked up and presigned (S3).
    let uses = Uses { s3: true, ..Default::default() };
    let shuttle = shuttle_from_env(uses).await?;
    run(service_fn(|request: Request| sources::handler::handle(&shuttle, request))).await.map_err(|error| anyhow::anyhow!(error))
}
