//! The `stop` Lambda: wires the clients once per cold start, then serves requests.

use lambda_http::{run, service_fn, Request};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shuttle_http::init_tracing();
    let app = shuttle_adapters::wiring::from_env(stop::wire).await?;
    run(service_fn(|request: Request| stop::handler::handle(&app, request))).await.map_err(|error| anyhow::anyhow!(error))
}
