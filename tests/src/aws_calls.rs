//! Every AWS request the functions make in a test, as the IAM check reads it
//! (`infra/iam/check-calls.mjs`): which function made it (the gateway runs each invocation in
//! its function's scope, [`local_gateway::invocation`]), the IAM action that authorises it and
//! the resource it acts on.
//!
//! The functions' SDK clients get a recording HTTP client around the shuttle's own: no product
//! code changes, and what is recorded is what went on the wire. With `SHUTTLE_AWS_CALLS_DIR`
//! set (`make test` sets it), each test app appends its calls as JSON lines to a file of its own
//! there; `make test` then checks them all against each function's policy in template.yaml.
//! Calls outside an invocation (a test reading the store itself, the stack's set-up) are not
//! the functions' and are not recorded.
//!
//! Real names are written as the local stack's canonical ones (`shuttle-builds`, …), the names
//! the checker gives the template's resources, so that one check covers every test's stack.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use local_gateway::stack::Resources;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

/// Where `make test` collects the calls.
pub const CALLS_DIR_VARIABLE: &str = "SHUTTLE_AWS_CALLS_DIR";

/// The account and region of the local emulator and of the checker's ARNs.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// The names of one test's resources, and the canonical names they are written as.
#[derive(Clone, Debug)]
struct Names {
    pairs: Vec<(String, &'static str)>,
}

impl Names {
    fn new(resources: &Resources) -> Self {
        let queue = |url: &str| url.rsplit('/').next().unwrap_or_default().to_owned();
        Self {
            pairs: vec![
                (resources.table_name.clone(), "shuttle-builds"),
                (resources.s3_bucket.clone(), "shuttle-sources"),
                (queue(&resources.queues.dead_letter_url), "shuttle-poll-dlq"),
                (queue(&resources.queues.queue_url), "shuttle-poll"),
                (resources.kms_key_id.clone(), "shuttle-secrets"),
            ],
        }
    }

    fn canonical(&self, name: &str) -> String {
        self.pairs.iter().find(|(real, _)| real == name).map_or_else(|| name.to_owned(), |(_, canonical)| (*canonical).to_owned())
    }
}

/// The calls of one test app: a file in `SHUTTLE_AWS_CALLS_DIR`, or nothing when it is unset.
#[derive(Clone)]
pub struct CallLog {
    file: Arc<Mutex<File>>,
    names: Names,
}

impl CallLog {
    /// A file of its own in `SHUTTLE_AWS_CALLS_DIR`; `None` when the variable is unset.
    pub fn from_env(resources: &Resources) -> Option<Self> {
        let dir = std::env::var_os(CALLS_DIR_VARIABLE)?;
        std::fs::create_dir_all(&dir).expect("the AWS calls' directory");
        let path = std::path::Path::new(&dir).join(format!("{}-{}.jsonl", std::process::id(), uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new().create_new(true).append(true).open(&path).expect("a file for the AWS calls");
        Some(Self { file: Arc::new(Mutex::new(file)), names: Names::new(resources) })
    }

    /// `http` with every request made inside an invocation recorded here.
    pub fn recording(&self, http: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(Recording { inner: http, log: self.clone() })
    }

    fn write(&self, calls: &[Value]) {
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for call in calls {
            writeln!(file, "{call}").expect("write an AWS call");
        }
    }
}

#[derive(Debug)]
struct Recording {
    inner: SharedHttpClient,
    log: CallLog,
}

impl std::fmt::Debug for CallLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLog").finish_non_exhaustive()
    }
}

impl HttpClient for Recording {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(RecordingConnector { inner: self.inner.http_connector(settings, components), log: self.log.clone() })
    }
}

#[derive(Debug)]
struct RecordingConnector {
    inner: SharedHttpConnector,
    log: CallLog,
}

impl HttpConnector for RecordingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let Some(function) = local_gateway::invocation::current_function() else {
            return self.inner.call(request);
        };
        let seen = Seen::of(&request);
        let (inner, log) = (self.inner.clone(), self.log.clone());
        HttpConnectorFuture::new(async move {
            let response = inner.call(request).await?;
            log.write(&seen.calls(function, response.status().as_u16(), &log.names));
            Ok(response)
        })
    }
}

/// What a request says about the call, read before it is sent.
struct Seen {
    method: String,
    /// The path and query, percent-encoded as sent.
    path: String,
    query: String,
    service: String,
    target: Option<String>,
    copy_source: Option<String>,
    body: Option<Value>,
}

impl Seen {
    fn of(request: &HttpRequest) -> Self {
        let uri: http::Uri = request.uri().parse().unwrap_or_default();
        let header = |name: &str| request.headers().get(name).map(str::to_owned);
        // `Credential=AKID/20261202/us-east-1/<service>/aws4_request` names the signing service.
        let service = header("authorization")
            .and_then(|auth| auth.split("Credential=").nth(1).and_then(|c| c.split('/').nth(3)).map(str::to_owned))
            .unwrap_or_default();
        Self {
            method: request.method().to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            service,
            target: header("x-amz-target"),
            copy_source: header("x-amz-copy-source"),
            body: request.body().bytes().and_then(|bytes| serde_json::from_slice(bytes).ok()),
        }
    }

    /// The calls the checker reads: IAM action and resource ARN (a copy is two).
    fn calls(&self, function: &str, status: u16, names: &Names) -> Vec<Value> {
        let operation = self.target.as_deref().and_then(|t| t.split('.').nth(1)).unwrap_or_default().to_owned();
        let field = |name: &str| self.body.as_ref().and_then(|b| b[name].as_str()).unwrap_or_default().to_owned();
        let call = |action: String, resource: String, operation: &str| json!({"function": function, "service": self.service, "action": action, "resource": resource, "operation": operation});
        match self.service.as_str() {
            "dynamodb" => {
                let mut resource = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", names.canonical(&field("TableName")));
                if let Some(index) = self.body.as_ref().and_then(|b| b["IndexName"].as_str()) {
                    resource = format!("{resource}/index/{index}");
                }
                vec![call(format!("dynamodb:{operation}"), resource, &operation)]
            }
            "sqs" => {
                let queue = field("QueueUrl").rsplit('/').next().unwrap_or_default().to_owned();
                let action = operation.trim_end_matches("Batch");
                vec![call(format!("sqs:{action}"), format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.canonical(&queue)), &operation)]
            }
            "kms" => {
                let key = field("KeyId");
                let key = key.rsplit('/').next().unwrap_or_default();
                vec![call(format!("kms:{operation}"), format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{}", names.canonical(key)), &operation)]
            }
            "s3" => self.s3_calls(function, status, names),
            other => vec![json!({"function": function, "service": other, "action": format!("{other}:Unknown"), "resource": self.path})],
        }
    }

    fn s3_calls(&self, function: &str, status: u16, names: &Names) -> Vec<Value> {
        let decoded = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
        let path = self.path.trim_start_matches('/');
        let (bucket, key) = path.split_once('/').map_or((path, ""), |(bucket, key)| (bucket, key));
        let bucket = names.canonical(&decoded(bucket));
        let key = decoded(key);
        let object = |key: &str| format!("arn:aws:s3:::{bucket}/{key}");
        let call = |action: &str, resource: String, operation: &str| json!({"function": function, "service": "s3", "action": action, "resource": resource, "operation": operation});
        let query: Vec<(String, String)> = self
            .query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .map(|(k, v)| (decoded(k), decoded(v)))
            .collect();
        let has = |name: &str| query.iter().any(|(k, _)| k == name);
        if key.is_empty() {
            let prefix = query.iter().find(|(k, _)| k == "prefix").map(|(_, v)| v.clone()).unwrap_or_default();
            let mut listed =
                call("s3:ListBucket", format!("arn:aws:s3:::{bucket}"), if has("list-type") { "ListObjectsV2" } else { "HeadBucket" });
            listed["context"] = json!({"s3:prefix": prefix});
            return vec![listed];
        }
        match (self.method.as_str(), &self.copy_source) {
            ("GET" | "HEAD", _) => {
                let operation = if self.method == "HEAD" { "HeadObject" } else { "GetObject" };
                let mut read = call("s3:GetObject", object(&key), operation);
                if status == 404 {
                    read["missing_key"] = json!(true);
                }
                vec![read]
            }
            ("PUT", Some(source)) => {
                let source = decoded(source.split('?').next().unwrap_or_default());
                let source = source.trim_start_matches('/');
                let (source_bucket, source_key) = source.split_once('/').unwrap_or((source, ""));
                let source_arn = format!("arn:aws:s3:::{}/{source_key}", names.canonical(source_bucket));
                vec![call("s3:GetObject", source_arn, "CopyObject"), call("s3:PutObject", object(&key), "CopyObject")]
            }
            ("PUT" | "POST", None) => {
                vec![call("s3:PutObject", object(&key), if has("uploadId") || has("uploads") { "multipart upload" } else { "PutObject" })]
            }
            ("DELETE", _) if has("uploadId") => vec![call("s3:AbortMultipartUpload", object(&key), "AbortMultipartUpload")],
            ("DELETE", _) => vec![call("s3:DeleteObject", object(&key), "DeleteObject")],
            (method, _) => vec![call(&format!("s3:{method}"), object(&key), method)],
        }
    }
}
