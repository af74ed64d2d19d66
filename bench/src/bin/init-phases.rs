//! Where a function's init time goes (issue 7, cold start): each step of a function's start-up (`shuttle_adapters::wiring`)
//! timed once, in order, in one process. A diagnostic beside `bench/cold-start.sh`, not a ratio:
//! `cargo build --release --bin init-phases`, then run it with a function's settings (the
//! environment `bench/cold-start.sh` sets) a few times; the first run after a build pays the
//! page cache.

// The tool's output is its lines.
#![allow(clippy::print_stdout)]

use std::time::Instant;

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
    let env = shuttle_core::config::Env::from_process();
    let no_store =
        |id: &str| -> std::sync::Arc<dyn shuttle_core::secrets::SecretSource> { panic!("the bench reads no secret at run time ({id})") };
    let policy = shuttle_core::config::PollPolicy::from_env(&env, &no_store).map_err(|e| e.to_string())?;
    lap("settings (the poller's policy)");
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
    let jenkins = shuttle_adapters::wiring::jenkins(&sdk, &env).map_err(|e| e.to_string())?;
    lap("Jenkins client (reqwest)");
    let create = shuttle_adapters::wiring::create(&sdk, &env).map_err(|e| e.to_string())?;
    lap("create's wiring, again");
    let poller = shuttle_adapters::wiring::poller(&sdk, &env).map_err(|e| e.to_string())?;
    lap("poller's wiring, again");
    drop((policy, clients, jenkins, create, poller));
    Ok(())
}
