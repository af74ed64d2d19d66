//! What a stand-in is started with: users and who may do what, timings, and the
//! source-preparation script.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::authorization::{Authorization, Permission};

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

/// A Jenkins user besides [`StandInConfig::user`], with its own API token and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub api_token: String,
    pub password: String,
}

impl Account {
    pub fn new(name: &str, api_token: &str, password: &str) -> Self {
        Self { name: name.to_owned(), api_token: api_token.to_owned(), password: password.to_owned() }
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account").field("name", &self.name).field("api_token", &"****").field("password", &"****").finish()
    }
}

#[derive(Clone)]
pub struct StandInConfig {
    /// The first Jenkins user.
    pub user: String,
    /// The user's API token: HTTP Basic with it needs no crumb (unless `require_crumb`).
    pub api_token: String,
    /// The user's password: HTTP Basic with it opens a web session, whose POSTs need a crumb.
    pub password: String,
    /// More users, each signing in with its own token or password.
    pub users: Vec<Account>,
    /// Who may do what (matrix-auth with folder grants, see [`crate::authorization`]). `None`:
    /// every signed-in user may do everything, as Jenkins' "Logged-in users can do anything".
    pub authorization: Option<Authorization>,
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
            users: Vec::new(),
            authorization: None,
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

    /// Every user as `(name, api token, password)`, the first user first.
    pub fn accounts(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        std::iter::once((self.user.as_str(), self.api_token.as_str(), self.password.as_str()))
            .chain(self.users.iter().map(|a| (a.name.as_str(), a.api_token.as_str(), a.password.as_str())))
    }

    /// Whether `user` has `permission` in the ACL of `owner` (the names of a job's folder, or of
    /// a folder; empty: the root). Always true without an authorization model.
    pub fn allows(&self, user: &str, owner: &[String], permission: Permission) -> bool {
        self.authorization.as_ref().is_none_or(|matrix| matrix.allows(user, owner, permission))
    }
}

impl fmt::Debug for StandInConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandInConfig")
            .field("user", &self.user)
            .field("api_token", &"****")
            .field("password", &"****")
            .field("users", &self.users)
            .field("authorization", &self.authorization.as_ref().map(ToString::to_string))
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
                       [--users NAME:TOKEN:PASSWORD[;...]] [--authorization GRANTS] [--require-crumb] [--queue-delay-ms MS] [--abort-delay-ms MS] [--forget-left-items-after-s S]
                       [--step-ms MS] [--prepare-script PATH] [--docker auto|buildah|simulated]
                       [--buildah-root DIR] [--docker-hub-mirror HOST:PORT]
Each flag may instead be given as an environment variable: JENKINS_STANDIN_LISTEN, JENKINS_STANDIN_PUBLIC_URL,
JENKINS_STANDIN_USER, JENKINS_STANDIN_TOKEN, JENKINS_STANDIN_PASSWORD, JENKINS_STANDIN_USERS, JENKINS_STANDIN_AUTHORIZATION,
JENKINS_STANDIN_REQUIRE_CRUMB (true/false),
JENKINS_STANDIN_QUEUE_DELAY_MS, JENKINS_STANDIN_ABORT_DELAY_MS, JENKINS_STANDIN_FORGET_LEFT_ITEMS_AFTER_S,
JENKINS_STANDIN_STEP_MS, JENKINS_STANDIN_PREPARE_SCRIPT, JENKINS_STANDIN_DOCKER, JENKINS_STANDIN_BUILDAH_ROOT,
JENKINS_STANDIN_DOCKER_HUB_MIRROR. Flags win over variables.
Defaults: --listen 127.0.0.1:8080, user admin, token 11c0ffee5e7a1d4e8b2f9a6c3d0e7f1a2b, password admin-password,
--docker auto (real builds when buildah is on PATH), --buildah-root $TMPDIR/jenkins-standin-buildah, no mirror.
--users: more users, `alice:TOKEN:PASSWORD;bob:TOKEN:PASSWORD`.
--authorization: matrix-auth's project matrix with folder grants, `<user>[@<folder>]:<permission>[,...]` separated
by `;`, e.g. `admin:Overall/Administer; alice:Overall/Read; alice@team-a:Job/Read,Job/Create,Job/Build`
(`authenticated` for every user). Without it every signed-in user may do everything.";

impl Settings {
    /// Parses the arguments (without the program name), looking up variables with `env`.
    pub fn parse(args: impl IntoIterator<Item = String>, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        const FLAGS: [(&str, &str); 16] = [
            ("--listen", "LISTEN"),
            ("--public-url", "PUBLIC_URL"),
            ("--user", "USER"),
            ("--token", "TOKEN"),
            ("--password", "PASSWORD"),
            ("--users", "USERS"),
            ("--authorization", "AUTHORIZATION"),
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
        if let Some(users) = lookup("USERS") {
            config.users = parse_users(&users)?;
        }
        if let Some(grants) = lookup("AUTHORIZATION").filter(|grants| !grants.trim().is_empty()) {
            config.authorization = Some(grants.parse().map_err(|why| format!("AUTHORIZATION: {why}"))?);
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
        let mut names: Vec<&str> = Vec::new();
        for (name, token, password) in config.accounts() {
            if name.is_empty() || token.is_empty() || password.is_empty() {
                return Err("the user, token and password must not be empty".to_owned());
            }
            if token == password {
                return Err(format!("the API token and the password of {name} must differ: they authenticate differently"));
            }
            if names.contains(&name) {
                return Err(format!("the user {name} is given twice"));
            }
            names.push(name);
        }
        let listen = lookup("LISTEN").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        Ok(Self { listen, config })
    }
}

/// `alice:TOKEN:PASSWORD;bob:TOKEN:PASSWORD` (a password may hold `:`).
fn parse_users(text: &str) -> Result<Vec<Account>, String> {
    text.split([';', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.splitn(3, ':').collect::<Vec<_>>().as_slice() {
            [name, token, password] if !name.contains(['@', ',']) => Ok(Account::new(name.trim(), token.trim(), password)),
            _ => Err(format!(
                "USERS: a user is NAME:TOKEN:PASSWORD (no '@' or ',' in the name), got '{}'",
                entry.split(':').next().unwrap_or_default()
            )),
        })
        .collect()
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
    fn more_users_and_the_matrix_are_read_from_flags_or_variables() {
        let settings = parse(
            &["--users", "alice:a11ce-token:alice:pass word; bob:b0b-token:bob-password"],
            &[("JENKINS_STANDIN_AUTHORIZATION", "admin:Overall/Administer; alice:Overall/Read; alice@team-a:Job/Read,Job/Build")],
        )
        .expect("valid");
        let config = settings.config;
        assert_eq!(
            config.users,
            [Account::new("alice", "a11ce-token", "alice:pass word"), Account::new("bob", "b0b-token", "bob-password")]
        );
        let matrix = config.authorization.as_ref().expect("a matrix");
        assert_eq!(matrix.to_string(), "admin:Overall/Administer; alice:Overall/Read; alice@team-a:Job/Read,Job/Build");
        let team_a = ["team-a".to_owned()];
        assert!(config.allows("alice", &team_a, Permission::JobBuild) && !config.allows("alice", &[], Permission::JobBuild));
        assert!(StandInConfig::default().allows("anyone", &team_a, Permission::JobDelete), "no matrix: everything");
        let names: Vec<&str> = config.accounts().map(|(name, _, _)| name).collect();
        assert_eq!(names, ["admin", "alice", "bob"]);
    }

    #[test]
    fn malformed_users_and_grants_are_refused_with_their_name() {
        assert!(parse(&["--users", "alice:only-a-token"], &[]).unwrap_err().contains("USERS"));
        assert!(parse(&["--users", "admin:t:p"], &[]).unwrap_err().contains("admin is given twice"));
        assert!(parse(&["--users", "alice:same:same"], &[]).unwrap_err().contains("alice must differ"));
        assert!(parse(&["--authorization", "alice:Job/Fly"], &[]).unwrap_err().contains("AUTHORIZATION"));
        let shown = format!("{:?}", parse(&["--users", "alice:secret-token:secret-password"], &[]).expect("valid").config);
        assert!(shown.contains("alice") && !shown.contains("secret-token") && !shown.contains("secret-password"), "{shown}");
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let shown = format!("{:?}", StandInConfig::default());
        assert!(!shown.contains(&StandInConfig::default().api_token));
        assert!(!shown.contains(&StandInConfig::default().password));
    }
}
