//! The recovery policy both drivers follow, sans-IO (time is an input): what becomes of a
//! command when its queue is lost or it fails with a status, when the next reconnect attempt
//! is due, when to give up, and the [`ControllerEvent`]s that say so. The blocking
//! [`Controller`](crate::blocking::Controller) and the tokio
//! `tokio::Controller` (feature `tokio`) do the I/O (sleeping, the
//! bring-up on new sockets) and ask this module what to do, so they decide alike.
//!
//! It follows Linux's NVMe/TCP host: a lost association is torn down, a reconnect attempted
//! every `reconnect_delay` (the first one `reconnect_delay` after the loss), at most
//! `ctrl_loss_tmo / reconnect_delay` attempts (rounded up); a command is issued again after a
//! loss or a status without DNR until it was tried `max_retries` times more.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ulp_nvme_tcp::recovery::{Next, Reconnect};
//! use ulp_nvme_tcp::Options;
//!
//! let mut o = Options::new("nqn.2024-01.io.example:disk");
//! o.reconnect_delay = Duration::from_millis(100);
//! o.ctrl_loss_tmo = Duration::from_millis(200);
//! let t0 = Instant::now();
//! let (mut r, reset) = Reconnect::new(&o, t0, "the controller closed the connection".into());
//! assert_eq!(reset.to_string(), "resetting the controller: the controller closed the connection");
//! assert_eq!(r.next(t0), Next::Wait(t0 + o.reconnect_delay));
//! let t1 = t0 + o.reconnect_delay;
//! assert_eq!(r.next(t1), Next::Attempt(1));
//! r.attempt_failed(t1, "connection refused".into());
//! let t2 = t1 + o.reconnect_delay;
//! assert_eq!(r.next(t2), Next::Attempt(2));
//! r.attempt_failed(t2, "connection refused".into());
//! let Next::GiveUp(lost) = r.next(t2) else { panic!("two attempts within 200 ms") };
//! assert!(lost.to_string().contains("not reachable again within ctrl_loss_tmo 0.2 s"));
//! ```

use std::time::{Duration, Instant};

use crate::blocking::ControllerEvent;
use crate::nvme::Status;
use crate::options::Options;

/// What a command that was issued on a queue that was lost becomes: issued again
/// (`Ok(tries + 1)`) or failed, in words (`Err`), as Linux decides after a reset.
///
/// # Errors
///
/// The reason, when the command was tried as often as it may be.
pub fn after_loss(tries: u8, options: &Options) -> Result<u8, String> {
    if tries < options.max_retries {
        Ok(tries + 1)
    } else {
        Err(format!(
            "failed {} times, each time the connection was lost",
            u32::from(tries) + 1
        ))
    }
}

/// Whether a command that completed with `status` after `tries` retries is issued again: every
/// failed status without DNR is, up to `max_retries` (Linux's `nvme_decide_disposition`).
pub fn retry_status(status: Status, tries: u8, options: &Options) -> bool {
    !status.is_success() && !status.dnr && tries < options.max_retries
}

/// Why a command that was still held by the DDP backend after a teardown fails (its buffer
/// cannot come back while the device may still write into it).
pub fn not_released(waited: Duration) -> String {
    format!(
        "the DDP backend did not release its buffer within {:.1} s of the reset",
        waited.as_secs_f64()
    )
}

/// What a driver does next while reconnecting ([`Reconnect::next`]).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Next {
    /// Nothing before this instant (sleep until then).
    Wait(Instant),
    /// Start attempt number `n` now: the full bring-up on new connections; then
    /// [`Reconnect::attempt_failed`] or [`Reconnect::reconnected`].
    Attempt(u32),
    /// Give up: fail every outstanding command with [`IoError::Lost`](crate::IoError::Lost)
    /// and the event's reason, refuse new ones. The event says why.
    GiveUp(ControllerEvent),
}

/// One reconnect, from the loss to the new association or to giving up.
#[derive(Clone, Debug)]
pub struct Reconnect {
    lost_at: Instant,
    due: Instant,
    attempts: u32,
    max_attempts: u32,
    delay: Duration,
    tmo: Duration,
    last: String,
}

impl Reconnect {
    /// The association was lost at `now` for `reason`: the first attempt is due
    /// `reconnect_delay` later. Returns the [`ControllerEvent::Reset`] to report.
    pub fn new(options: &Options, now: Instant, reason: String) -> (Self, ControllerEvent) {
        let (delay, tmo) = (options.reconnect_delay, options.ctrl_loss_tmo);
        // As Linux: ctrl_loss_tmo / reconnect_delay attempts (rounded up), one every
        // reconnect_delay.
        let max_attempts = if delay.is_zero() {
            u32::MAX
        } else {
            u32::try_from(tmo.as_nanos().div_ceil(delay.as_nanos()))
                .unwrap_or(u32::MAX)
                .max(1)
        };
        let event = ControllerEvent::Reset {
            reason: reason.clone(),
        };
        let r = Self {
            lost_at: now,
            due: now + delay,
            attempts: 0,
            max_attempts,
            delay,
            tmo,
            last: reason,
        };
        (r, event)
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Instant) -> Next {
        let out_of_time =
            self.delay.is_zero() && now.saturating_duration_since(self.lost_at) > self.tmo;
        if self.attempts >= self.max_attempts || out_of_time {
            return Next::GiveUp(ControllerEvent::Lost {
                reason: format!(
                    "not reachable again within ctrl_loss_tmo {:.1} s ({} attempts; last: {})",
                    self.tmo.as_secs_f64(),
                    self.attempts,
                    self.last
                ),
            });
        }
        if now < self.due {
            return Next::Wait(self.due);
        }
        self.attempts += 1;
        self.due = now + self.delay;
        Next::Attempt(self.attempts)
    }

    /// The attempt started last failed at `now` with `error` (in words): the next one is due
    /// `reconnect_delay` later.
    pub fn attempt_failed(&mut self, now: Instant, error: String) {
        self.last = error;
        self.due = now + self.delay;
    }

    /// The attempt started last failed in a way no further attempt mends (the namespace
    /// changed across the reconnect): the event to give up with.
    pub fn fatal(&self, reason: String) -> ControllerEvent {
        ControllerEvent::Lost { reason }
    }

    /// The attempt started last succeeded at `now`, and `reissued` commands go out again:
    /// the [`ControllerEvent::Reconnected`] to report.
    pub fn reconnected(&self, now: Instant, reissued: usize) -> ControllerEvent {
        ControllerEvent::Reconnected {
            attempts: self.attempts,
            after: now.saturating_duration_since(self.lost_at),
            reissued,
        }
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// The reason to give up with when the association comes back with a different namespace.
pub fn namespace_changed(
    nsid: u32,
    now: crate::nvme::NamespaceInfo,
    was: crate::nvme::NamespaceInfo,
) -> Option<String> {
    (now != was).then(|| {
        format!(
            "namespace {nsid} changed across the reconnect ({} x {} B, was {} x {} B)",
            now.nsze, now.block_size, was.nsze, was.block_size
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(delay_ms: u64, tmo_ms: u64) -> Options {
        let mut o = Options::new("nqn.test");
        o.reconnect_delay = Duration::from_millis(delay_ms);
        o.ctrl_loss_tmo = Duration::from_millis(tmo_ms);
        o
    }

    #[test]
    fn attempts_every_delay_then_gives_up_after_tmo_over_delay() {
        let o = options(100, 1000);
        let t0 = Instant::now();
        let (mut r, _) = Reconnect::new(&o, t0, "cut".into());
        let mut now = t0;
        let mut attempts = 0;
        loop {
            match r.next(now) {
                Next::Wait(t) => {
                    assert_eq!(t, now + o.reconnect_delay);
                    now = t;
                }
                Next::Attempt(n) => {
                    attempts += 1;
                    assert_eq!(n, attempts);
                    r.attempt_failed(now, format!("refused {n}"));
                }
                Next::GiveUp(e) => {
                    let text = e.to_string();
                    assert!(text.contains("(10 attempts; last: refused 10)"), "{text}");
                    break;
                }
            }
        }
        assert_eq!(attempts, 10);
        assert_eq!(now - t0, o.ctrl_loss_tmo);
    }

    #[test]
    fn zero_delay_gives_up_on_time() {
        let o = options(0, 50);
        let t0 = Instant::now();
        let (mut r, _) = Reconnect::new(&o, t0, "cut".into());
        assert_eq!(r.next(t0), Next::Attempt(1));
        r.attempt_failed(t0, "refused".into());
        assert!(matches!(
            r.next(t0 + Duration::from_millis(51)),
            Next::GiveUp(_)
        ));
    }

    #[test]
    fn commands_retried_up_to_max_retries() {
        let o = options(10, 100);
        assert_eq!(after_loss(0, &o), Ok(1));
        assert_eq!(
            after_loss(5, &o),
            Err("failed 6 times, each time the connection was lost".into())
        );
        assert!(!retry_status(Status::SUCCESS, 0, &o));
    }
}
