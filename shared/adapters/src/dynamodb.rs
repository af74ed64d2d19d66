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
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shuttle_core::error::{with_causes, ServiceError, StoreError};
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
            .set_item(Some(within_item_limit(to_item(record, record.version, self.retention))?))
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
        self.get_item(source_id).await?.as_ref().map(from_item).transpose()
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
            .set_item(Some(within_item_limit(to_item(record, next_version, self.retention))?))
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

    async fn stale_builds(&self, polled_before_ms: u64, now_ms: u64, limit: usize) -> Result<Vec<BuildRecord>, StoreError> {
        let mut stale = Vec::with_capacity(limit);
        let mut start_key: Option<Item> = None;
        for _ in 0..MAX_STALE_PAGES {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_ACTIVITY_INDEX)
                .key_condition_expression("active = :active AND polled_at < :before")
                .expression_attribute_values(":active", AttributeValue::S(ACTIVE.to_owned()))
                .expression_attribute_values(":before", AttributeValue::N(polled_before_ms.to_string()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| fail(DisplayErrorContext(e)))?;
            // The index holds keys only and is eventually consistent: each build is read again.
            for key in page.items() {
                let Ok(IndexKey { source_id }) = serde_dynamo::from_item(key.clone()) else {
                    tracing::error!("an index item without a source_id: skipped");
                    continue;
                };
                let Some(item) = self.get_item(source_id).await? else { continue };
                match from_item(&item) {
                    Ok(record) if record.needs_polling() && !record.progress.leased_by_other("", now_ms) => stale.push(record),
                    Ok(_) => {}
                    // One unreadable build must not keep the schedule from the others.
                    Err(error) => tracing::error!(build = %source_id, error = %with_causes(&error), "an unreadable build: skipped"),
                }
                if stale.len() == limit {
                    return Ok(stale);
                }
            }
            match page.last_evaluated_key() {
                Some(key) => start_key = Some(key.clone()),
                None => return Ok(stale),
            }
        }
        tracing::warn!(pages = MAX_STALE_PAGES, found = stale.len(), "stale builds: stopped after the most pages one scheduled run reads");
        Ok(stale)
    }
}

impl DynamoDbBuildStore {
    /// A build's item as stored, read consistently.
    async fn get_item(&self, source_id: Uuid) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("source_id", AttributeValue::S(source_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        Ok(output.item)
    }
}

/// The most index pages one call of `stale_builds` reads, looking past builds held by a poll:
/// a scheduled run stays short whatever the table holds.
const MAX_STALE_PAGES: usize = 20;

/// What the `by_activity` index holds of a build (it projects keys only).
#[derive(Deserialize)]
struct IndexKey {
    source_id: Uuid,
}

fn app_number(app_key: &str, number: u64) -> String {
    format!("{app_key}#{number}")
}

/// A build as its DynamoDB item: the table's attribute names and types, which items already
/// stored keep. serde_dynamo maps it to attributes (`String` → S, `u64` → N, `Bytes` → B; a
/// `None` is left out); what the indexes and the TTL read is derived here.
#[derive(Serialize, Deserialize)]
struct StoredBuild {
    source_id: Uuid,
    kind: ApiKind,
    build_key: String,
    app_key: String,
    metadata: String,
    info: String,
    state: BuildState,
    created_at: u64,
    updated_at: u64,
    version: u64,
    /// The sealed spec.
    spec: Bytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    number: Option<u64>,
    /// `by_number`'s key: `{app_key}#{n}` of a legacy build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop: Option<StopIntent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    #[serde(default)]
    round: u64,
    #[serde(default)]
    polled_at: u64,
    #[serde(default)]
    log_cursor: u64,
    #[serde(default)]
    archive_len: u64,
    /// `by_activity`'s key: [`ACTIVE`] while the poller has work for the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active: Option<String>,
    /// The table's TTL attribute ([`TTL_ATTRIBUTE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    /// The delivery positions, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deliveries: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_until: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    triggered_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue_item: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jenkins_number: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue_why: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_sha256: Option<String>,
}

/// DynamoDB's item limit, names and values together: "400 KB", read as 400,000 bytes, under
/// both readings of it (409,600 is what DynamoDB takes; the emulator stops at 405,000).
pub const MAX_ITEM_BYTES: usize = 400_000;

/// `item` when DynamoDB can take it; refused before the write otherwise, which DynamoDB would
/// refuse every time it is tried.
fn within_item_limit(item: Item) -> Result<Item, StoreError> {
    let size = item.iter().map(|(name, value)| name.len() + value_size(value)).sum();
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge { size, limit: MAX_ITEM_BYTES });
    }
    Ok(item)
}

/// A value's size as DynamoDB counts it ("DynamoDB item sizes and formats"): strings in UTF-8
/// bytes, binaries in raw bytes, a number 1 byte per two digits plus 1 (its digits as written,
/// signs and zeros too: never less than DynamoDB counts), 1 byte for a boolean or a null, a list
/// or a map 3 bytes plus 1 a member and its members (with a map's names).
fn value_size(value: &AttributeValue) -> usize {
    const CONTAINER: usize = 3;
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number.len().div_ceil(2) + 1,
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(members) => CONTAINER + members.iter().map(|m| 1 + value_size(m)).sum::<usize>(),
        AttributeValue::M(members) => CONTAINER + members.iter().map(|(name, m)| 1 + name.len() + value_size(m)).sum::<usize>(),
        _ => 1,
    }
}

fn to_item(record: &BuildRecord, version: u64, retention: Duration) -> Item {
    let progress = &record.progress;
    let stored = StoredBuild {
        source_id: record.source_id,
        kind: record.kind,
        build_key: record.build_key.clone(),
        app_key: record.app_key.clone(),
        metadata: record.metadata.clone(),
        info: record.human_readable_info.clone(),
        state: record.state,
        created_at: record.created_at_ms,
        updated_at: record.updated_at_ms,
        version,
        spec: record.sealed_spec.clone(),
        number: record.number,
        // A legacy build Jenkins has not numbered yet is build 0 to the controller (SPEC §3).
        app_number: (record.kind == ApiKind::Legacy).then(|| app_number(&record.app_key, record.number.unwrap_or(0))),
        stop: record.stop,
        failure: record.failure.clone(),
        round: progress.round,
        polled_at: progress.polled_at_ms,
        log_cursor: progress.log_cursor,
        archive_len: progress.archive_len,
        active: record.needs_polling().then(|| ACTIVE.to_owned()),
        // DynamoDB deletes the item some time after it.
        expires_at: record.expires_at_s(retention),
        deliveries: (progress.deliveries != Deliveries::default())
            .then(|| serde_json::to_string(&progress.deliveries).expect("delivery positions serialise")),
        lease_owner: progress.lease.as_ref().map(|lease| lease.owner.clone()),
        lease_until: progress.lease.as_ref().map(|lease| lease.until_ms),
        triggered_at: progress.triggered_at_ms,
        queue_item: progress.queue_item,
        jenkins_number: progress.jenkins_number,
        started_at: progress.started_at_ms,
        finished_at: progress.finished_at_ms,
        queue_why: progress.queue_why.clone(),
        log_sha256: progress.log_sha256.clone(),
    };
    serde_dynamo::to_item(stored).expect("a build maps to a DynamoDB item")
}

fn from_item(item: &Item) -> Result<BuildRecord, StoreError> {
    let stored: StoredBuild =
        serde_dynamo::from_item(item.clone()).map_err(|e| fail(format!("stored build is missing or has malformed fields: {e}")))?;
    let deliveries = match stored.deliveries {
        None => Deliveries::default(),
        Some(raw) => serde_json::from_str(&raw).map_err(|_| fail("stored build has malformed 'deliveries'"))?,
    };
    Ok(BuildRecord {
        source_id: stored.source_id,
        kind: stored.kind,
        build_key: stored.build_key,
        app_key: stored.app_key,
        number: stored.number,
        metadata: stored.metadata,
        human_readable_info: stored.info,
        state: stored.state,
        stop: stored.stop,
        failure: stored.failure,
        created_at_ms: stored.created_at,
        updated_at_ms: stored.updated_at,
        version: stored.version,
        sealed_spec: stored.spec,
        progress: Progress {
            round: stored.round,
            lease: match (stored.lease_owner, stored.lease_until) {
                (Some(owner), Some(until_ms)) => Some(Lease { owner, until_ms }),
                _ => None,
            },
            polled_at_ms: stored.polled_at,
            triggered_at_ms: stored.triggered_at,
            queue_item: stored.queue_item,
            jenkins_number: stored.jenkins_number,
            started_at_ms: stored.started_at,
            finished_at_ms: stored.finished_at,
            queue_why: stored.queue_why,
            log_sha256: stored.log_sha256,
            log_cursor: stored.log_cursor,
            archive_len: stored.archive_len,
            deliveries,
        },
    })
}
