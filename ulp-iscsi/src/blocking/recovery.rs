//! Session reinstatement (RFC 7143 §6.3.5): what [`Session`] does when its connection ends
//! without the caller asking. The decisions are the sans-IO [`Reinstatement`]'s, shared with
//! the tokio driver; this file runs them with blocking sleeps and sockets.

use std::time::{Duration, Instant};

use ulp_ddp_core::{DdpBackend, SansIo};

use super::session::tcp_connect;
use super::{Error, Session};
use crate::connection::{CommandError, CommandId, Completion, ConnectionError};
use crate::recovery::{Failure, Next, Reinstatement};

impl<B: DdpBackend> Session<B> {
    /// The connection ended (`cause`): the commands it completed are sorted (retry-safe ones
    /// wait, others failed), then the session is reinstated as the [`Reinstatement`] policy
    /// says (after the target's Time2Wait, every `reconnect_delay`, until
    /// `replacement_timeout`); or, past it or on a login that cannot succeed, every waiting
    /// command fails and the session is lost.
    pub(super) fn reinstate(&mut self, end: &ConnectionError) {
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
        let mut policy = Reinstatement::new(&self.options);
        policy.on_lost(Instant::now(), end, self.backlog.len(), failed);
        loop {
            let next = policy.poll(Instant::now());
            self.report_from(&mut policy);
            match next {
                Next::Wait(at) => {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                }
                Next::GiveUp(reason) => {
                    let failed = self.give_up(reason.clone());
                    policy.lost(reason, failed);
                    return self.report_from(&mut policy);
                }
                Next::Attempt { limit, .. } => match self.attempt(limit) {
                    Ok(()) => {
                        self.reinstatements += 1;
                        policy.reinstated(Instant::now(), self.backlog.len(), self.conn.tsih());
                        self.report_from(&mut policy);
                        self.issue();
                        return;
                    }
                    Err(f) => policy.attempt_failed(Instant::now(), f),
                },
            }
        }
    }

    /// Reports the policy's events.
    fn report_from(&mut self, policy: &mut Reinstatement) {
        while let Some(e) = policy.poll_event() {
            self.report(e);
        }
    }

    /// One reinstatement attempt within `limit`: TCP connection, then the shared bring-up
    /// ([`Bringup`]): login (same ISID, TSIH 0), each LUN's unit attention taken and its
    /// known capacity checked.
    fn attempt(&mut self, limit: Duration) -> Result<(), Failure> {
        let started = Instant::now();
        let stream = tcp_connect(self.addr, limit).map_err(|e| match e {
            Error::Io(e) => Failure::tcp(self.addr, e),
            other => Failure::Retry(other.to_string()),
        })?;
        let mut bringup = crate::recovery::bringup(
            started,
            limit,
            &self.capacities,
            self.backlog.iter().map(|(t, _)| t.lun),
        );
        match self.relogin(stream, &mut bringup) {
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::of_bringup(&e, bringup.logged_in())),
        }
    }

    /// The session is lost: every waiting command fails with `reason`, its buffer handed
    /// back (how many: the returned count); new commands are refused.
    fn give_up(&mut self, reason: String) -> usize {
        let failed = self.fail_backlog(&CommandError::SessionLost(reason.clone()));
        self.lost = Some(reason);
        if !self.conn.is_closed() {
            self.conn.close();
            self.dispatch();
        }
        failed
    }
}
