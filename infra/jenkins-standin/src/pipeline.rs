//! What a build does: the job's pipeline (see `infra/jenkins/README.md`).
//!
//! With real Docker ([`DockerMode::Buildah`], or `Auto` with `buildah` on `PATH`) the stand-in
//! runs the pipeline of the job's own `config.xml` as Jenkins would, stage by stage: the shell
//! text of each `sh` step (read by [`crate::script`], with the variables the script's loops
//! compute filled in) runs as `sh -xe script.sh` in the build's workspace, with the build's
//! parameters, Jenkins' variables (`WORKSPACE`, `BUILD_NUMBER`, `JOB_NAME`, `BUILD_URL`, …) and,
//! inside `withEnv`, the build arguments in the environment, and `docker` on `PATH` the shim over
//! buildah (`docker-shim/docker`). The `Check` stage's Groovy (parameter checks, `BUILD_ARGS`
//! names) is done here, as the script does it. A job whose script is not a declarative pipeline
//! (a test's `node { }`) runs the shuttle's pipeline of `infra/jenkins/config.xml`.
//!
//! Simulated ([`DockerMode::Simulated`], or `Auto` without buildah; the log says so):
//! - `SOURCE_IMAGE` set: a simulated `docker pull`, `docker tag`, `docker push` (and `:latest`
//!   when `DESTINATION_LATEST=true`).
//! - Otherwise the real `prepare-sources.sh <SOURCES_URL> <workdir> <BUILD_ARGS names…>` in a
//!   fresh directory (removed afterwards), its output appended to the log line by line; then a
//!   simulated `docker build` of the prepared Dockerfile, one `Step i/N` per instruction, where
//!   `RUN sleep N` really takes N seconds and `RUN false` / `RUN exit N` fails the build; then a
//!   simulated push.
//!
//! A stop interrupts the running step at once (the script's process group gets SIGTERM); the
//! build becomes ABORTED when the abort delay has passed since the stop. Password parameters
//! (and the values of `BUILD_ARGS`) are never written to the log. The log gets console notes
//! where Jenkins writes them (see [`crate::console`]): `Started by user`, `Running on`, and every
//! `[Pipeline] …` line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::config::{docker_shim_dir, DockerMode};
use crate::console;
use crate::dockerfile::{self, RunEffect};
use crate::script::{self, Step as ScriptStep, When};
use crate::state::{Build, BuildResult, Shared};

const SIMULATED: &str = "(simulated: no Docker engine on this machine)";

/// Why a pipeline ended early.
enum Stop {
    /// The message of the `ERROR:` line Jenkins prints before `Finished: FAILURE`.
    Failed(String),
    Aborted,
}

type Step = Result<(), Stop>;

/// `BUILD_ARGS` as the pipeline's `buildArgs()` reads it: names and values, or why not.
type BuildArgs = Result<Vec<(String, String)>, String>;

/// Runs the build to its end, then lets the queue start the next one.
pub async fn run(shared: Arc<Shared>, build: Arc<Build>) {
    let abort = build.abort.subscribe();
    let mut runner = Runner { shared: &shared, build: &build, abort };
    let outcome = runner.pipeline().await;
    let stopped = *runner.abort.borrow();
    match outcome {
        Err(Stop::Aborted) => runner.finish_aborted().await,
        _ if stopped => runner.finish_aborted().await,
        Ok(()) => build.finish(BuildResult::Success),
        Err(Stop::Failed(message)) => {
            build.log_line(&format!("ERROR: {message}"));
            build.finish(BuildResult::Failure);
        }
    }
    shared.wake_scheduler.notify_one();
}

/// A fresh directory for one build, removed when the build ends (or its task is dropped).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("jenkins-standin-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn digest() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// An image reference split as Docker reads it.
struct ImageRef<'a> {
    /// Everything but the tag and digest: `registry.example.com:5000/org/app`.
    repository: &'a str,
    tag: &'a str,
}

impl<'a> ImageRef<'a> {
    /// None when Docker would say "invalid reference format".
    fn parse(reference: &'a str) -> Option<Self> {
        let without_digest = reference.split_once('@').map_or(reference, |(name, _)| name);
        let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match without_digest[last_slash..].rfind(':') {
            Some(colon) => (&without_digest[..last_slash + colon], &without_digest[last_slash + colon + 1..]),
            None => (without_digest, "latest"),
        };
        let (domain, path) = match repository.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
            _ => ("", repository),
        };
        let domain_ok = domain.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
        let path_ok = !path.is_empty()
            && path.split('/').all(|component| {
                !component.is_empty()
                    && component.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                    && component.starts_with(|c: char| c.is_ascii_alphanumeric())
            });
        let tag_ok = !tag.is_empty() && tag.len() <= 128 && tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        (domain_ok && path_ok && tag_ok).then_some(Self { repository, tag })
    }

    /// The registry `docker login` talks to.
    fn registry(&self) -> &'a str {
        match self.repository.split_once('/') {
            Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
            _ => "docker.io",
        }
    }
}

struct Runner<'a> {
    shared: &'a Shared,
    build: &'a Arc<Build>,
    abort: watch::Receiver<bool>,
}

impl Runner<'_> {
    fn log(&self, line: &str) {
        self.build.log_line(line);
    }

    /// A `[Pipeline] …` line, which Pipeline starts with a `NewNodeConsoleNote`.
    fn step(&self, step: &str) {
        self.build.log_noted_line("", &console::new_node(), &format!("[Pipeline] {step}"));
    }

    fn parameter(&self, name: &str) -> String {
        self.build.parameter(name).unwrap_or_default().to_owned()
    }

    /// `DESTINATION_IMAGE`, with `@BUILD_NUMBER@` replaced by this build's number as the
    /// pipeline's preamble does (a legacy build numbered by Jenkins is tagged with it).
    fn destination(&self) -> String {
        self.parameter("DESTINATION_IMAGE").replace("@BUILD_NUMBER@", &self.build.number.to_string())
    }

    /// Waits, unless a stop comes first.
    async fn pause(&mut self, duration: Duration) -> Step {
        tokio::select! {
            _ = tokio::time::sleep(duration) => Ok(()),
            _ = self.abort.wait_for(|stop| *stop) => Err(Stop::Aborted),
        }
    }

    async fn simulated_operation(&mut self) -> Step {
        let step = self.shared.config.step_time;
        self.pause(step).await
    }

    fn stage_begin(&self, name: &str) {
        self.step("stage");
        self.step(&format!("{{ ({name})"));
    }

    fn stage_end(&self) {
        self.step("}");
        self.step("// stage");
    }

    async fn pipeline(&mut self) -> Step {
        // `Cause.UserIdCause.print`: the user is a `ModelHyperlinkNote` to `/user/<id>`.
        let user = &self.build.cause_user;
        self.build.log_noted_line("Started by user ", &console::hyperlink(&format!("/user/{user}"), user), user);
        self.step("Start of Pipeline");
        self.step("node");
        // `node`: "Running on " + the node as a `ModelHyperlinkNote` + " in " + the workspace.
        let workspace = format!("Jenkins in /var/jenkins_home/workspace/{}", self.build.job.full_name());
        self.build.log_noted_line("Running on ", &console::hyperlink("/computer/(built-in)/", "Jenkins"), &workspace);
        self.step("{");
        let outcome = match self.shared.config.real_docker() {
            Ok(()) => self.real_pipeline().await,
            Err(why) => {
                self.log(&format!("Docker is simulated: {why}; no image is built or pushed"));
                match self.simulated_operation().await {
                    Ok(()) if !self.parameter("SOURCE_IMAGE").is_empty() => self.image_pipeline().await,
                    Ok(()) => self.archive_pipeline().await,
                    Err(stop) => Err(stop),
                }
            }
        };
        self.step("}");
        self.step("// node");
        self.step("End of Pipeline");
        outcome
    }

    async fn image_pipeline(&mut self) -> Step {
        let source = self.parameter("SOURCE_IMAGE");
        let destination = self.destination();
        self.stage_begin("Pull image");
        let pulled = self.pull_and_tag(&source, &destination).await;
        self.stage_end();
        pulled?;
        self.stage_begin("Push image");
        let pushed = self.push_all(&destination).await;
        self.stage_end();
        pushed
    }

    async fn pull_and_tag(&mut self, source: &str, destination: &str) -> Step {
        self.step("sh");
        let Some(image) = ImageRef::parse(source) else {
            self.log(&format!("+ docker pull {source}"));
            self.log("invalid reference format");
            return Err(Stop::Failed("script returned exit code 1".to_owned()));
        };
        let user = self.parameter("SOURCE_REGISTRY_USER");
        if !user.is_empty() {
            self.login(&user, image.registry()).await?;
        }
        self.log(&format!("+ docker pull {source}"));
        self.log(&format!("{}: Pulling from {} {SIMULATED}", image.tag, image.repository));
        self.simulated_operation().await?;
        self.log(&format!("Digest: sha256:{}", digest()));
        self.log(&format!("Status: Downloaded newer image for {source}"));
        self.log(&format!("+ docker tag {source} {destination}"));
        if ImageRef::parse(destination).is_none() {
            self.log(&format!("Error parsing reference: \"{destination}\" is not a valid repository/tag: invalid reference format"));
            return Err(Stop::Failed("script returned exit code 1".to_owned()));
        }
        self.log(&format!("Tagged {destination} {SIMULATED}"));
        Ok(())
    }

    async fn login(&mut self, user: &str, registry: &str) -> Step {
        self.log(&format!("+ docker login -u {user} --password-stdin {registry}"));
        self.simulated_operation().await?;
        self.log(&format!("Login Succeeded {SIMULATED}"));
        Ok(())
    }

    /// Pushes the destination, and `:latest` of its repository when `DESTINATION_LATEST=true`.
    async fn push_all(&mut self, destination: &str) -> Step {
        self.step("sh");
        let Some(image) = ImageRef::parse(destination) else {
            self.log(&format!("+ docker push {destination}"));
            self.log("invalid reference format");
            return Err(Stop::Failed("script returned exit code 1".to_owned()));
        };
        let user = self.parameter("REGISTRY_USER");
        if !user.is_empty() {
            self.login(&user, image.registry()).await?;
        }
        self.push(destination, &image).await?;
        if self.parameter("DESTINATION_LATEST") == "true" {
            let latest = format!("{}:latest", image.repository);
            self.log(&format!("+ docker tag {destination} {latest}"));
            let latest_image = ImageRef { repository: image.repository, tag: "latest" };
            self.push(&latest, &latest_image).await?;
        }
        Ok(())
    }

    async fn push(&mut self, reference: &str, image: &ImageRef<'_>) -> Step {
        self.log(&format!("+ docker push {reference}"));
        self.log(&format!("The push refers to repository [{}] {SIMULATED}", image.repository));
        self.simulated_operation().await?;
        self.log(&format!("{}: digest: sha256:{} size: 1570", image.tag, digest()));
        Ok(())
    }

    async fn archive_pipeline(&mut self) -> Step {
        let build_args = self.parameter("BUILD_ARGS");
        let arg_names: Vec<String> = if build_args.trim().is_empty() {
            Vec::new()
        } else {
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&build_args) {
                Ok(args) => args.keys().cloned().collect(),
                Err(_) => return Err(Stop::Failed("BUILD_ARGS is not a JSON object of build arguments".to_owned())),
            }
        };
        let scratch = match Scratch::new() {
            Ok(scratch) => scratch,
            Err(e) => return Err(Stop::Failed(format!("cannot create the workspace: {e}"))),
        };
        let workdir = scratch.0.join("workspace");
        self.stage_begin("Prepare sources");
        let prepared = self.prepare_sources(&scratch.0, &workdir, &arg_names).await;
        self.stage_end();
        prepared?;
        let destination = self.destination();
        self.stage_begin("Build image");
        let built = self.docker_build(&workdir, &destination, &arg_names).await;
        self.stage_end();
        built?;
        self.stage_begin("Push image");
        let pushed = self.push_all(&destination).await;
        self.stage_end();
        pushed
    }

    /// `prepare-sources.sh <SOURCES_URL> <workdir> <names…>`, its output appended as it comes.
    async fn prepare_sources(&mut self, scratch: &Path, workdir: &Path, arg_names: &[String]) -> Step {
        self.step("sh");
        let script = &self.shared.config.prepare_script;
        let mut command = if is_executable(script) {
            Command::new(script)
        } else {
            let mut command = Command::new("bash");
            command.arg(script);
            command
        };
        command.arg(self.parameter("SOURCES_URL")).arg(workdir).args(arg_names).current_dir(scratch);
        self.jenkins_environment(&mut command, scratch, workdir);
        self.run_process(command, scratch, &script.display().to_string(), true).await
    }

    /// What Jenkins puts in the environment of a step: its variables and the build's parameters.
    fn jenkins_environment(&self, command: &mut Command, scratch: &Path, workspace: &Path) {
        let build = self.build;
        command
            .env("TMPDIR", scratch)
            .env("WORKSPACE", workspace)
            .env("JOB_NAME", build.job.full_name())
            .env("JOB_BASE_NAME", build.job.name())
            .env("BUILD_NUMBER", build.number.to_string())
            .env("BUILD_ID", build.number.to_string())
            .env("BUILD_URL", &build.url)
            .env("JENKINS_URL", &self.shared.base)
            .env("BUILD_TAG", format!("jenkins-{}-{}", build.job.full_name().replace('/', "-"), build.number))
            .envs(build.parameters.iter().map(|p| (p.name.clone(), p.value.clone())));
    }

    /// Runs a step's process to its end, its output appended as it comes. `interruptible`: a
    /// stop ends it at once (a post step after a stop still runs).
    async fn run_process(&mut self, mut command: Command, scratch: &Path, what: &str, interruptible: bool) -> Step {
        let build = self.build;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                self.log(&format!("{what}: {e}"));
                return Err(Stop::Failed("script returned exit code 127".to_owned()));
            }
        };
        let mut script_run = ScriptRun { group: child.id(), child, scratch, finished: false };
        let readers = [
            script_run.child.stdout.take().map(|out| tokio::spawn(append_lines(build.clone(), out))),
            script_run.child.stderr.take().map(|err| tokio::spawn(append_lines(build.clone(), err))),
        ];
        let mut abort = self.abort.clone();
        let stopped = async move {
            if interruptible {
                let _ = abort.wait_for(|stop| *stop).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let status = tokio::select! {
            status = script_run.child.wait() => Some(status),
            _ = stopped => None,
        };
        let Some(status) = status else {
            self.log("Sending interrupt signal to process");
            script_run.terminate().await;
            for reader in readers.into_iter().flatten() {
                reader.abort();
            }
            return Err(Stop::Aborted);
        };
        script_run.finished = true;
        // The output may still be in the pipes: read it to the end (bounded, in case a
        // background process of the script keeps them open).
        for reader in readers.into_iter().flatten() {
            let handle = reader.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), reader).await.is_err() {
                handle.abort();
            }
        }
        let code = match status {
            Ok(status) => status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)),
            Err(e) => {
                self.log(&format!("cannot wait for the script: {e}"));
                -1
            }
        };
        if code == 0 {
            Ok(())
        } else {
            Err(Stop::Failed(format!("script returned exit code {code}")))
        }
    }

    /// A simulated `docker build` of the prepared Dockerfile.
    async fn docker_build(&mut self, workdir: &Path, destination: &str, arg_names: &[String]) -> Step {
        self.step("sh");
        let flags: String = arg_names.iter().map(|name| format!(" --build-arg {name}")).collect();
        self.log(&format!("+ docker build{flags} -t {destination} ."));
        if ImageRef::parse(destination).is_none() {
            self.log(&format!("invalid argument \"{destination}\" for \"-t, --tag\" flag: invalid reference format"));
            return Err(Stop::Failed("script returned exit code 125".to_owned()));
        }
        let dockerfile = workdir.join("Dockerfile");
        let content = match std::fs::read(&dockerfile) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                self.log(&format!(
                    "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: {e}",
                    dockerfile.display()
                ));
                return Err(Stop::Failed("script returned exit code 1".to_owned()));
            }
        };
        let instructions = match dockerfile::parse(&content) {
            Ok(instructions) => instructions,
            Err(why) => {
                self.log(&format!("Error response from daemon: {why}"));
                return Err(Stop::Failed("script returned exit code 1".to_owned()));
            }
        };
        if instructions.iter().find(|i| i.keyword != "ARG").is_none_or(|i| i.keyword != "FROM") {
            self.log("Error response from daemon: No build stage in current context");
            return Err(Stop::Failed("script returned exit code 1".to_owned()));
        }
        self.log(&format!("Sending build context to Docker daemon {SIMULATED}"));
        let total = instructions.len();
        for (index, instruction) in instructions.iter().enumerate() {
            self.log(&format!("Step {}/{total} : {}", index + 1, instruction.text));
            match instruction.run_effect() {
                RunEffect::Instant => self.simulated_operation().await?,
                RunEffect::Sleep(duration) => {
                    self.log(&format!(" ---> Running in {}", short_id()));
                    self.pause(duration).await?;
                }
                RunEffect::Fail(code) => {
                    self.log(&format!(" ---> Running in {}", short_id()));
                    self.log(&format!("The command '/bin/sh -c {}' returned a non-zero code: {code}", instruction.arguments));
                    return Err(Stop::Failed(format!("script returned exit code {code}")));
                }
            }
            self.log(&format!(" ---> {} {SIMULATED}", short_id()));
        }
        self.log(&format!("Successfully built {}", short_id()));
        self.log(&format!("Successfully tagged {destination}"));
        Ok(())
    }

    /// The job's declarative pipeline, for real: its stages in order, each skipped when its
    /// `when` says so or after a failure, then `post { always }`.
    async fn real_pipeline(&mut self) -> Step {
        let pipeline = match self.build.script.as_deref().map(script::parse) {
            Some(Ok(Some(pipeline))) => pipeline,
            Some(Err(why)) => return Err(Stop::Failed(format!("the stand-in cannot read this job's pipeline script: {why}"))),
            Some(Ok(None)) | None => {
                self.log("This job's script is not a declarative pipeline: the stand-in runs the shuttle's (infra/jenkins/config.xml)");
                match shuttle_pipeline() {
                    Ok(pipeline) => pipeline,
                    Err(why) => return Err(Stop::Failed(format!("the stand-in cannot read infra/jenkins/config.xml: {why}"))),
                }
            }
        };
        let scratch = match Scratch::new() {
            Ok(scratch) => scratch,
            Err(e) => return Err(Stop::Failed(format!("cannot create the workspace: {e}"))),
        };
        let workspace = scratch.0.join("workspace");
        if let Err(e) = std::fs::create_dir_all(&workspace) {
            return Err(Stop::Failed(format!("cannot create the workspace: {e}")));
        }
        // `buildArgs()` is read once: `Check` fails on a malformed one, the steps use it.
        let args = self.build_args();
        let mut outcome: Step = Ok(());
        for stage in &pipeline.stages {
            self.stage_begin(&stage.name);
            if outcome.is_err() {
                self.log(&format!("Stage \"{}\" skipped due to earlier failure(s)", stage.name));
            } else if !self.holds(&stage.when)? {
                self.log(&format!("Stage \"{}\" skipped due to when conditional", stage.name));
            } else if stage.steps.is_empty() {
                outcome = self.check(&args);
            } else {
                for step in &stage.steps {
                    outcome = self.run_step(step, &args, &scratch.0, &workspace, true).await;
                    if outcome.is_err() {
                        break;
                    }
                }
            }
            self.stage_end();
        }
        if !pipeline.post_always.is_empty() {
            self.stage_begin("Declarative: Post Actions");
            for step in &pipeline.post_always {
                if self.run_step(step, &args, &scratch.0, &workspace, false).await.is_err() {
                    break;
                }
            }
            self.stage_end();
        }
        outcome
    }

    /// A stage's `when`: the script's helpers the stand-in knows.
    fn holds(&self, when: &When) -> Result<bool, Stop> {
        match when {
            When::Always => Ok(true),
            When::Expression { function, negated } if function == "isImageSource" => {
                Ok(self.parameter("SOURCE_IMAGE").trim().is_empty() == *negated)
            }
            When::Expression { function, .. } => {
                Err(Stop::Failed(format!("the stand-in cannot evaluate {function}() of a when condition")))
            }
        }
    }

    /// The `Check` stage of the pipeline, as its Groovy does it.
    fn check(&self, args: &BuildArgs) -> Step {
        let has_sources = !self.parameter("SOURCES_URL").trim().is_empty();
        let image_source = !self.parameter("SOURCE_IMAGE").trim().is_empty();
        if has_sources == image_source {
            return Err(Stop::Failed("exactly one of SOURCES_URL and SOURCE_IMAGE must be given".to_owned()));
        }
        let destination = self.parameter("DESTINATION_IMAGE");
        if destination.trim().is_empty() {
            return Err(Stop::Failed("DESTINATION_IMAGE is empty".to_owned()));
        }
        args.as_ref().map_err(|why| Stop::Failed(why.clone()))?;
        self.step("echo");
        let from = if image_source { format!("image {}", self.parameter("SOURCE_IMAGE")) } else { "sources".to_owned() };
        self.log(&format!("Build {}: {from} -> {destination}", self.parameter("BUILD_UUID")));
        Ok(())
    }

    /// `buildArgs()` of the pipeline: `BUILD_ARGS` as names and values, in order, checked; else
    /// the pipeline's error message.
    fn build_args(&self) -> BuildArgs {
        let text = self.parameter("BUILD_ARGS");
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let Ok(serde_json::Value::Object(parsed)) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
            return Err("BUILD_ARGS is not a JSON object".to_owned());
        };
        let mut args = Vec::new();
        for (name, value) in parsed {
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("invalid build argument name '{name}'"));
            }
            if reserved_build_arg(&name) {
                return Err(format!("build argument name '{name}' is reserved"));
            }
            let value = match value {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(value) => value,
                other => other.to_string(),
            };
            args.push((name, value));
        }
        Ok(args)
    }

    async fn run_step(&mut self, step: &ScriptStep, args: &BuildArgs, scratch: &Path, workspace: &Path, interruptible: bool) -> Step {
        let args = args.as_ref().map_err(|why| Stop::Failed(why.clone()))?;
        let names: String = args.iter().map(|(name, _)| format!(" {name}")).collect();
        let flags: String = args.iter().map(|(name, _)| format!(" --build-arg {name}")).collect();
        let variables = |name: &str| match name {
            "names" => Some(names.clone()),
            "flags" => Some(flags.clone()),
            _ => None,
        };
        match step {
            ScriptStep::WriteFile { file, text, encoding } => {
                self.step("writeFile");
                let text = text.fill(&variables).map_err(Stop::Failed)?;
                let bytes = if encoding.as_deref() == Some("Base64") {
                    if text.starts_with("@@") && text.ends_with("@@") {
                        // The template's placeholder, not replaced: the repository's script.
                        std::fs::read(&self.shared.config.prepare_script)
                            .map_err(|e| Stop::Failed(format!("{}: {e}", self.shared.config.prepare_script.display())))?
                    } else {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(text.trim())
                            .map_err(|e| Stop::Failed(format!("writeFile {file}: the text is not Base64: {e}")))?
                    }
                } else {
                    text.into_bytes()
                };
                std::fs::write(workspace.join(file), bytes).map_err(|e| Stop::Failed(format!("writeFile {file}: {e}")))
            }
            ScriptStep::Sh { label: _, script, with_env } => {
                self.step("sh");
                let text = script.fill(&variables).map_err(Stop::Failed)?;
                let mut step_tmp = workspace.as_os_str().to_owned();
                step_tmp.push("@tmp");
                let durable = PathBuf::from(step_tmp).join(format!("durable-{}", &short_id()[..8]));
                std::fs::create_dir_all(&durable).map_err(|e| Stop::Failed(format!("cannot write the step's script: {e}")))?;
                let path = durable.join("script.sh");
                std::fs::write(&path, text).map_err(|e| Stop::Failed(format!("cannot write the step's script: {e}")))?;
                let mut command = Command::new("sh");
                command.arg("-xe").arg(&path).current_dir(workspace);
                self.jenkins_environment(&mut command, scratch, workspace);
                if with_env.is_some() {
                    command.envs(args.iter().map(|(name, value)| (name.clone(), value.clone())));
                }
                let path_variable = std::env::var_os("PATH").unwrap_or_default();
                let mut paths = vec![docker_shim_dir()];
                paths.extend(std::env::split_paths(&path_variable));
                command
                    .env("PATH", std::env::join_paths(paths).unwrap_or(path_variable))
                    .env("JENKINS_STANDIN_BUILDAH_ROOT", &self.shared.config.buildah_root);
                match &self.shared.config.docker_hub_mirror {
                    Some(mirror) => command.env("JENKINS_STANDIN_DOCKER_HUB_MIRROR", mirror),
                    None => command.env_remove("JENKINS_STANDIN_DOCKER_HUB_MIRROR"),
                };
                let outcome = self.run_process(command, scratch, "sh", interruptible).await;
                let _ = std::fs::remove_dir_all(&durable);
                outcome
            }
        }
    }

    /// After a stop: ABORTED once the abort delay has passed since the stop.
    async fn finish_aborted(&self) {
        let stopped_at = self.build.progress().stopped_at.unwrap_or_else(std::time::Instant::now);
        tokio::time::sleep_until((stopped_at + self.shared.config.abort_delay).into()).await;
        self.build.finish(BuildResult::Aborted);
    }
}

/// Whether builds use real Docker (the shim over buildah); else why not.
pub(crate) fn real_docker(mode: DockerMode) -> Result<(), &'static str> {
    match mode {
        DockerMode::Buildah => Ok(()),
        DockerMode::Simulated => Err("JENKINS_STANDIN_DOCKER is simulated"),
        DockerMode::Auto if on_path("buildah") => Ok(()),
        DockerMode::Auto => Err("buildah is not on PATH (install buildah for real builds)"),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program))))
}

/// The pipeline of `infra/jenkins/config.xml`, for jobs whose script is none.
fn shuttle_pipeline() -> Result<script::Pipeline, String> {
    let job = crate::job_config::parse(include_str!("../../jenkins/config.xml"))?;
    script::parse(job.script.as_deref().unwrap_or_default())?.ok_or_else(|| "no declarative pipeline".to_owned())
}

/// `reservedBuildArg()` of the pipeline: names that would change the shell, the docker CLI or
/// the pipeline if they were set in the environment of `docker build`.
fn reserved_build_arg(name: &str) -> bool {
    const EXACT: [&str; 20] = [
        "PATH",
        "HOME",
        "SHELL",
        "IFS",
        "ENV",
        "BASH_ENV",
        "CDPATH",
        "PS4",
        "TMPDIR",
        "WORKSPACE",
        "BUILD_UUID",
        "SOURCES_URL",
        "SOURCE_IMAGE",
        "SOURCE_REGISTRY_USER",
        "SOURCE_REGISTRY_PASSWORD",
        "DESTINATION_IMAGE",
        "DESTINATION_LATEST",
        "REGISTRY_USER",
        "REGISTRY_PASSWORD",
        "BUILD_ARGS",
    ];
    EXACT.contains(&name) || ["LD_", "DYLD_", "DOCKER_", "BUILDX_", "JENKINS_"].iter().any(|prefix| name.starts_with(prefix))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

async fn append_lines(build: Arc<Build>, pipe: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                build.log_line(text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// The running script. Its process group is ended with it: on a stop (SIGTERM, then SIGKILL),
/// and when the build's task is dropped midway (SIGKILL), so that nothing of it outlives the
/// build or writes into the scratch directory after it was removed.
struct ScriptRun<'a> {
    child: Child,
    /// The process group: the script's pid (it was started as a group leader).
    group: Option<u32>,
    scratch: &'a Path,
    /// The script was reaped and its group ended.
    finished: bool,
}

fn signal_group(signal: &str, group: u32) -> bool {
    std::process::Command::new("kill")
        .args([signal, "--", &format!("-{group}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl ScriptRun<'_> {
    /// SIGTERM to the process group, as Jenkins interrupts `sh`; SIGKILL if it lingers.
    async fn terminate(&mut self) {
        let Some(group) = self.group else { return };
        signal_group("-TERM", group);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        if tokio::time::timeout_at(deadline, self.child.wait()).await.is_err() {
            signal_group("-KILL", group);
            let _ = self.child.wait().await;
        }
        // The leader is reaped; wait for the rest of its group (a pipeline's other processes).
        while signal_group("-0", group) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if signal_group("-0", group) {
            signal_group("-KILL", group);
        }
        self.finished = true;
    }
}

impl Drop for ScriptRun<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(group) = self.group else { return };
        // The leader is not reaped yet, so the group id is still ours.
        signal_group("-KILL", group);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let _ = self.child.try_wait();
            if !signal_group("-0", group) || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(self.scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_read_like_docker() {
        let image = ImageRef::parse("registry.example.com:5000/org/app:1.2").expect("valid");
        assert_eq!(
            (image.repository, image.tag, image.registry()),
            ("registry.example.com:5000/org/app", "1.2", "registry.example.com:5000")
        );
        let image = ImageRef::parse("alpine").expect("valid");
        assert_eq!((image.repository, image.tag, image.registry()), ("alpine", "latest", "docker.io"));
        let image = ImageRef::parse("localhost/app@sha256:abc").expect("valid");
        assert_eq!((image.repository, image.tag, image.registry()), ("localhost/app", "latest", "localhost"));
        for invalid in ["", "Org/App:1", "app:", "a b", "registry.example.com/"] {
            assert!(ImageRef::parse(invalid).is_none(), "{invalid}");
        }
    }
}
