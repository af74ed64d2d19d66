//! Where a function's init time goes (issue 7, cold start): each step of `shuttle_http`'s start-up
//! timed once, in order, in one process. A diagnostic beside `bench/cold-start.sh`, not a ratio:
//! `cargo build --release --bin init-phases`, then run it with a function's settings (the
//! environment `bench/cold-start.sh` sets) a few times; the first run after a build pays the
//! page cache.

// The tool's output is its lines.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use shuttle_adapters::{JenkinsClient, JenkinsSettings};

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut last = Instant::now();
    let mut lap = |step: &str| {
        let now = Instant::now();
        println!("{step:28} {:7.3} ms", (now - last).as_secs_f64() * 1000.0);
        last = now;
    };
    shuttle_http::init_tracing();
    lap("tracing");
    let settings = shuttle_core::Settings::from_env().map_err(|e| e.to_string())?;
    lap("settings");
    shuttle_adapters::tls::client_config().map_err(|e| e.to_string())?;
    lap("TLS configuration");
    let sdk = shuttle_adapters::load_sdk_config().await.map_err(|e| e.to_string())?;
    lap("SDK configuration");
    let clients = (
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_s3::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_kms::Client::new(&sdk),
    );
    lap("4 SDK clients, the first");
    let jenkins = JenkinsClient::new(JenkinsSettings::from(&settings.jenkins)).map_err(|e| e.to_string())?;
    lap("Jenkins client (reqwest)");
    let shuttle = shuttle_adapters::shuttle(&sdk, settings.clone(), None, shuttle_adapters::Uses::ALL).map_err(|e| e.to_string())?;
    lap("API wiring, again");
    let poller = shuttle_adapters::poller(&sdk, settings, None).map_err(|e| e.to_string())?;
    lap("poller wiring, again");
    drop((clients, jenkins, shuttle, poller));
    Ok(())
}
