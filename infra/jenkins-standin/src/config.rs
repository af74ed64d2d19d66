//! What a stand-in is started with: credentials, timings, and the source-preparation script.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The Jenkins version the stand-in answers in `X-Jenkins` (an LTS release).
pub const JENKINS_VERSION: &str = "2.479.3";

/// The script a build runs on its sources: `infra/jenkins/prepare-sources.sh` of this repository.
pub fn default_prepare_script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../jenkins/prepare-sources.sh"))
}

/// How builds run `docker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DockerMode {
    /// Real builds if `buildah` is on `PATH`, else the simulation (the build log says why).
    Auto,
    /// Real builds: the pipeline's shell steps with `docker` the shim over buildah
    /// (`infra/jenkins-standin/docker-shim/docker`).
    Buildah,
    /// No image is built: each Docker command is imitated in the log (see [`crate::pipeline`]).
    Simulated,
}

impl std::str::FromStr for DockerMode {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "auto" => Ok(Self::Auto),
            "buildah" => Ok(Self::Buildah),
            "simulated" => Ok(Self::Simulated),
            _ => Err(format!("DOCKER must be auto, buildah or simulated, got '{raw}'")),
        }
    }
}

/// The directory of the `docker` shim over buildah.
pub fn docker_shim_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-shim"))
}

/// Where real builds keep their images by default: one store for every stand-in of the machine.
pub fn default_buildah_root() -> PathBuf {
    std::env::temp_dir().join("jenkins-standin-buildah")
}

#[derive(Clone)]
pub struct StandInConfig {
    /// The one Jenkins user.
    pub user: String,
    /// The user's API token: HTTP Basic with it needs no crumb (unless `require_crumb`).
    pub api_token: String,
    /// The user's password: HTTP Basic with it opens a web session, whose POSTs need a crumb.
    pub password: String,
    /// Every POST needs a crumb, even with an API token (some Jenkins setups do this).
    pub require_crumb: bool,
    /// The quiet period: how long a new queue item waits before it may start.
    pub queue_delay: Duration,
    /// How long a stopped build takes to become `ABORTED`.
    pub abort_delay: Duration,
    /// How long Jenkins remembers a queue item after it left the queue (Jenkins: 5 minutes).
    pub forget_left_items_after: Duration,
    /// How long each simulated Docker operation (pull, step, push) takes.
    pub step_time: Duration,
    /// `prepare-sources.sh <sources-url> <workdir> <build-arg-name>...`, run by archive builds.
    pub prepare_script: PathBuf,
    /// The root URL in JSON and `Location` headers; default `http://<listen address>/`.
    pub public_url: Option<String>,
    /// Real or simulated Docker.
    pub docker: DockerMode,
    /// The image store of real builds (buildah's `--root` and `--runroot` below it).
    pub buildah_root: PathBuf,
    /// A registry (`host:port`) that real builds read Docker Hub through, as Docker's
    /// `registry-mirrors`: `FROM busybox:1` pulls `<mirror>/library/busybox:1`.
    pub docker_hub_mirror: Option<String>,
}

impl Default for StandInConfig {
    fn default() -> Self {
        Self {
            user: "admin".to_owned(),
            api_token: "11c0ffee5e7a1d4e8b2f9a6c3d0e7f1a2b".to_owned(),
            password: "admin-password".to_owned(),
            require_crumb: false,
            queue_delay: Duration::from_secs(1),
            abort_delay: Duration::from_millis(500),
            forget_left_items_after: Duration::from_secs(300),
            step_time: Duration::from_millis(100),
            prepare_script: default_prepare_script(),
            public_url: None,
            docker: DockerMode::Auto,
            buildah_root: default_buildah_root(),
            docker_hub_mirror: None,
        }
    }
}

impl StandInConfig {
    /// Whether builds use real Docker (the shim over buildah); else why not.
    pub fn real_docker(&self) -> Result<(), &'static str> {
        crate::pipeline::real_docker(self.docker)
    }
}

impl fmt::Debug for StandInConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandInConfig")
            .field("user", &self.user)
            .field("api_token", &"****")
            .field("password", &"****")
            .field("require_crumb", &self.require_crumb)
            .field("queue_delay", &self.queue_delay)
            .field("abort_delay", &self.abort_delay)
            .field("forget_left_items_after", &self.forget_left_items_after)
            .field("step_time", &self.step_time)
            .field("prepare_script", &self.prepare_script)
            .field("public_url", &self.public_url)
            .field("docker", &self.docker)
            .field("buildah_root", &self.buildah_root)
            .field("docker_hub_mirror", &self.docker_hub_mirror)
            .finish()
    }
}

/// The settings of the binary: `--flag value` arguments, else `JENKINS_STANDIN_*` variables.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub config: StandInConfig,
}

pub const USAGE: &str = "\
usage: jenkins-standin [--listen ADDR] [--public-url URL] [--user NAME] [--token TOKEN] [--password PASSWORD]
                       [--require-crumb] [--queue-delay-ms MS] [--abort-delay-ms MS] [--forget-left-items-after-s S]
                       [--step-ms MS] [--prepare-script PATH] [--docker auto|buildah|simulated]
                       [--buildah-root DIR] [--docker-hub-mirror HOST:PORT]
Each flag may instead be given as an environment variable: JENKINS_STANDIN_LISTEN, JENKINS_STANDIN_PUBLIC_URL,
JENKINS_STANDIN_USER, JENKINS_STANDIN_TOKEN, JENKINS_STANDIN_PASSWORD, JENKINS_STANDIN_REQUIRE_CRUMB (true/false),
JENKINS_STANDIN_QUEUE_DELAY_MS, JENKINS_STANDIN_ABORT_DELAY_MS, JENKINS_STANDIN_FORGET_LEFT_ITEMS_AFTER_S,
JENKINS_STANDIN_STEP_MS, JENKINS_STANDIN_PREPARE_SCRIPT, JENKINS_STANDIN_DOCKER, JENKINS_STANDIN_BUILDAH_ROOT,
JENKINS_STANDIN_DOCKER_HUB_MIRROR. Flags win over variables.
Defaults: --listen 127.0.0.1:8080, user admin, token 11c0ffee5e7a1d4e8b2f9a6c3d0e7f1a2b, password admin-password,
--docker auto (real builds when buildah is on PATH), --buildah-root $TMPDIR/jenkins-standin-buildah, no mirror.";

impl Settings {
    /// Parses the arguments (without the program name), looking up variables with `env`.
    pub fn parse(args: impl IntoIterator<Item = String>, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        const FLAGS: [(&str, &str); 14] = [
            ("--listen", "LISTEN"),
            ("--public-url", "PUBLIC_URL"),
            ("--user", "USER"),
            ("--token", "TOKEN"),
            ("--password", "PASSWORD"),
            ("--require-crumb", "REQUIRE_CRUMB"),
            ("--queue-delay-ms", "QUEUE_DELAY_MS"),
            ("--abort-delay-ms", "ABORT_DELAY_MS"),
            ("--forget-left-items-after-s", "FORGET_LEFT_ITEMS_AFTER_S"),
            ("--step-ms", "STEP_MS"),
            ("--prepare-script", "PREPARE_SCRIPT"),
            ("--docker", "DOCKER"),
            ("--buildah-root", "BUILDAH_ROOT"),
            ("--docker-hub-mirror", "DOCKER_HUB_MIRROR"),
        ];
        let mut given: Vec<(&str, String)> = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let Some(&(_, key)) = FLAGS.iter().find(|(name, _)| *name == flag) else {
                return Err(format!("unknown argument '{arg}'"));
            };
            let value = if key == "REQUIRE_CRUMB" {
                inline.unwrap_or_else(|| "true".to_owned())
            } else {
                match inline.or_else(|| args.next()) {
                    Some(value) => value,
                    None => return Err(format!("{flag} needs a value")),
                }
            };
            given.push((key, value));
        }
        let lookup = |key: &str| -> Option<String> {
            given.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.clone()).or_else(|| env(&format!("JENKINS_STANDIN_{key}")))
        };
        let millis = |key: &str| -> Result<Option<std::time::Duration>, String> {
            lookup(key)
                .map(|raw| {
                    raw.parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| format!("{key} must be a number of milliseconds, got '{raw}'"))
                })
                .transpose()
        };
        let mut config = StandInConfig::default();
        if let Some(user) = lookup("USER") {
            config.user = user;
        }
        if let Some(token) = lookup("TOKEN") {
            config.api_token = token;
        }
        if let Some(password) = lookup("PASSWORD") {
            config.password = password;
        }
        if let Some(raw) = lookup("REQUIRE_CRUMB") {
            config.require_crumb = match raw.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => return Err(format!("REQUIRE_CRUMB must be true or false, got '{raw}'")),
            };
        }
        if let Some(delay) = millis("QUEUE_DELAY_MS")? {
            config.queue_delay = delay;
        }
        if let Some(delay) = millis("ABORT_DELAY_MS")? {
            config.abort_delay = delay;
        }
        if let Some(step) = millis("STEP_MS")? {
            config.step_time = step;
        }
        if let Some(raw) = lookup("FORGET_LEFT_ITEMS_AFTER_S") {
            let seconds: f64 = raw
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("FORGET_LEFT_ITEMS_AFTER_S must be seconds, got '{raw}'"))?;
            config.forget_left_items_after = Duration::from_secs_f64(seconds);
        }
        if let Some(script) = lookup("PREPARE_SCRIPT") {
            config.prepare_script = PathBuf::from(script);
        }
        if let Some(raw) = lookup("DOCKER") {
            config.docker = raw.parse()?;
        }
        if let Some(root) = lookup("BUILDAH_ROOT").filter(|root| !root.is_empty()) {
            config.buildah_root = PathBuf::from(root);
        }
        config.docker_hub_mirror = match lookup("DOCKER_HUB_MIRROR").filter(|mirror| !mirror.is_empty()) {
            Some(mirror) if mirror.contains(['/', ' ']) || mirror.contains("://") => {
                return Err(format!("DOCKER_HUB_MIRROR must be a registry host[:port], got '{mirror}'"));
            }
            mirror => mirror,
        };
        config.public_url = lookup("PUBLIC_URL").filter(|url| !url.is_empty());
        if config.user.is_empty() || config.api_token.is_empty() || config.password.is_empty() {
            return Err("the user, token and password must not be empty".to_owned());
        }
        if config.api_token == config.password {
            return Err("the API token and the password must differ: they authenticate differently".to_owned());
        }
        let listen = lookup("LISTEN").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        Ok(Self { listen, config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, String> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::parse(args.iter().map(|a| a.to_string()), |key| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[test]
    fn flags_win_over_variables_and_defaults_fill_the_rest() {
        let settings = parse(
            &["--listen", "127.0.0.1:9000", "--queue-delay-ms=50", "--require-crumb"],
            &[
                ("JENKINS_STANDIN_LISTEN", "127.0.0.1:1"),
                ("JENKINS_STANDIN_USER", "ci"),
                ("JENKINS_STANDIN_FORGET_LEFT_ITEMS_AFTER_S", "1.5"),
            ],
        )
        .expect("valid");
        assert_eq!(settings.listen, "127.0.0.1:9000");
        assert_eq!(settings.config.user, "ci");
        assert_eq!(settings.config.queue_delay, Duration::from_millis(50));
        assert!(settings.config.require_crumb);
        assert_eq!(settings.config.forget_left_items_after, Duration::from_millis(1500));
        assert_eq!(settings.config.abort_delay, StandInConfig::default().abort_delay);
    }

    #[test]
    fn malformed_settings_are_refused_with_their_name() {
        assert!(parse(&["--queue-delay-ms", "soon"], &[]).unwrap_err().contains("QUEUE_DELAY_MS"));
        assert!(parse(&["--nope"], &[]).unwrap_err().contains("--nope"));
        assert!(parse(&["--user"], &[]).unwrap_err().contains("--user"));
        assert!(parse(&["--token", "same", "--password", "same"], &[]).unwrap_err().contains("differ"));
        assert!(parse(&[], &[("JENKINS_STANDIN_DOCKER", "podman")]).unwrap_err().contains("DOCKER"));
        assert!(parse(&["--docker-hub-mirror", "http://127.0.0.1:5000"], &[]).unwrap_err().contains("DOCKER_HUB_MIRROR"));
        let settings = parse(&["--docker=simulated", "--docker-hub-mirror", "127.0.0.1:5000"], &[]).expect("valid");
        assert_eq!(settings.config.docker, DockerMode::Simulated);
        assert_eq!(settings.config.docker_hub_mirror.as_deref(), Some("127.0.0.1:5000"));
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let shown = format!("{:?}", StandInConfig::default());
        assert!(!shown.contains(&StandInConfig::default().api_token));
        assert!(!shown.contains(&StandInConfig::default().password));
    }
}
