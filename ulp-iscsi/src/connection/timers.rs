//! The state machine's timers besides the NOP-Out pings: the login timeout, command deadlines
//! and task management (`tmf`), and the logout timeout. All are driven by
//! `handle_timeout(now)` and announced by `poll_timeout()`; a timer started while bytes were
//! processed (no time known) is pending and fixed at the next `handle_timeout`
//! ([`ulp_ddp_core::timer::Timer`]).

use std::time::Instant;

use ulp_ddp_core::DdpBackend;

use super::{Connection, ConnectionError, Event, Phase, Recovery, TaskKind, stage_number};
use crate::wire::login::Stage;

impl<B: DdpBackend> Connection<B> {
    /// Runs the login, deadline, task management and logout timers.
    pub(super) fn handle_recovery_timers(&mut self, now: Instant) {
        match self.phase {
            Phase::Login => {
                let r = &mut self.recovery;
                if !r.login_armed {
                    r.login_armed = true;
                    r.login_timer.start(self.config.login_timeout);
                }
                if r.login_timer.expire(now) {
                    let stage = self.login.as_ref().map_or(Stage::Security, |l| l.stage);
                    self.fail(ConnectionError::LoginTimeout {
                        stage: stage_number(stage),
                        rounds: self.login_rounds,
                        waited: self.config.login_timeout,
                    });
                }
            }
            Phase::FullFeature => self.expire_tasks(now),
            Phase::LoggingOut => {
                let r = &mut self.recovery;
                if !r.logout_armed {
                    r.logout_armed = true;
                    r.logout_timer.start(self.config.logout_timeout);
                }
                if r.logout_timer.expire(now) {
                    self.logout_unanswered();
                }
            }
            _ => {}
        }
    }

    /// When the login, deadline, task management and logout timers need `handle_timeout`.
    pub(super) fn recovery_timeout(&self) -> Option<Instant> {
        let r = &self.recovery;
        match self.phase {
            Phase::Login if !r.login_armed => self.now,
            Phase::Login => r.login_timer.deadline(self.now),
            Phase::FullFeature => self.tmf_timeout(),
            Phase::LoggingOut if !r.logout_armed => self.now,
            Phase::LoggingOut => r.logout_timer.deadline(self.now),
            _ => None,
        }
    }

    /// SCSI commands outstanding: sent, or waiting for the window or a tag.
    fn scsi_outstanding(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| matches!(t.kind, TaskKind::Scsi(_)))
            .count()
            + self.queued.len()
    }

    /// Whether the Logout Request has gone out (been handed out by `poll_transmit`): only
    /// then can a target's silence or close stand for its answer.
    fn logout_went_out(&self) -> bool {
        self.tasks
            .iter()
            .any(|(&itt, t)| matches!(t.kind, TaskKind::Logout) && !self.request_unsent(itt))
    }

    /// The Logout Response did not come in time: a clean end (with a warning) when every SCSI
    /// command had completed, else a failure; a logout the target asked for ends with the
    /// target's cause.
    fn logout_unanswered(&mut self) {
        if let Some(cause) = self.logout_cause.take() {
            // A logout the target asked for: its cause ends the connection.
            return self.fail(cause);
        }
        let outstanding = self.scsi_outstanding();
        let waited = self.config.logout_timeout;
        if outstanding == 0 && self.logout_went_out() {
            self.events
                .push_back(Event::Recovery(Recovery::LogoutUnanswered { waited }));
            self.end(ConnectionError::LoggedOut, true);
        } else {
            self.fail(ConnectionError::LogoutTimeout {
                waited,
                outstanding,
            });
        }
    }

    /// The target closed the stream: during a logout with every SCSI command completed, a
    /// clean end with a warning (istgt closes instead of answering, about one session in ten);
    /// else [`ConnectionError::PeerClosed`].
    pub(super) fn peer_closed(&mut self) {
        if self.phase == Phase::LoggingOut
            && let Some(cause) = self.logout_cause.take()
        {
            // A logout the target asked for: its cause ends the connection.
            return self.fail(cause);
        }
        if self.phase == Phase::LoggingOut && self.scsi_outstanding() == 0 && self.logout_went_out()
        {
            self.events
                .push_back(Event::Recovery(Recovery::ClosedInsteadOfLogoutResponse));
            self.end(ConnectionError::LoggedOut, true);
        } else {
            self.fail(ConnectionError::PeerClosed);
        }
    }
}
