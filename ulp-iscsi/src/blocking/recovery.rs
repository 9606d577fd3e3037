//! Session reinstatement (RFC 7143 §6.3.5): what [`Session`] does when its connection ends
//! without the caller asking.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ulp_ddp_core::{DdpBackend, SansIo, SgBuffer};

use super::session::tcp_connect;
use super::{Error, Session, SessionEvent, secs};
use crate::connection::{
    Command, CommandError, CommandId, Completion, ConnectionError, Data, Event,
};
use crate::scsi::{self, Capacity};
use crate::wire::Lun;

/// How often one LUN's unit attentions are taken after a login before giving up on it.
const UNIT_ATTENTIONS: u32 = 8;

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

    /// One reinstatement attempt within `limit`: TCP connection, login (same ISID, TSIH 0),
    /// each LUN's unit attention taken and its capacity checked.
    fn attempt(&mut self, limit: Duration) -> Result<(), Attempt> {
        let deadline = Instant::now() + limit;
        let stream = tcp_connect(self.addr, limit).map_err(|e| match e {
            Error::Io(e) => Attempt::Retry(format!("TCP connection to {}: {e}", self.addr)),
            other => Attempt::Retry(other.to_string()),
        })?;
        if let Err(e) = self.relogin(stream, deadline) {
            let words = format!("login: {e}");
            return Err(if is_fatal(&e) {
                Attempt::Fatal(words)
            } else {
                Attempt::Retry(words)
            });
        }
        // The LUNs the session used: each one's unit attention (the new I_T nexus) is taken
        // here, not by a re-issued command, and a known capacity must not have changed.
        let luns: BTreeSet<[u8; 8]> = self
            .capacities
            .keys()
            .chain(self.backlog.iter().map(|(t, _)| &t.lun))
            .map(|l| l.0)
            .collect();
        for raw in luns {
            let lun = Lun(raw);
            self.settle(lun, deadline).map_err(Attempt::Retry)?;
            let Some(&was) = self.capacities.get(&lun) else {
                continue;
            };
            let now = self.capacity_now(lun, deadline).map_err(Attempt::Retry)?;
            if now != was {
                return Err(Attempt::Fatal(format!(
                    "LUN {} changed across the reinstatement ({} blocks of {} bytes, was {} \
                     of {}); commands fail rather than reach the wrong blocks",
                    lun_number(lun),
                    now.blocks(),
                    now.block_len,
                    was.blocks(),
                    was.block_len
                )));
            }
        }
        Ok(())
    }

    /// TEST UNIT READY until it is answered without a unit attention.
    fn settle(&mut self, lun: Lun, deadline: Instant) -> Result<(), String> {
        for _ in 0..UNIT_ATTENTIONS {
            let c = self.raw(
                "TEST UNIT READY",
                lun,
                scsi::test_unit_ready(),
                Data::None,
                deadline,
            )?;
            match c.result {
                Ok(o) if o.is_unit_attention() => continue,
                // Not ready or another status: the re-issued commands will say so.
                Ok(_) => return Ok(()),
                Err(e) => return Err(format!("TEST UNIT READY after the login: {e}")),
            }
        }
        Ok(())
    }

    /// READ CAPACITY(16) on the new connection.
    fn capacity_now(&mut self, lun: Lun, deadline: Instant) -> Result<Capacity, String> {
        for _ in 0..UNIT_ATTENTIONS {
            let c = self.raw(
                "READ CAPACITY(16)",
                lun,
                scsi::read_capacity_16(),
                Data::Read(SgBuffer::zeroed(32)),
                deadline,
            )?;
            let outcome = c
                .result
                .map_err(|e| format!("READ CAPACITY(16) after the login: {e}"))?;
            if outcome.is_unit_attention() {
                continue;
            }
            if !outcome.is_good() {
                return Err(format!(
                    "READ CAPACITY(16) after the login: SCSI status {} ({:#04x})",
                    scsi::status_name(outcome.status),
                    outcome.status
                ));
            }
            let data = c.buffer.map(SgBuffer::into_vec).unwrap_or_default();
            return Capacity::parse_16(&data)
                .map_err(|e| format!("READ CAPACITY(16) after the login: {e}"));
        }
        Err("READ CAPACITY(16) after the login: unit attention after unit attention".into())
    }

    /// One command (`name`, for messages) on the current connection outside the session's
    /// tracking (the waiting commands are not issued yet), before `deadline`.
    fn raw(
        &mut self,
        name: &str,
        lun: Lun,
        cdb: scsi::Cdb,
        data: Data,
        deadline: Instant,
    ) -> Result<Completion, String> {
        let id = self.conn.submit(Command { lun, cdb, data });
        let mut found = None;
        let r = self.wait_completion(id, name, deadline, &mut found);
        if found.is_none() {
            // The attempt is abandoned with the command still outstanding: end the connection
            // here and drop what it reports, so that the command's completion never reaches
            // the caller as one of theirs (it has the connection's id, not the session's).
            self.conn.close();
            while self.conn.poll_event().is_some() {}
        }
        match (found, r) {
            (Some(c), _) => Ok(c),
            // A timeout names the command already.
            (None, Err(e @ Error::Timeout(_))) => Err(e.to_string()),
            (None, Err(e)) => Err(format!("{name} after the login: {e}")),
            (None, Ok(())) => Err(format!("{name} after the login: no completion")),
        }
    }

    /// Turns the current connection until connection command `id` (`name`) completes (into
    /// `found`), before `deadline`.
    fn wait_completion(
        &mut self,
        id: CommandId,
        name: &str,
        deadline: Instant,
        found: &mut Option<Completion>,
    ) -> Result<(), Error> {
        use ulp_ddp_core::blocking::Turn;
        let started = Instant::now();
        loop {
            while let Some(e) = self.conn.poll_event() {
                match e {
                    Event::Completed(c) if c.id == id => *found = Some(c),
                    Event::Completed(_) => {}
                    // Recovery steps reported as they happen, like on any connection.
                    other => self.note_event(other),
                }
            }
            if found.is_some() {
                return Ok(());
            }
            if let Some(end) = self.ended() {
                return Err(Error::Connection(end));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(super::timed_out(
                    now - started,
                    format!("the answer to {name} after the login"),
                ));
            }
            match self.driver.turn(&mut self.conn, Some(deadline)) {
                Ok(Turn::Read(_) | Turn::Closed | Turn::Woken) => {}
                Err(e) => return Err(Error::Io(e)),
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

/// A LUN's number for messages (single-level addressing).
fn lun_number(lun: Lun) -> u16 {
    u16::from_be_bytes([lun.0[0] & 0x3F, lun.0[1]])
}
