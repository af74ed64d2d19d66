//! The `stop` Lambda: wires the clients once per cold start, then serves requests.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shuttle_http::init_tracing();
    // What its requests use: the stop recorded (DynamoDB), then handed to Jenkins.
    let uses = shuttle_http::Uses { dynamodb: true, jenkins: true, ..Default::default() };
    let shuttle = shuttle_http::shuttle_from_env(uses).await?;
    run(service_fn(|request: Request| stop::handler::handle(&shuttle, request))).await
}
