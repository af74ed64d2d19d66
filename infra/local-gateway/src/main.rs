//! `make run`: creates the local resources in the AWS emulator, starts the Jenkins stand-in
//! unless `JENKINS_URL` names a Jenkins, and serves the API.

use std::sync::Arc;

use anyhow::Context;
use jenkins_standin::StandIn;
use local_gateway::jenkins_folder;
use local_gateway::poller::{run_poller, PollerTriggers};
use shuttle_core::access::Access;
use shuttle_core::config::Env;
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
    let stand_in = start_jenkins_stand_in().await?;
    let sdk = shuttle_adapters::load_sdk_config().await?;
    let prefix = std::env::var("LOCAL_STACK_PREFIX").unwrap_or_else(|_| "shuttle".to_owned());
    let resources = local_gateway::stack::create_resources(&sdk, &prefix)
        .await
        .with_context(|| format!("could not create the local resources in the AWS emulator at {endpoint}"))?;

    let base_url = format!("http://127.0.0.1:{port}");
    let unset = |name: &str| std::env::var(name).map_or(true, |value| value.trim().is_empty());
    let open_mode = unset("SHUTTLE_API_TOKENS") && unset("SHUTTLE_OPEN_MODE");
    if open_mode {
        tracing::warn!("SHUTTLE_API_TOKENS is not set: the local API is open to anybody who reaches 127.0.0.1:{port}");
    }
    // One process signs the sources links and checks them: a key of its own will do.
    let signing_key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let env = Env::from_lookup(|name| {
        stand_in
            .as_ref()
            .and_then(|stand_in| stand_in_setting(stand_in, name))
            .or_else(|| std::env::var(name).ok())
            .or_else(|| resources.setting(name, &base_url))
            .or_else(|| (name == "POLL_DEAD_LETTER_QUEUE_URL").then(|| resources.queues.dead_letter_url.clone()))
            .or_else(|| (name == "SHUTTLE_OPEN_MODE" && open_mode).then(|| "true".to_owned()))
            .or_else(|| (name == "SOURCES_SIGNING_KEY").then(|| signing_key.clone()))
    });
    // Each function wired by its own composition root, as in Lambda, in one process.
    let functions = local_gateway::Functions::wire(&sdk, &env)?;
    let poller = Arc::new(shuttle_adapters::wiring::poller(&sdk, &env)?);
    let jenkins_url = env.optional("JENKINS_URL").unwrap_or_default();
    let settings_open = matches!(functions.create.access.given_value(), Some(Access::Open));
    drop(env);

    let listener =
        TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("could not listen on 127.0.0.1:{port} (set PORT)"))?;
    println!("ready {base_url}");
    println!(
        "  AWS emulator  {endpoint}  (table {}, bucket {}, queue {})",
        resources.table_name, resources.s3_bucket, resources.queues.queue_url
    );
    if let Ok(kafka) = std::env::var("KAFKA_BOOTSTRAP") {
        println!("  kafka         {kafka}  (log and status targets kafka://{kafka}/<topic>)");
    }
    match &stand_in {
        Some(stand_in) => match stand_in.config().real_docker() {
            Ok(()) => println!("  jenkins       {jenkins_url}  (stand-in: real builds with buildah)"),
            Err(why) => println!("  jenkins       {jenkins_url}  (stand-in: docker steps simulated, {why})"),
        },
        None => println!("  jenkins       {jenkins_url}  (JENKINS_URL)"),
    }
    // make run's registry (infra/local/run.sh), seeded with base/busybox:1.
    let registry = std::env::var("REGISTRY_ADDRESS").unwrap_or_else(|_| "registry.example.com".to_owned());
    let auth = if settings_open { "" } else { " -H \"Authorization: Bearer $TOKEN\"" };
    println!("  health        curl {base_url}/octhc");
    println!(
        "  create        curl{auth} -X POST {base_url}/my-app/1 -H 'Content-Type: application/json' -d '{{\"source\":{{\"url\":\"docker://{registry}/base/busybox:1\"}},\"destination\":{{\"url\":\"docker://{registry}/org/my-app:1\"}}}}'"
    );
    if std::env::var("REGISTRY_ADDRESS").is_ok() {
        println!("  images        curl http://{registry}/v2/org/my-app/tags/list");
    }
    println!("  status        curl{auth} {base_url}/my-app/1/status");
    if !settings_open {
        println!("  (TOKEN: one of SHUTTLE_API_TOKENS)");
    }
    println!("  Ctrl-C stops everything.");

    // The poller, fed as in AWS: by the SQS event source mapping and by its schedule.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let poller_run = run_poller(poller, sqs, resources.queues.queue_url.clone(), PollerTriggers::default());
    let outcome = tokio::select! {
        () = poller_run => Ok(()),
        served = local_gateway::serve(listener, functions) => served.context("the gateway stopped"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    if let Some(stand_in) = stand_in {
        stand_in.shutdown().await;
    }
    outcome
}

/// Starts the Jenkins stand-in on `127.0.0.1:${JENKINS_PORT:-8080}`, unless `JENKINS_URL` names
/// a Jenkins to use instead.
async fn start_jenkins_stand_in() -> anyhow::Result<Option<StandIn>> {
    if std::env::var("JENKINS_URL").is_ok_and(|url| !url.trim().is_empty()) {
        return Ok(None);
    }
    let port: u16 = match std::env::var("JENKINS_PORT") {
        Ok(raw) if !raw.trim().is_empty() => {
            raw.trim().parse().with_context(|| format!("setting JENKINS_PORT is malformed: '{raw}' is not a port number"))?
        }
        _ => 8080,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await.with_context(|| {
        format!("could not start the Jenkins stand-in on 127.0.0.1:{port}: set JENKINS_PORT to a free port, or JENKINS_URL to use a running Jenkins")
    })?;
    // JENKINS_STANDIN_DOCKER, JENKINS_STANDIN_DOCKER_HUB_MIRROR… as the stand-in's own binary reads them.
    let settings = jenkins_standin::config::Settings::parse(std::iter::empty(), |name| std::env::var(name).ok())
        .map_err(|why| anyhow::anyhow!("a JENKINS_STANDIN_* setting is malformed: {why}"))?;
    // Set up as a deployer sets up Jenkins: the shuttle's user has job rights in its folder only.
    let config = jenkins_folder::least_privilege(settings.config, jenkins_folder::LOCAL_JENKINS_FOLDER);
    let stand_in = jenkins_standin::start(config, listener).await.context("could not start the Jenkins stand-in")?;
    jenkins_folder::create_folder(&stand_in, jenkins_folder::LOCAL_JENKINS_FOLDER).await.map_err(|why| anyhow::anyhow!(why))?;
    Ok(Some(stand_in))
}

/// The Jenkins settings (SPEC §6) that point the shuttle at the stand-in: they win over the
/// environment, whose `JENKINS_USER` / `JENKINS_TOKEN` would belong to another Jenkins.
fn stand_in_setting(stand_in: &StandIn, name: &str) -> Option<String> {
    match name {
        "JENKINS_URL" => Some(stand_in.base_url().to_owned()),
        "JENKINS_FOLDER" => Some(jenkins_folder::LOCAL_JENKINS_FOLDER.to_owned()),
        "JENKINS_USER" => Some(jenkins_folder::SHUTTLE_USER.to_owned()),
        "JENKINS_TOKEN" => Some(jenkins_folder::SHUTTLE_TOKEN.to_owned()),
        _ => None,
    }
}
