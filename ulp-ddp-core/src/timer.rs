//! Deadlines for sans-IO state machines, which learn the time only from `handle_timeout(now)`.
//!
//! A state machine that must act at some time (send a keep-alive, give up on a silent peer)
//! keeps a [`Timer`] per duty. It cannot read a clock, so a timer started from an input that
//! carries no time (the connection came up while bytes were processed) is *pending*: it reports
//! itself due at once, so that the driver calls `handle_timeout(now)` promptly, and that call
//! fixes its deadline at `now + delay`. Drivers sleep until `poll_timeout()`, the earliest of
//! the state machine's timers, then call `handle_timeout(Instant::now())`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ulp_ddp_core::timer::Timer;
//!
//! let t0 = Instant::now();
//! let mut keep_alive = Timer::default();
//! keep_alive.start(Duration::from_secs(5));
//! // Not yet given a time: due as soon as the driver can tell the time.
//! assert_eq!(keep_alive.deadline(Some(t0)), Some(t0));
//! assert!(!keep_alive.expire(t0));
//! assert_eq!(keep_alive.deadline(Some(t0)), Some(t0 + Duration::from_secs(5)));
//! assert!(keep_alive.expire(t0 + Duration::from_secs(5)));
//! assert!(!keep_alive.is_armed());
//! ```

use std::time::{Duration, Instant};

/// One deadline: off, pending (started, waiting for the next time the state machine learns),
/// or due at an instant.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Timer {
    state: State,
}

#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
enum State {
    #[default]
    Off,
    Pending(Duration),
    At(Instant),
}

impl Timer {
    /// Starts the timer to fire `delay` after the next time the state machine learns (its next
    /// `handle_timeout`).
    pub fn start(&mut self, delay: Duration) {
        self.state = State::Pending(delay);
    }

    /// Sets the timer to fire at `at`.
    pub fn set(&mut self, at: Instant) {
        self.state = State::At(at);
    }

    /// Stops the timer.
    pub fn stop(&mut self) {
        self.state = State::Off;
    }

    /// Whether the timer is started or set.
    pub fn is_armed(&self) -> bool {
        self.state != State::Off
    }

    /// When the state machine's `handle_timeout` must run for this timer, given the latest time
    /// it was told (`seen`): the deadline; for a pending timer, `seen` itself (at once), or
    /// `None` if the state machine was never told a time.
    pub fn deadline(&self, seen: Option<Instant>) -> Option<Instant> {
        match self.state {
            State::Off => None,
            State::Pending(_) => seen,
            State::At(at) => Some(at),
        }
    }

    /// At `handle_timeout(now)`: fixes a pending timer's deadline at `now + delay`; returns
    /// whether the deadline has passed, and then stops the timer.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self.state {
            State::Off => false,
            State::Pending(delay) => {
                self.state = State::At(now + delay);
                delay.is_zero() && self.expire(now)
            }
            State::At(at) if at <= now => {
                self.state = State::Off;
                true
            }
            State::At(_) => false,
        }
    }
}

/// The earliest of `deadlines`, for a state machine's `poll_timeout`.
pub fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_timers_never_fire() {
        let mut t = Timer::default();
        let now = Instant::now();
        assert_eq!(t.deadline(Some(now)), None);
        assert!(!t.expire(now));
    }

    #[test]
    fn a_zero_delay_fires_at_the_first_time_learnt() {
        let mut t = Timer::default();
        t.start(Duration::ZERO);
        let now = Instant::now();
        assert!(t.expire(now));
        assert!(!t.is_armed());
    }

    #[test]
    fn earliest_skips_off_timers() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert_eq!(earliest([None, Some(later), Some(now)]), Some(now));
        assert_eq!(earliest([None, None]), None);
    }
}
