//! The five API functions, each wired by its own composition root, as each Lambda wires itself.

use shuttle_adapters::wiring::{SdkConfig, StartupError};
use shuttle_core::config::Env;

pub struct Functions {
    pub create: create::App,
    pub stop: stop::App,
    pub delete: delete::App,
    pub status: status::App,
    pub sources: sources::App,
}

impl Functions {
    pub fn wire(sdk: &SdkConfig, env: &Env<'_>) -> Result<Self, StartupError> {
        Ok(Self {
            create: create::wire(sdk, env)?,
            stop: stop::wire(sdk, env)?,
            delete: delete::wire(sdk, env)?,
            status: status::wire(sdk, env)?,
            sources: sources::wire(sdk, env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Mutex;

    use aws_config::{BehaviorVersion, Region};

    use super::*;

    type Wire = fn(&SdkConfig, &Env<'_>) -> Result<(), StartupError>;

    const ACCESS: [&str; 2] = ["ACCESS_SECRET_ID", "SHUTTLE_OPEN_MODE"];
    const STORE: [&str; 2] = ["TABLE_NAME", "BUILD_RETENTION"];
    const BUCKET: [&str; 2] = ["S3_BUCKET", "S3_LOCATION"];
    const QUEUE: [&str; 2] = ["POLL_QUEUE_URL", "POLL_DEAD_LETTER_QUEUE_URL"];
    const JENKINS: [&str; 3] = ["JENKINS_URL", "JENKINS_FOLDER", "JENKINS_SECRET_ID"];

    /// What each function reads (the documented contract of README's settings table).
    fn reads() -> Vec<(&'static str, Wire, BTreeSet<&'static str>)> {
        let set = |parts: &[&[&'static str]]| parts.iter().flat_map(|part| part.iter().copied()).collect::<BTreeSet<_>>();
        vec![
            (
                "create",
                |sdk, env| create::wire(sdk, env).map(drop),
                set(&[&ACCESS, &STORE, &BUCKET, &QUEUE, &["KMS_KEY_ID", "BUILD_SHUTTLE_HOST", "ALLOWED_PRIVATE_CIDRS", "KAFKA_TOPIC"]]),
            ),
            ("stop", |sdk, env| stop::wire(sdk, env).map(drop), set(&[&ACCESS, &STORE, &JENKINS])),
            ("delete", |sdk, env| delete::wire(sdk, env).map(drop), set(&[&ACCESS, &STORE, &JENKINS])),
            ("status", |sdk, env| status::wire(sdk, env).map(drop), set(&[&ACCESS, &STORE, &BUCKET])),
            ("sources", |sdk, env| sources::wire(sdk, env).map(drop), set(&[&ACCESS, &BUCKET, &["SOURCES_LINK_TTL"]])),
            (
                "poller",
                |sdk, env| shuttle_adapters::wiring::poller(sdk, env).map(drop),
                set(&[
                    &STORE,
                    &BUCKET,
                    &QUEUE,
                    &JENKINS,
                    &[
                        "SHUTTLE_OPEN_MODE",
                        "ACCESS_SECRET_ID",
                        "KMS_KEY_ID",
                        "BUILD_SHUTTLE_HOST",
                        "ALLOWED_PRIVATE_CIDRS",
                        "KAFKA_ALLOWED_BROKERS",
                        "KAFKA_TOPIC",
                        "EXTRA_BUILD_ARGS",
                        "IMAGE_TAG_PREFIX",
                        "WEBHOOK_SIGNING_SECRET_ID",
                        "BUILD_TIMEOUT",
                        "QUEUE_TIMEOUT",
                        "POLL_INTERVAL",
                        "LOG_WINDOW",
                        "POLL_STALE_AFTER",
                        "SOURCE_MAX_BYTES",
                    ],
                ]),
            ),
        ]
    }

    /// A value for every setting of SPEC §6.
    fn everything() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("TABLE_NAME", "builds"),
            ("BUILD_RETENTION", "30d"),
            ("S3_BUCKET", "sources"),
            ("S3_LOCATION", "eu-west-1"),
            ("POLL_QUEUE_URL", "http://127.0.0.1:5000/123/poll"),
            ("POLL_DEAD_LETTER_QUEUE_URL", "http://127.0.0.1:5000/123/poll-dlq"),
            ("KMS_KEY_ID", "key"),
            ("BUILD_SHUTTLE_HOST", "https://shuttle.example"),
            ("JENKINS_URL", "https://jenkins.example"),
            ("JENKINS_FOLDER", "build-shuttle"),
            ("JENKINS_SECRET_ID", "build-shuttle/jenkins"),
            ("JENKINS_USER", "shuttle"),
            ("JENKINS_TOKEN", "jenkins-token"),
            ("ACCESS_SECRET_ID", "build-shuttle/access"),
            ("WEBHOOK_SIGNING_SECRET_ID", "build-shuttle/webhooks"),
            ("SHUTTLE_API_TOKENS", "caller-token-0123456789"),
            ("SOURCES_SIGNING_KEY", "a-sources-signing-key-of-32-chars!"),
            ("SOURCES_LINK_TTL", "10m"),
            ("ALLOWED_PRIVATE_CIDRS", "10.0.0.0/8"),
            ("KAFKA_ALLOWED_BROKERS", "10.0.0.9:9092"),
            ("KAFKA_TOPIC", "logs"),
            ("EXTRA_BUILD_ARGS", "{\"NODE_ENV\":\"production\"}"),
            ("IMAGE_TAG_PREFIX", "1"),
            ("WEBHOOK_SIGNING_SECRET", "whsec_c2VjcmV0"),
            ("BUILD_TIMEOUT", "20m"),
            ("QUEUE_TIMEOUT", "30m"),
            ("POLL_INTERVAL", "2s"),
            ("LOG_WINDOW", "20s"),
            ("POLL_STALE_AFTER", "5m"),
            ("SOURCE_MAX_BYTES", "1000000"),
        ])
    }

    fn sdk() -> SdkConfig {
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::from_static("us-east-1")).build()
    }

    #[test]
    fn every_function_reads_only_its_own_settings() {
        let values = everything();
        // Every name of SPEC §6 (the values, and open mode, left unset here for the tokens).
        let known: Vec<&'static str> = values.keys().copied().chain(["SHUTTLE_OPEN_MODE"]).collect();
        for (function, wire, expected) in reads() {
            let read = Mutex::new(BTreeSet::new());
            let env = Env::from_lookup(|name| {
                read.lock().unwrap().insert(known.iter().find(|known| **known == name).copied().unwrap_or("(unknown)"));
                values.get(name).map(|value| (*value).to_owned())
            });
            wire(&sdk(), &env).unwrap_or_else(|error| panic!("{function}: {error}"));
            drop(env);
            assert_eq!(read.into_inner().unwrap(), expected, "the settings {function} reads");
        }
    }

    /// Issue 20: template.yaml gives each function only the settings it reads (its own and the
    /// Globals'), and no function a secret's value: each is read at run time from its secret.
    #[test]
    fn the_template_gives_each_function_only_the_settings_it_reads() {
        for (function, _, reads) in reads() {
            let given = crate::template::function_environment(crate::template::TEMPLATE, function).unwrap();
            let extra: Vec<&String> =
                given.iter().filter(|name| !reads.contains(name.as_str()) && name.as_str() != "MALLOC_MMAP_THRESHOLD_").collect();
            assert!(extra.is_empty(), "template.yaml gives {function} settings it does not read: {extra:?}");
            for secret in ["JENKINS_USER", "JENKINS_TOKEN", "SHUTTLE_API_TOKENS", "SOURCES_SIGNING_KEY", "WEBHOOK_SIGNING_SECRET"] {
                assert!(!given.contains(secret), "{function} gets {secret} in its environment");
            }
        }
    }

    #[test]
    fn a_function_missing_a_setting_it_needs_names_it_at_start() {
        let required =
            ["TABLE_NAME", "S3_BUCKET", "POLL_QUEUE_URL", "KMS_KEY_ID", "BUILD_SHUTTLE_HOST", "JENKINS_URL", "SHUTTLE_API_TOKENS"];
        for (function, wire, reads) in reads() {
            for name in required.iter().chain(["SOURCES_SIGNING_KEY"].iter()).filter(|name| reads.contains(*name)) {
                // The signing key is required with tokens only for the functions that sign or
                // check links; without it, the other functions start.
                let mut values = everything();
                values.remove(name);
                let env = Env::from_lookup(|wanted| values.get(wanted).map(|value| (*value).to_owned()));
                let error = wire(&sdk(), &env).map(|()| "it started".to_owned()).unwrap_or_else(|error| error.to_string());
                assert!(error.contains(name), "{function} without {name}: {error}");
            }
        }
        // Without ACCESS_SECRET_ID, the callers' tokens (and the signing key) come from the
        // environment, and a function that needs them names the one missing.
        for (function, wire, reads) in reads().into_iter().filter(|(_, _, reads)| reads.contains("ACCESS_SECRET_ID")) {
            let mut values = everything();
            for name in ["ACCESS_SECRET_ID", "SHUTTLE_API_TOKENS", "SOURCES_SIGNING_KEY"] {
                values.remove(name);
            }
            let env = Env::from_lookup(|wanted| values.get(wanted).map(|value| (*value).to_owned()));
            let error = wire(&sdk(), &env).map(|()| "it started".to_owned()).unwrap_or_else(|error| error.to_string());
            let named = if function == "poller" { "SOURCES_SIGNING_KEY" } else { "SHUTTLE_API_TOKENS" };
            assert!(error.contains(named), "{function} without ACCESS_SECRET_ID nor {named}: {error} ({reads:?})");
        }
    }
}
