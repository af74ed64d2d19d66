//! The `create` Lambda: wires the clients once per cold start, then serves requests.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shuttle_http::init_tracing();
    // What its requests use: a build stored (DynamoDB), its spec sealed (KMS), its first poll queued (SQS), a legacy inline source cached (S3).
    let uses = shuttle_http::Uses { dynamodb: true, s3: true, sqs: true, kms: true, ..Default::default() };
    let shuttle = shuttle_http::shuttle_from_env(uses).await?;
    run(service_fn(|request: Request| create::handler::handle(&shuttle, request))).await
}
