//! The `status` Lambda: wires the clients once per cold start, then serves requests.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shuttle_http::init_tracing();
    let shuttle = shuttle_http::shuttle_from_env().await?;
    run(service_fn(|request: Request| status::handler::handle(&shuttle, request))).await
}
