//! Build state in DynamoDB. One item per build, keyed by `source_id`; every write after the
//! first is conditional on the item's `version`.
//!
//! Indexes: `by_app` (`app_key`, `created_at`) lists an app's builds; `by_number`
//! (`app_number` = `{app_key}#{n}`, `created_at`) finds the newest legacy build numbered `n` (`0`:
//! not numbered yet).

use std::collections::HashMap;
use std::time::Duration;

use crate::built::Built;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use bytes::Bytes;
use shuttle_core::error::{ServiceError, StoreError};
use shuttle_core::ports::BuildStore;
use shuttle_core::record::{ApiKind, BuildRecord, Deliveries, Lease, Progress};
use shuttle_core::state::{BuildState, StopIntent};
use uuid::Uuid;

pub const BY_APP_INDEX: &str = "by_app";
pub const BY_NUMBER_INDEX: &str = "by_number";
pub const BY_ACTIVITY_INDEX: &str = "by_activity";
/// The table's TTL attribute (`TimeToLiveSpecification` in template.yaml).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The value of `active` on every build the poller still has work for (unfinished, or a webhook
/// target not yet told everything); other builds have no `active`, so the `by_activity` index
/// holds only the builds the schedule may have to re-drive.
const ACTIVE: &str = "1";

type Item = HashMap<String, AttributeValue>;

pub struct DynamoDbBuildStore {
    client: Built<Client>,
    table: String,
    /// How long a finished build is kept (its `expires_at`).
    retention: Duration,
}

impl DynamoDbBuildStore {
    pub fn new(client: impl Into<Built<Client>>, table: &str, retention: Duration) -> Self {
        Self { client: client.into(), table: table.to_owned(), retention }
    }

    /// Creates the table with its key and indexes (tests and the local stack; the template
    /// declares the same for AWS).
    pub async fn create_table(client: &Client, table: &str) -> Result<(), ServiceError> {
        let key = |name: &str, key_type: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(key_type).build();
        let attribute =
            |name: &str, kind: ScalarAttributeType| AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build();
        let index = |name: &str, partition: &str, sort: &str, projection: ProjectionType| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(partition, KeyType::Hash).map_err(fail)?)
                .key_schema(key(sort, KeyType::Range).map_err(fail)?)
                .projection(Projection::builder().projection_type(projection).build())
                .build()
                .map_err(fail)
        };
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("source_id", KeyType::Hash).map_err(fail)?)
            .attribute_definitions(attribute("source_id", ScalarAttributeType::S).map_err(fail)?)
            .attribute_definitions(attribute("app_key", ScalarAttributeType::S).map_err(fail)?)
            .attribute_definitions(attribute("app_number", ScalarAttributeType::S).map_err(fail)?)
            .attribute_definitions(attribute("created_at", ScalarAttributeType::N).map_err(fail)?)
            .attribute_definitions(attribute("active", ScalarAttributeType::S).map_err(fail)?)
            .attribute_definitions(attribute("polled_at", ScalarAttributeType::N).map_err(fail)?)
            .global_secondary_indexes(index(BY_APP_INDEX, "app_key", "created_at", ProjectionType::All)?)
            .global_secondary_indexes(index(BY_NUMBER_INDEX, "app_number", "created_at", ProjectionType::All)?)
            .global_secondary_indexes(index(BY_ACTIVITY_INDEX, "active", "polled_at", ProjectionType::KeysOnly)?)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn query_index(
        &self,
        index: &str,
        attribute: &str,
        value: String,
        newest_first: bool,
        limit: Option<i32>,
    ) -> Result<Vec<BuildRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start_key: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", attribute)
                .expression_attribute_values(":v", AttributeValue::S(value.clone()))
                .scan_index_forward(!newest_first)
                .set_limit(limit)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| fail(DisplayErrorContext(e)))?;
            for item in page.items() {
                records.push(from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if limit.is_none_or(|l| records.len() < l as usize) => start_key = Some(key.clone()),
                _ => return Ok(records),
            }
        }
    }
}

fn fail(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::new("dynamodb", error)
}

#[async_trait]
impl BuildStore for DynamoDbBuildStore {
    async fn insert(&self, record: &BuildRecord) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record, record.version, self.retention)))
            .condition_expression("attribute_not_exists(source_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(fail(DisplayErrorContext(e)).into()),
        }
    }

    async fn get(&self, source_id: Uuid) -> Result<Option<BuildRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("source_id", AttributeValue::S(source_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        output.item().map(from_item).transpose()
    }

    async fn find_by_number(&self, app_key: &str, number: u64) -> Result<Option<BuildRecord>, StoreError> {
        let found = self.query_index(BY_NUMBER_INDEX, "app_number", app_number(app_key, number), true, Some(1)).await?;
        Ok(found.into_iter().next())
    }

    async fn list_by_app(&self, app_key: &str) -> Result<Vec<BuildRecord>, StoreError> {
        self.query_index(BY_APP_INDEX, "app_key", app_key.to_owned(), false, None).await
    }

    async fn update(&self, record: &BuildRecord) -> Result<BuildRecord, StoreError> {
        let next_version = record.version + 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record, next_version, self.retention)))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", AttributeValue::N(record.version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(BuildRecord { version: next_version, ..record.clone() }),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Err(StoreError::Conflict),
            Err(e) => Err(fail(DisplayErrorContext(e)).into()),
        }
    }

    async fn stale_builds(&self, polled_before_ms: u64, limit: usize) -> Result<Vec<BuildRecord>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_ACTIVITY_INDEX)
            .key_condition_expression("active = :active AND polled_at < :before")
            .expression_attribute_values(":active", AttributeValue::S(ACTIVE.to_owned()))
            .expression_attribute_values(":before", AttributeValue::N(polled_before_ms.to_string()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        // The index holds keys only and is eventually consistent: each build is read again.
        let mut stale = Vec::with_capacity(page.items().len());
        for item in page.items() {
            let source_id = item.get("source_id").and_then(|v| v.as_s().ok()).and_then(|id| id.parse().ok());
            let source_id = source_id.ok_or_else(|| fail("an index item without a source_id"))?;
            if let Some(record) = self.get(source_id).await? {
                if record.needs_polling() {
                    stale.push(record);
                }
            }
        }
        Ok(stale)
    }
}

fn app_number(app_key: &str, number: u64) -> String {
    format!("{app_key}#{number}")
}

fn to_item(record: &BuildRecord, version: u64, retention: Duration) -> Item {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: u64| AttributeValue::N(v.to_string());
    let mut item = Item::from([
        ("source_id".to_owned(), s(&record.source_id.to_string())),
        ("kind".to_owned(), s(&record.kind.to_string())),
        ("build_key".to_owned(), s(&record.build_key)),
        ("app_key".to_owned(), s(&record.app_key)),
        ("metadata".to_owned(), s(&record.metadata)),
        ("info".to_owned(), s(&record.human_readable_info)),
        ("state".to_owned(), s(&record.state.to_string())),
        ("created_at".to_owned(), n(record.created_at_ms)),
        ("updated_at".to_owned(), n(record.updated_at_ms)),
        ("version".to_owned(), n(version)),
        ("spec".to_owned(), AttributeValue::B(Blob::new(record.sealed_spec.to_vec()))),
    ]);
    if let Some(number) = record.number {
        item.insert("number".to_owned(), n(number));
    }
    // A legacy build Jenkins has not numbered yet is build 0 to the controller (SPEC §3).
    if record.kind == ApiKind::Legacy {
        item.insert("app_number".to_owned(), s(&app_number(&record.app_key, record.number.unwrap_or(0))));
    }
    if let Some(stop) = record.stop {
        item.insert("stop".to_owned(), s(&stop.to_string()));
    }
    if let Some(failure) = &record.failure {
        item.insert("failure".to_owned(), s(failure));
    }
    let progress = &record.progress;
    item.insert("round".to_owned(), n(progress.round));
    item.insert("polled_at".to_owned(), n(progress.polled_at_ms));
    item.insert("log_cursor".to_owned(), n(progress.log_cursor));
    item.insert("archive_len".to_owned(), n(progress.archive_len));
    if record.needs_polling() {
        item.insert("active".to_owned(), s(ACTIVE));
    }
    // The table's TTL attribute (template.yaml): DynamoDB deletes the item some time after it.
    if let Some(expires_at) = record.expires_at_s(retention) {
        item.insert(TTL_ATTRIBUTE.to_owned(), n(expires_at));
    }
    if progress.deliveries != Deliveries::default() {
        let deliveries = serde_json::to_string(&progress.deliveries).expect("delivery positions serialise");
        item.insert("deliveries".to_owned(), s(&deliveries));
    }
    if let Some(lease) = &progress.lease {
        item.insert("lease_owner".to_owned(), s(&lease.owner));
        item.insert("lease_until".to_owned(), n(lease.until_ms));
    }
    for (name, value) in [
        ("triggered_at", progress.triggered_at_ms),
        ("queue_item", progress.queue_item),
        ("jenkins_number", progress.jenkins_number),
        ("started_at", progress.started_at_ms),
    ] {
        if let Some(value) = value {
            item.insert(name.to_owned(), n(value));
        }
    }
    item
}

fn from_item(item: &Item) -> Result<BuildRecord, StoreError> {
    let bad = |field: &str| StoreError::from(fail(format!("stored build has a missing or malformed '{field}'")));
    let text = |field: &str| item.get(field).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| bad(field));
    let number = |field: &str| item.get(field).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok());
    let required_number = |field: &str| number(field).ok_or_else(|| bad(field));
    let stop = match item.get("stop").and_then(|v| v.as_s().ok()) {
        None => None,
        Some(raw) => Some(raw.parse::<StopIntent>().map_err(|_| bad("stop"))?),
    };
    Ok(BuildRecord {
        source_id: text("source_id")?.parse().map_err(|_| bad("source_id"))?,
        kind: text("kind")?.parse::<ApiKind>().map_err(|_| bad("kind"))?,
        build_key: text("build_key")?,
        app_key: text("app_key")?,
        number: number("number"),
        metadata: text("metadata")?,
        human_readable_info: text("info")?,
        state: text("state")?.parse::<BuildState>().map_err(|_| bad("state"))?,
        stop,
        failure: item.get("failure").and_then(|v| v.as_s().ok()).cloned(),
        created_at_ms: required_number("created_at")?,
        updated_at_ms: required_number("updated_at")?,
        version: required_number("version")?,
        sealed_spec: item.get("spec").and_then(|v| v.as_b().ok()).map(|b| Bytes::copy_from_slice(b.as_ref())).ok_or_else(|| bad("spec"))?,
        progress: Progress {
            round: number("round").unwrap_or(0),
            lease: match (item.get("lease_owner").and_then(|v| v.as_s().ok()), number("lease_until")) {
                (Some(owner), Some(until_ms)) => Some(Lease { owner: owner.clone(), until_ms }),
                _ => None,
            },
            polled_at_ms: number("polled_at").unwrap_or(0),
            triggered_at_ms: number("triggered_at"),
            queue_item: number("queue_item"),
            jenkins_number: number("jenkins_number"),
            started_at_ms: number("started_at"),
            log_cursor: number("log_cursor").unwrap_or(0),
            archive_len: number("archive_len").unwrap_or(0),
            deliveries: match item.get("deliveries").and_then(|v| v.as_s().ok()) {
                None => Deliveries::default(),
                Some(raw) => serde_json::from_str(raw).map_err(|_| bad("deliveries"))?,
            },
        },
    })
}
