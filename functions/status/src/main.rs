//! The `status` Lambda: wires the clients once per cold start, then serves requests.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shuttle_http::init_tracing();
    // What its requests use: the build read (DynamoDB), the log read (S3).
    let uses = shuttle_http::Uses { dynamodb: true, s3: true, ..Default::default() };
    let shuttle = shuttle_http::shuttle_from_env(uses).await?;
    run(service_fn(|request: Request| status::handler::handle(&shuttle, request))).await
}
