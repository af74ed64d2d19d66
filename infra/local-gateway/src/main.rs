//! `make run`: creates the local resources in the AWS emulator and serves the API.

use anyhow::Context;
use shuttle_core::Settings;
use tokio::net::TcpListener;

#[tokio::main]
#[allow(clippy::print_stdout)] // the ready line and the usage hints are this tool's output
async fn main() -> anyhow::Result<()> {
    shuttle_http::init_tracing();
    let port: u16 = match std::env::var("PORT") {
        Ok(raw) => raw.parse().with_context(|| format!("setting PORT is malformed: '{raw}' is not a port number"))?,
        Err(_) => 3000,
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .context("setting AWS_ENDPOINT_URL is required: the local gateway runs against the local AWS emulator")?;
    let sdk = shuttle_adapters::load_sdk_config().await;
    let prefix = std::env::var("LOCAL_STACK_PREFIX").unwrap_or_else(|_| "shuttle".to_owned());
    let resources = local_gateway::stack::create_resources(&sdk, &prefix)
        .await
        .with_context(|| format!("could not create the local resources in the AWS emulator at {endpoint}"))?;

    let base_url = format!("http://127.0.0.1:{port}");
    let settings = Settings::from_lookup(|name| std::env::var(name).ok().or_else(|| resources.setting(name, &base_url)))?;
    let s3_region = std::env::var("S3_LOCATION").ok();
    let shuttle = shuttle_adapters::shuttle(&sdk, settings, s3_region);

    let listener =
        TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("could not listen on 127.0.0.1:{port} (set PORT)"))?;
    println!("ready {base_url}");
    println!(
        "  AWS emulator  {endpoint}  (table {}, bucket {}, queue {})",
        resources.table_name, resources.s3_bucket, resources.queues.queue_url
    );
    println!("  health        curl {base_url}/octhc");
    println!(
        "  create        curl -X POST {base_url}/my-app/1 -H 'Content-Type: application/json' -d '{{\"source\":{{\"url\":\"https://example.com/src.tgz\"}},\"destination\":{{\"url\":\"docker://registry.example.com/org/my-app:1\"}}}}'"
    );
    println!("  status        curl {base_url}/my-app/1/status");
    println!("  Ctrl-C stops everything.");

    tokio::select! {
        served = local_gateway::serve(listener, shuttle) => served.context("the gateway stopped")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
