//! The lease on a build: one poll at a time moves it.

use std::time::Duration;

use super::{as_ms, PollError, Poller, MAX_WRITE_ATTEMPTS, POLLER_TIMEOUT};
use crate::error::StoreError;
use crate::ports::PollMessage;
use crate::record::{now_ms, BuildRecord, Lease};

impl Poller {
    /// The lease on the build `message` names, or `None` when the message is not to be handled.
    pub(super) async fn take_lease(&self, message: &PollMessage, owner: &str) -> Result<Option<BuildRecord>, PollError> {
        let store = &self.store;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let Some(record) = store.get(message.source_id).await? else { return Ok(None) };
            let now = now_ms();
            if !record.needs_polling() || record.progress.round != message.round || record.progress.leased_by_other(owner, now) {
                return Ok(None);
            }
            let mut leased = record.clone();
            leased.progress.lease = Some(Lease { owner: owner.to_owned(), until_ms: now + as_ms(self.lease_time()) });
            match store.update(&leased).await {
                Ok(stored) => return Ok(Some(stored)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PollError::Contended)
    }

    /// Longer than any poll can last: the poller's 90 s timeout ends it first.
    fn lease_time(&self) -> Duration {
        (self.policy.pacing.window + Duration::from_secs(60)).max(POLLER_TIMEOUT + Duration::from_secs(30))
    }
}
