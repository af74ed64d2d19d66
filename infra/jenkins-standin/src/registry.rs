//! A real image registry for tests: the CNCF distribution registry (`docker-registry`, Debian's
//! package of it) on a free loopback port, plain HTTP, with its storage in a fresh directory, and
//! htpasswd (bcrypt) authentication when asked. Stopped and removed when dropped.
//!
//! `make run` and `make test` start the shared one in shell (`infra/local/env.sh`); this one is for
//! a test that needs a registry of its own (one with credentials).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::docker_shim_dir;

pub struct Registry {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl Registry {
    /// Starts a registry; with `credentials`, it asks for HTTP Basic with that user and password.
    pub fn start(credentials: Option<(&str, &str)>) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("registry-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("storage")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let address = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            dir.join("storage").display()
        );
        if let Some((user, password)) = credentials {
            let htpasswd = dir.join("htpasswd");
            write_htpasswd(&htpasswd, user, password)?;
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n", htpasswd.display()));
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let log = std::fs::File::create(dir.join("registry.log")).map_err(|e| format!("registry.log: {e}"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run docker-registry (apt-get install docker-registry): {e}"))?;
        let mut registry = Self { child, dir, address };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&registry.address).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                let log = std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default();
                return Err(format!("docker-registry exited with {status}: {log}"));
            }
            if Instant::now() > deadline {
                return Err(format!("docker-registry did not listen on {} within 10 s", registry.address));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Pushes the base images of local builds (`base/busybox:1`, `library/busybox:1`) with
    /// `docker-shim/seed-base-images`, using the image store at `buildah_root`. Only for a
    /// registry without credentials.
    pub fn seed_base_images(&self, buildah_root: &Path) -> Result<(), String> {
        let output = Command::new(docker_shim_dir().join("seed-base-images"))
            .arg(&self.address)
            .env("JENKINS_STANDIN_BUILDAH_ROOT", buildah_root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run seed-base-images: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("seed-base-images failed: {}", String::from_utf8_lossy(&output.stderr)))
        }
    }
}

/// `htpasswd -B` with the password on standard input, never on a command line.
fn write_htpasswd(path: &Path, user: &str, password: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("htpasswd")
        .args(["-i", "-B", "-c"])
        .arg(path)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run htpasswd (apt-get install apache2-utils): {e}"))?;
    child.stdin.take().map(|mut stdin| stdin.write_all(password.as_bytes())).transpose().map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("htpasswd failed: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
