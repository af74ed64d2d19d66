//! Judging one delivery attempt: delivered, to be retried (when), or given up.

use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::delivery::{verdict, RetryPolicy, Verdict};
use crate::ports::{Answer, SendError};
use crate::record::{now_ms, Delivery};

/// Why a log delivery did not go through: the receiver's answer (not a 2xx), or no answer.
/// ("Refused" is kept for one thing only: the SSRF guard refusing an address.)
pub(super) enum Undelivered {
    Answer(Answer),
    NoAnswer(SendError),
}

impl From<SendError> for Undelivered {
    fn from(problem: SendError) -> Self {
        Self::NoAnswer(problem)
    }
}

impl Undelivered {
    pub(super) fn from_attempt(attempt: Result<Answer, SendError>) -> Self {
        attempt.map_or_else(Self::NoAnswer, Self::Answer)
    }

    /// The attempt, to be judged as a status delivery's is.
    pub(super) fn attempt(self) -> Result<Answer, SendError> {
        match self {
            Self::Answer(answer) => Ok(answer),
            Self::NoAnswer(problem) => Err(problem),
        }
    }
}

pub(super) enum Outcome {
    Delivered,
    /// Try again after the delay.
    Retry(String, Duration),
    GiveUp(String),
    /// The SSRF guard refused the target's address (SPEC §7): nothing more goes to it.
    Refused(String),
}

/// The outcome of an attempt for a target at `position`, under `policy`, failing since `since`.
pub(super) fn judge(sent: Result<Answer, SendError>, position: Delivery, policy: RetryPolicy, since: u64) -> Outcome {
    let answer = match sent {
        Ok(answer) => answer,
        Err(problem) if problem.refused => return Outcome::Refused(problem.message),
        Err(problem) => return retry_or_give_up(problem.message, position, policy, since, None),
    };
    match verdict(answer.status, answer.retry_after.as_deref(), SystemTime::now()) {
        Verdict::Delivered => Outcome::Delivered,
        Verdict::Final { status } => Outcome::GiveUp(format!("answered {status}, which is final")),
        Verdict::Retry { after } => retry_or_give_up(format!("answered {}", answer.status), position, policy, since, after),
    }
}

fn retry_or_give_up(problem: String, position: Delivery, policy: RetryPolicy, since: u64, after: Option<Duration>) -> Outcome {
    let now = now_ms();
    let since = if since == 0 { now } else { since };
    match policy.next_delay(position.attempts + 1, Duration::from_millis(now.saturating_sub(since)), after, jitter()) {
        Some(delay) => Outcome::Retry(problem, delay),
        None => Outcome::GiveUp(format!("{problem}; {} attempts", position.attempts + 1)),
    }
}

/// The position after one more failed attempt, to be tried again after `delay`.
pub(super) fn retried(position: Delivery, delay: Duration) -> Delivery {
    let now = now_ms();
    Delivery {
        attempts: position.attempts + 1,
        failing_since_ms: if position.failing_since_ms == 0 { now } else { position.failing_since_ms },
        retry_at_ms: now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        ..position
    }
}

/// A number in `[0, 1)` that differs between pollers and attempts.
fn jitter() -> f64 {
    (Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}
