//! The scheduled run: stale builds polled again, stuck ones given up.

use std::time::Duration;

use super::{as_ms, PollError, Poller, Redriven};
use crate::delivery::RetryPolicy;
use crate::error::StoreError;
use crate::ports::PollMessage;
use crate::record::{now_ms, BuildRecord};
use crate::state::BuildState;

/// A build not finished this long after its timeouts is failed by the schedule.
pub const STUCK_MARGIN: Duration = Duration::from_secs(15 * 60);

/// A finished build whose deliveries no poll has moved for this long (no save at all) is given
/// up: longer than any delivery is retried (a legacy callback's 2 hours), plus the margin.
pub const UNDELIVERABLE_AFTER: Duration = Duration::from_secs(RetryPolicy::LEGACY.give_up_after.as_secs() + STUCK_MARGIN.as_secs());

/// How many stale builds one scheduled run re-drives.
const REDRIVE_BATCH: usize = 100;

impl Poller {
    /// The scheduled run: builds whose last poll is older than `stale_after` are polled again
    /// (their message was lost or dead-lettered, or their enqueue failed at create), and those
    /// still unfinished long past their timeouts are failed.
    #[tracing::instrument(name = "redrive", skip_all)]
    pub async fn redrive(&self, stale_after: Duration) -> Result<Redriven, PollError> {
        let policy = &self.policy;
        let now = now_ms();
        let stuck_after = policy.queue_timeout + policy.build_timeout + STUCK_MARGIN;
        let mut done = Redriven::default();
        for record in self.store.stale_builds(now.saturating_sub(as_ms(stale_after)), now, REDRIVE_BATCH).await? {
            let id = record.source_id;
            let finished = record.state.is_terminal();
            if !finished && now.saturating_sub(record.created_at_ms) > as_ms(stuck_after) {
                let reason = format!("the build did not finish within {} s; the shuttle gave up on it", stuck_after.as_secs());
                if self.give_up(record, reason).await? {
                    done.failed.push(id);
                }
            } else if finished && now.saturating_sub(record.updated_at_ms) > as_ms(UNDELIVERABLE_AFTER) {
                // A finished build waits here only for its deliveries, bounded by themselves as
                // long as its polls run; one whose every poll fails (before it saves) is not.
                if self.abandon_deliveries(record).await? {
                    done.abandoned.push(id);
                }
            } else {
                self.queue.enqueue(&PollMessage { source_id: id, round: record.progress.round }, Duration::ZERO).await?;
                done.requeued.push(id);
            }
        }
        Ok(done)
    }

    /// Gives up every delivery of a finished build that no poll has saved for
    /// [`UNDELIVERABLE_AFTER`] (unless someone moved it meanwhile).
    async fn abandon_deliveries(&self, mut record: BuildRecord) -> Result<bool, PollError> {
        tracing::error!(
            build = %record.source_id,
            idle_s = now_ms().saturating_sub(record.updated_at_ms) / 1000,
            "no poll of this finished build succeeded for longer than deliveries are retried: its deliveries are given up"
        );
        record.progress.deliveries.give_up_all();
        record.progress.lease = None;
        record.progress.round += 1;
        record.updated_at_ms = now_ms();
        match self.store.update(&record).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Fails a stuck build (unless someone moved it meanwhile) and stops what Jenkins may still run.
    async fn give_up(&self, record: BuildRecord, reason: String) -> Result<bool, PollError> {
        let mut failed = record.clone();
        failed.move_to(BuildState::Failed);
        failed.failure = Some(reason);
        failed.progress.lease = None;
        failed.progress.round += 1;
        failed.updated_at_ms = now_ms();
        let failed = match self.store.update(&failed).await {
            Ok(failed) => failed,
            Err(StoreError::Conflict) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        crate::api::halt_in_jenkins(self.jenkins.as_ref(), &record).await;
        if failed.needs_polling() {
            // The targets are told by a poll; should this enqueue fail, the schedule comes back.
            let message = PollMessage { source_id: failed.source_id, round: failed.progress.round };
            if let Err(error) = self.queue.enqueue(&message, Duration::ZERO).await {
                tracing::warn!(build = %failed.source_id, %error, "could not enqueue the poll that tells the targets");
            }
        }
        Ok(true)
    }
}
