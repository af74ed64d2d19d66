//! The `create` Lambda: wires the clients once per cold start, then serves requests.

use lambda_http::{run, service_fn, Request};
use shuttle_adapters::wiring::{shuttle_from_env, Uses};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shuttle_http::init_tracing();
    // What its requests use: a build stored (DynamoDB), its spec sealed (KMS), its first poll queued (SQS), a legacy inline source cached (S3).
    let uses = Uses { dynamodb: true, s3: true, sqs: true, kms: true, ..Default::default() };
    let shuttle = shuttle_from_env(uses).await?;
    run(service_fn(|request: Request| create::handler::handle(&shuttle, request))).await.map_err(|error| anyhow::anyhow!(error))
}
