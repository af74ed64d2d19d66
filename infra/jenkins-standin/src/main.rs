//! `jenkins-standin [--listen 127.0.0.1:8080] …`: the Jenkins stand-in as a process (see the
//! library's documentation, and `--help`).

use anyhow::Context;
use jenkins_standin::config::{Settings, USAGE};
use tokio::net::TcpListener;

#[tokio::main]
#[allow(clippy::print_stdout)] // the ready line and the usage are this tool's output
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "jenkins_standin=info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let settings = match Settings::parse(args, |name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(why) => anyhow::bail!("{why}\n{USAGE}"),
    };
    let listener = TcpListener::bind(&settings.listen).await.with_context(|| format!("could not listen on {}", settings.listen))?;
    let script = settings.config.prepare_script.clone();
    if !script.is_file() {
        tracing::warn!(script = %script.display(), "the source-preparation script is missing: archive builds will fail");
    }
    let users: Vec<String> = settings.config.accounts().map(|(name, _, _)| name.to_owned()).collect();
    let authorization = match &settings.config.authorization {
        Some(matrix) => format!("matrix {matrix}"),
        None => "every signed-in user may do everything".to_owned(),
    };
    let stand_in = jenkins_standin::start(settings.config, listener).await.context("could not start")?;
    println!("jenkins stand-in ready {}", stand_in.base_url());
    println!("  users {}; tokens and passwords as configured (see --help); Jenkins {}", users.join(", "), jenkins_standin::JENKINS_VERSION);
    println!("  authorization: {authorization}");
    println!("  test control (not Jenkins): {}__standin/faults, {}__standin/requests", stand_in.base_url(), stand_in.base_url());
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    stand_in.shutdown().await;
    Ok(())
}
