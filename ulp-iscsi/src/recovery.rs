//! Session reinstatement's decisions, sans-IO (RFC 7143 §6.3.5, as open-iscsi does it): which
//! commands go out again, when the next attempt is due (the target's Time2Wait, then one
//! every `reconnect_delay`), which login failures end it at once, when to give up
//! (`replacement_timeout`), and the [`SessionEvent`]s that say so in words.
//!
//! Both drivers ([`crate::blocking::Session`], and `ulp_iscsi::tokio::Session` with the
//! `tokio` feature) run a [`Reinstatement`] with their own I/O: on an unasked end of the
//! connection they call [`on_lost`](Reinstatement::on_lost), then
//! [`poll`](Reinstatement::poll) at the time it asks for; an attempt (TCP connection, then the
//! shared [`Bringup`]) ends in
//! [`reinstated`](Reinstatement::reinstated) or [`attempt_failed`](Reinstatement::attempt_failed).
//! No clock inside: time is an input.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use crate::blocking::SessionEvent;
use crate::blocking::{Error, Options, secs};
use crate::bringup::{Bringup, BringupError};
use crate::connection::{CommandError, ConnectionError};
use crate::scsi::{self, Capacity};
use crate::wire::Lun;

/// Whether a command that completed with `error`, tried `tries` times again so far, goes out
/// again on the new connection: the connection ended (or its task management aborted it)
/// before its status, it is retry-safe ([`scsi::is_retry_safe`]) and it has retries left
/// (`max_retries`, the SCSI midlayer's count).
pub fn should_reissue(cdb: &scsi::Cdb, tries: u32, error: &CommandError, max_retries: u32) -> bool {
    matches!(
        error,
        CommandError::ConnectionLost(_) | CommandError::Aborted { .. }
    ) && scsi::is_retry_safe(cdb)
        && tries < max_retries
}

/// The bring-up of a reinstatement attempt started at `now` within `limit`: for each LUN the
/// session used (those with a known capacity, and `waiting`, the LUNs of the commands that go
/// out again), its unit attention (the new I_T nexus) is taken here, not by a re-issued
/// command, and a known capacity must not have changed.
pub fn bringup(
    now: Instant,
    limit: Duration,
    capacities: &HashMap<Lun, Capacity>,
    waiting: impl Iterator<Item = Lun>,
) -> Bringup {
    let luns: BTreeSet<[u8; 8]> = capacities
        .keys()
        .copied()
        .chain(waiting)
        .map(|l| l.0)
        .collect();
    let mut b = Bringup::new(now, limit);
    for raw in luns {
        let lun = Lun(raw);
        b = match capacities.get(&lun) {
            Some(&was) => b.capacity(lun, Some(was)),
            None => b.settle(lun),
        };
    }
    b
}

/// Why one reinstatement attempt did not give a usable session, in words.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Failure {
    /// Try again after the reconnect delay.
    Retry(String),
    /// Give up now: it cannot get better.
    Fatal(String),
}

impl Failure {
    /// The TCP connection to `addr` did not open (`why`): retried.
    pub fn tcp(addr: impl core::fmt::Display, why: impl core::fmt::Display) -> Self {
        Self::Retry(format!("TCP connection to {addr}: {why}"))
    }

    /// The bring-up (login, then the post-login checks) failed with `e`; `logged_in` says
    /// whether the login had succeeded. A LUN that changed is fatal, so is a login that cannot
    /// succeed by trying again: an authentication or authorization failure, a target that
    /// does not exist or was removed, an unsupported version, a negotiation or CHAP failure
    /// (the same offer fails the same way). Everything else is retried.
    pub fn of_bringup(e: &Error, logged_in: bool) -> Self {
        if matches!(e, Error::Bringup(BringupError::Changed { .. })) {
            return Self::Fatal(e.to_string());
        }
        // A check after the login names its command.
        if logged_in {
            return Self::Retry(e.to_string());
        }
        let words = format!("login: {e}");
        let fatal = match e {
            Error::Connection(ConnectionError::LoginFailed { class: 2, detail }) => {
                // 0x06 too many connections, 0x0A session does not exist: may clear up.
                !matches!(detail, 0x06 | 0x0A)
            }
            Error::Connection(ConnectionError::Negotiation(_) | ConnectionError::Chap(_)) => true,
            _ => false,
        };
        if fatal {
            Self::Fatal(words)
        } else {
            Self::Retry(words)
        }
    }
}

/// What the driver does next ([`Reinstatement::poll`]).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Next {
    /// Nothing until this instant (the target's Time2Wait, the reconnect delay).
    Wait(Instant),
    /// Start an attempt now: a new TCP connection and the bring-up (same ISID, TSIH 0), the
    /// whole attempt within `limit`.
    Attempt {
        /// Which attempt (1 for the first).
        attempt: u32,
        /// The most the attempt may take: `login_timeout`, and no later than the replacement
        /// timeout.
        limit: Duration,
    },
    /// The session is lost: every waiting command fails with this reason
    /// ([`CommandError::SessionLost`]), its buffer back; report it with
    /// [`Reinstatement::lost`].
    GiveUp(String),
}

/// The reinstatement policy of one session (see the [module documentation](self)).
#[derive(Debug)]
pub struct Reinstatement {
    replacement_timeout: Duration,
    reconnect_delay: Duration,
    login_timeout: Duration,
    /// When the connection was lost, while recovering.
    lost_at: Option<Instant>,
    /// When the next attempt is due.
    next_at: Instant,
    /// When the current attempt started, while one runs.
    started: Option<Instant>,
    attempts: u32,
    /// The last failure, in words.
    last: String,
    /// A fatal failure: the reason to give up with.
    fatal: Option<String>,
    events: VecDeque<SessionEvent>,
}

impl Reinstatement {
    /// The policy with `options`' `replacement_timeout`, `reconnect_delay` and
    /// `login_timeout`.
    pub fn new(options: &Options) -> Self {
        Self {
            replacement_timeout: options.replacement_timeout,
            reconnect_delay: options.reconnect_delay,
            login_timeout: options.login_timeout,
            lost_at: None,
            next_at: Instant::now(),
            started: None,
            attempts: 0,
            last: String::new(),
            fatal: None,
            events: VecDeque::new(),
        }
    }

    /// Whether a reinstatement is under way (lost and not yet reinstated or given up).
    pub fn is_recovering(&self) -> bool {
        self.lost_at.is_some()
    }

    /// The connection ended at `now` without the caller asking (`end`); `to_reissue`
    /// commands wait for the new connection, `failed` completed with the cause. A target that
    /// announced the drop (Asynchronous Message event 2 or 3) said how long to wait before
    /// logging in again (DefaultTime2Wait, RFC 7143 §11.9.1): the first attempt waits that
    /// long.
    pub fn on_lost(
        &mut self,
        now: Instant,
        end: &ConnectionError,
        to_reissue: usize,
        failed: usize,
    ) {
        let time2wait = match end {
            ConnectionError::TargetDroppedConnection { time2wait, .. }
            | ConnectionError::TargetDroppedSession { time2wait, .. } => *time2wait,
            _ => Duration::ZERO,
        };
        let cause = end.to_string();
        self.lost_at = Some(now);
        // A Time2Wait past the replacement timeout ends the recovery without an attempt.
        self.next_at = now + time2wait.min(self.replacement_timeout);
        self.started = None;
        self.attempts = 0;
        self.fatal = None;
        self.last.clone_from(&cause);
        self.events.push_back(SessionEvent::ConnectionLost {
            cause,
            to_reissue,
            failed,
        });
    }

    /// What to do at `now` while recovering ([`Next::Wait`] when not recovering): wait, start
    /// an attempt (reported as [`SessionEvent::Reinstating`]), or give up.
    pub fn poll(&mut self, now: Instant) -> Next {
        let Some(lost_at) = self.lost_at else {
            return Next::Wait(now + self.replacement_timeout);
        };
        if let Some(why) = self.fatal.take() {
            self.lost_at = None;
            return Next::GiveUp(format!("session not reinstated: {why}"));
        }
        let elapsed = now.saturating_duration_since(lost_at);
        if elapsed >= self.replacement_timeout {
            self.lost_at = None;
            let n = self.attempts;
            return Next::GiveUp(format!(
                "session not reinstated within replacement_timeout {} ({n} attempt{}); last: {}",
                secs(self.replacement_timeout),
                if n == 1 { "" } else { "s" },
                self.last
            ));
        }
        if now < self.next_at {
            // The last attempt no later than the replacement timeout.
            return Next::Wait(self.next_at.min(lost_at + self.replacement_timeout));
        }
        self.attempts += 1;
        self.started = Some(now);
        self.events.push_back(SessionEvent::Reinstating {
            attempt: self.attempts,
            after: elapsed,
        });
        Next::Attempt {
            attempt: self.attempts,
            limit: (self.replacement_timeout - elapsed).min(self.login_timeout),
        }
    }

    /// When [`poll`](Self::poll) has something new to say while recovering: the next attempt
    /// or the replacement timeout, whichever comes first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lost_at = self.lost_at?;
        Some(self.next_at.min(lost_at + self.replacement_timeout))
    }

    /// The attempt failed at `now`: a retryable failure is reported
    /// ([`SessionEvent::AttemptFailed`]) and the next attempt starts `reconnect_delay` after
    /// this one started; a fatal one gives up at the next [`poll`](Self::poll).
    pub fn attempt_failed(&mut self, now: Instant, failure: Failure) {
        let started = self.started.take().unwrap_or(now);
        match failure {
            Failure::Fatal(why) => self.fatal = Some(why),
            Failure::Retry(why) => {
                self.events.push_back(SessionEvent::AttemptFailed {
                    attempt: self.attempts,
                    error: why.clone(),
                });
                self.last = why;
                // One attempt starts every reconnect_delay at most.
                self.next_at = started + self.reconnect_delay;
            }
        }
    }

    /// The attempt succeeded at `now` (new TSIH `tsih`); `reissued` commands go out again.
    /// Reported as [`SessionEvent::Reinstated`]; recovery is over.
    pub fn reinstated(&mut self, now: Instant, reissued: usize, tsih: u16) {
        let lost_at = self.lost_at.take().unwrap_or(now);
        self.started = None;
        self.events.push_back(SessionEvent::Reinstated {
            after: now.saturating_duration_since(lost_at),
            attempts: self.attempts,
            reissued,
            tsih,
        });
    }

    /// The driver gave up ([`Next::GiveUp`] with `reason`) and failed `failed` commands, every
    /// buffer back: reported as [`SessionEvent::Lost`].
    pub fn lost(&mut self, reason: String, failed: usize) {
        self.lost_at = None;
        self.events.push_back(SessionEvent::Lost { reason, failed });
    }

    /// The next event to report, in order.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            replacement_timeout: Duration::from_secs(10),
            reconnect_delay: Duration::from_secs(3),
            login_timeout: Duration::from_secs(15),
            ..Options::default()
        }
    }

    #[test]
    fn attempts_every_reconnect_delay_until_the_replacement_timeout() {
        let t0 = Instant::now();
        let mut r = Reinstatement::new(&options());
        r.on_lost(t0, &ConnectionError::PeerClosed, 2, 1);
        assert_eq!(
            r.poll_event().map(|e| e.to_string()).as_deref(),
            Some(
                "connection lost: the target closed the connection; reinstating the session \
                 (2 commands to issue again, 1 command failed: not retry-safe or out of retries)"
            )
        );
        let mut at = t0;
        for n in 1..=3u32 {
            let Next::Attempt { attempt, limit } = r.poll(at) else {
                panic!("attempt {n} due at {:?}", at - t0);
            };
            assert_eq!(attempt, n);
            assert_eq!(limit, Duration::from_secs(10) - (at - t0));
            r.attempt_failed(
                at + Duration::from_secs(1),
                Failure::Retry("refused".into()),
            );
            assert_eq!(
                r.poll(at + Duration::from_secs(1)),
                Next::Wait(at + Duration::from_secs(3))
            );
            at += Duration::from_secs(3);
        }
        // The fourth at 9 s may take the 1 s left; the next would be past the timeout.
        assert_eq!(
            r.poll(at),
            Next::Attempt {
                attempt: 4,
                limit: Duration::from_secs(1)
            }
        );
        r.attempt_failed(at, Failure::Retry("refused".into()));
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(r.poll(at), Next::Wait(t0 + Duration::from_secs(10)));
        assert_eq!(
            r.poll(t0 + Duration::from_secs(10)),
            Next::GiveUp(
                "session not reinstated within replacement_timeout 10.0 s (4 attempts); last: \
                 refused"
                    .into()
            )
        );
        assert!(!r.is_recovering());
    }

    #[test]
    fn time2wait_delays_the_first_attempt_and_a_fatal_failure_gives_up_at_once() {
        let t0 = Instant::now();
        let mut r = Reinstatement::new(&options());
        let end = ConnectionError::TargetDroppedSession {
            time2wait: Duration::from_secs(2),
            time2retain: Duration::ZERO,
        };
        r.on_lost(t0, &end, 0, 0);
        assert_eq!(r.poll(t0), Next::Wait(t0 + Duration::from_secs(2)));
        assert!(matches!(
            r.poll(t0 + Duration::from_secs(2)),
            Next::Attempt { attempt: 1, .. }
        ));
        r.attempt_failed(
            t0 + Duration::from_secs(2),
            Failure::Fatal("login: authentication failure".into()),
        );
        assert_eq!(
            r.poll(t0 + Duration::from_secs(2)),
            Next::GiveUp("session not reinstated: login: authentication failure".into())
        );
    }

    #[test]
    fn only_retry_safe_commands_with_retries_left_go_out_again() {
        let lost = CommandError::ConnectionLost(Box::new(ConnectionError::PeerClosed));
        assert!(should_reissue(&scsi::read_10(0, 8), 0, &lost, 5));
        assert!(!should_reissue(&scsi::read_10(0, 8), 5, &lost, 5));
        let compare_and_write = scsi::Cdb {
            bytes: [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
            len: 16,
        };
        assert!(!should_reissue(&compare_and_write, 0, &lost, 5));
        assert!(!should_reissue(
            &scsi::read_10(0, 8),
            0,
            &CommandError::SessionLost("x".into()),
            5
        ));
    }
}
