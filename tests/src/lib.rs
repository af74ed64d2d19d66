//! The harness of the integration and end-to-end tests: real local services, a fresh set of
//! randomly named resources per test, and the local gateway on a random port.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use local_gateway::stack::{create_resources, Resources};
use shuttle_core::{Settings, Shuttle};
use tokio::net::TcpListener;

/// The SDK configuration for the local AWS emulator that `make test` starts.
pub async fn sdk_config() -> SdkConfig {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "these tests run against the local AWS emulator: run them with `make test`, which starts it and sets AWS_ENDPOINT_URL"
    );
    shuttle_adapters::load_sdk_config().await
}

/// A name no other test uses: lowercase, short enough for an S3 bucket.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A table, bucket, queue (with dead-letter queue) and KMS key of this test's own.
pub struct Stack {
    pub sdk: SdkConfig,
    pub resources: Resources,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub kms: aws_sdk_kms::Client,
}

impl Stack {
    pub async fn new() -> Self {
        let sdk = sdk_config().await;
        let resources = create_resources(&sdk, &unique_name("t")).await.expect("create the test's resources in the AWS emulator");
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            s3: shuttle_adapters::s3::client(&sdk, None),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            kms: aws_sdk_kms::Client::new(&sdk),
            resources,
            sdk,
        }
    }

    pub fn settings(&self, shuttle_host: &str) -> Settings {
        Settings::from_lookup(|name| self.resources.setting(name, shuttle_host)).expect("test settings are complete")
    }

    pub fn shuttle(&self, shuttle_host: &str) -> Shuttle {
        shuttle_adapters::shuttle(&self.sdk, self.settings(shuttle_host), None)
    }

    /// Every item of the table, as stored.
    pub async fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let output = self.dynamodb.scan().table_name(&self.resources.table_name).send().await.expect("scan the table");
        output.items().to_vec()
    }

    /// The bodies of the messages waiting in the poll queue (received, then made visible again).
    pub async fn queued(&self) -> Vec<String> {
        let (mut bodies, mut receipts) = (Vec::new(), Vec::new());
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(&self.resources.queues.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive from the poll queue");
            if output.messages().is_empty() {
                break;
            }
            for message in output.messages() {
                bodies.push(message.body().unwrap_or_default().to_owned());
                receipts.push(message.receipt_handle().unwrap_or_default().to_owned());
            }
        }
        for receipt in receipts {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.resources.queues.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .expect("make the message visible again");
        }
        bodies
    }

    /// Every object key in the bucket.
    pub async fn object_keys(&self) -> Vec<String> {
        let output = self.s3.list_objects_v2().bucket(&self.resources.s3_bucket).send().await.expect("list the bucket");
        output.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    }

    /// Whether nothing at all was written: no build, no message, no object.
    pub async fn assert_nothing_written(&self, context: &str) {
        assert!(self.items().await.is_empty(), "{context}: a build was stored");
        assert!(self.queued().await.is_empty(), "{context}: a message was queued");
        assert!(self.object_keys().await.is_empty(), "{context}: an object was written");
    }
}

/// The local gateway on a random port, over this test's own resources.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub stack: Stack,
}

pub async fn spawn_app() -> TestApp {
    let stack = Stack::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let address = format!("http://{}", listener.local_addr().expect("a bound address"));
    let shuttle = stack.shuttle(&address);
    tokio::spawn(local_gateway::serve(listener, shuttle));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client");
    TestApp { address, client, stack }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client.post(self.url(path)).header("content-type", "application/json").body(body).send().await.expect("POST")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client.delete(self.url(path)).send().await.expect("DELETE")
    }

    pub async fn head(&self, path: &str) -> reqwest::Response {
        self.client.head(self.url(path)).send().await.expect("HEAD")
    }
}

/// Status and JSON body of a response.
pub async fn json_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON (status {status}): {text}"));
    (status, body)
}
