//! Session reinstatement (RFC 7143 §6.3.5): what [`Session`] does when its connection ends
//! without the caller asking.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ulp_ddp_core::{DdpBackend, SansIo};

use super::session::tcp_connect;
use super::{Error, Session, SessionEvent, secs};
use crate::bringup::{Bringup, BringupError};
use crate::connection::{CommandError, CommandId, Completion, ConnectionError};
use crate::wire::Lun;

/// Why an attempt did not give a usable session.
enum Attempt {
    /// Try again after the reconnect delay.
    Retry(String),
    /// Give up now: it cannot get better.
    Fatal(String),
}

/// Whether a login failure can get better by trying again: not for authentication or
/// authorization failures, a target that does not exist or was removed, an unsupported
/// version, or a negotiation or CHAP failure (the same offer fails the same way).
fn is_fatal(e: &Error) -> bool {
    match e {
        Error::Connection(ConnectionError::LoginFailed { class: 2, detail }) => {
            // 0x06 too many connections, 0x0A session does not exist: may clear up.
            !matches!(detail, 0x06 | 0x0A)
        }
        Error::Connection(ConnectionError::Negotiation(_) | ConnectionError::Chap(_)) => true,
        _ => false,
    }
}

impl<B: DdpBackend> Session<B> {
    /// The connection ended (`cause`): the commands it completed are sorted (retry-safe ones
    /// wait, others failed), then the session is reinstated every `reconnect_delay` until
    /// `replacement_timeout`; or, past it or on a login that cannot succeed, every waiting
    /// command fails and the session is lost.
    pub(super) fn reinstate(&mut self, end: &ConnectionError) {
        let lost_at = Instant::now();
        let cause = end.to_string();
        // A target that announced the drop (Asynchronous Message event 2 or 3) said how long
        // to wait before logging in again: DefaultTime2Wait, RFC 7143 §11.9.1.
        let time2wait = match end {
            ConnectionError::TargetDroppedConnection { time2wait, .. }
            | ConnectionError::TargetDroppedSession { time2wait, .. } => *time2wait,
            _ => Duration::ZERO,
        };
        // The target sees the old connection close before the new one logs in.
        let _ = self
            .driver
            .socket()
            .stream
            .shutdown(std::net::Shutdown::Both);
        self.dispatch();
        // Commands whose completion did not come (a backend still holding the buffer): the
        // device may still write into it, so it cannot come back.
        let stuck: Vec<_> = self.inflight.drain().map(|(_, t)| t).collect();
        for t in stuck {
            self.failed_by_end += 1;
            self.ready.push_back(Completion {
                id: CommandId(t.id),
                result: Err(CommandError::ConnectionLost(Box::new(
                    ConnectionError::Socket(
                        "the DDP backend did not release the command's buffer".into(),
                    ),
                ))),
                buffer: None,
            });
        }
        let failed = std::mem::take(&mut self.failed_by_end);
        self.report(SessionEvent::ConnectionLost {
            cause: cause.clone(),
            to_reissue: self.backlog.len(),
            failed,
        });
        let tmo = self.options.replacement_timeout;
        let mut last = cause;
        let mut attempts = 0u32;
        if !time2wait.is_zero() {
            // Before the first attempt, bounded by the replacement timeout; a Time2Wait that
            // reaches past it ends the recovery below without an attempt.
            std::thread::sleep(time2wait.min(tmo.saturating_sub(lost_at.elapsed())));
        }
        loop {
            let elapsed = lost_at.elapsed();
            if elapsed >= tmo {
                return self.give_up(format!(
                    "session not reinstated within replacement_timeout {} ({attempts} \
                     attempt{}); last: {last}",
                    secs(tmo),
                    if attempts == 1 { "" } else { "s" }
                ));
            }
            attempts += 1;
            let started = Instant::now();
            self.report(SessionEvent::Reinstating {
                attempt: attempts,
                after: elapsed,
            });
            let limit = tmo.saturating_sub(elapsed).min(self.options.login_timeout);
            match self.attempt(limit) {
                Ok(()) => {
                    self.reinstatements += 1;
                    let reissued = self.backlog.len();
                    self.report(SessionEvent::Reinstated {
                        after: lost_at.elapsed(),
                        attempts,
                        reissued,
                        tsih: self.conn.tsih(),
                    });
                    self.issue();
                    return;
                }
                Err(Attempt::Fatal(why)) => {
                    return self.give_up(format!("session not reinstated: {why}"));
                }
                Err(Attempt::Retry(why)) => {
                    self.report(SessionEvent::AttemptFailed {
                        attempt: attempts,
                        error: why.clone(),
                    });
                    last = why;
                }
            }
            // One attempt starts every reconnect_delay at most; the last one no later than
            // the replacement timeout.
            let left = tmo.saturating_sub(lost_at.elapsed());
            let pause = self
                .options
                .reconnect_delay
                .saturating_sub(started.elapsed())
                .min(left);
            std::thread::sleep(pause);
        }
    }

    /// One reinstatement attempt within `limit`: TCP connection, then the shared bring-up
    /// ([`Bringup`]): login (same ISID, TSIH 0), each LUN's unit attention taken and its
    /// known capacity checked.
    fn attempt(&mut self, limit: Duration) -> Result<(), Attempt> {
        let started = Instant::now();
        let stream = tcp_connect(self.addr, limit).map_err(|e| match e {
            Error::Io(e) => Attempt::Retry(format!("TCP connection to {}: {e}", self.addr)),
            other => Attempt::Retry(other.to_string()),
        })?;
        // The LUNs the session used: each one's unit attention (the new I_T nexus) is taken
        // here, not by a re-issued command, and a known capacity must not have changed.
        let luns: BTreeSet<[u8; 8]> = self
            .capacities
            .keys()
            .chain(self.backlog.iter().map(|(t, _)| &t.lun))
            .map(|l| l.0)
            .collect();
        let mut bringup = Bringup::new(started, limit);
        for raw in luns {
            let lun = Lun(raw);
            bringup = match self.capacities.get(&lun) {
                Some(&was) => bringup.capacity(lun, Some(was)),
                None => bringup.settle(lun),
            };
        }
        match self.relogin(stream, &mut bringup) {
            Ok(_) => Ok(()),
            Err(e @ Error::Bringup(BringupError::Changed { .. })) => {
                Err(Attempt::Fatal(e.to_string()))
            }
            // A check after the login names its command.
            Err(e) if bringup.logged_in() => Err(Attempt::Retry(e.to_string())),
            Err(e) => {
                let words = format!("login: {e}");
                Err(if is_fatal(&e) {
                    Attempt::Fatal(words)
                } else {
                    Attempt::Retry(words)
                })
            }
        }
    }

    /// The session is lost: every waiting command fails with `reason`, its buffer handed
    /// back; new commands are refused.
    pub(super) fn give_up(&mut self, reason: String) {
        let failed = self.fail_backlog(&CommandError::SessionLost(reason.clone()));
        self.report(SessionEvent::Lost {
            reason: reason.clone(),
            failed,
        });
        self.lost = Some(reason);
        if !self.conn.is_closed() {
            self.conn.close();
            self.dispatch();
        }
    }
}
