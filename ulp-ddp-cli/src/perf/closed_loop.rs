//! The closed loop: `--qd` commands outstanding, latency per command, a progress bar, and
//! the driving thread's CPU time.

use std::time::{Duration, Instant};

use ulp_ddp_core::Stats;

use super::histogram::Histogram;
use super::spec::{Limit, PerfSpec};

/// A protocol's side of the closed loop: commands run in `qd` slots, each slot owning its buffer.
pub trait PerfIo {
    /// Submits the next command in `slot` (sent at once or at the next `wait`).
    ///
    /// # Errors
    ///
    /// A message; the run stops.
    fn submit(&mut self, slot: usize) -> Result<(), String>;

    /// Waits for any command; returns its slot and whether it succeeded.
    ///
    /// # Errors
    ///
    /// A message; the run stops.
    fn wait(&mut self) -> Result<(usize, bool), String>;
}

/// What [`closed_loop`] measured.
#[derive(Clone, Debug)]
pub struct LoopOutcome {
    /// Commands completed.
    pub commands: u64,
    /// Commands that failed.
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latency per command.
    pub latency: Histogram,
    /// CPU time of the calling thread over the loop ([`thread_cpu`]).
    pub host_cpu: Option<Duration>,
}

/// CPU time the calling thread has used so far, from `/proc/thread-self/schedstat` (Linux,
/// nanoseconds, updated at every context switch); `None` where that file does not exist.
pub fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Drives `io` with `spec`: keeps `spec.qd` commands outstanding until the limit, then drains.
///
/// # Errors
///
/// The first failure of `io`.
pub fn closed_loop(
    io: &mut impl PerfIo,
    spec: &PerfSpec,
    label: &str,
) -> Result<LoopOutcome, String> {
    let cpu_before = thread_cpu();
    let mut hist = Histogram::default();
    let mut started = vec![Instant::now(); spec.qd];
    let mut progress = Progress::new(spec, label);
    let start = Instant::now();
    let (mut submitted, mut done, mut errors) = (0u64, 0u64, 0u64);
    let more = |submitted: u64, now: Instant| match spec.limit {
        Limit::Count(n) => submitted < n,
        Limit::Seconds(s) => now.duration_since(start).as_secs_f64() < s,
    };
    for (slot, at) in started.iter_mut().enumerate() {
        if !more(submitted, Instant::now()) {
            break;
        }
        *at = Instant::now();
        io.submit(slot)?;
        submitted += 1;
    }
    while done < submitted {
        let (slot, ok) = io.wait()?;
        let now = Instant::now();
        hist.record(now.duration_since(started[slot]).as_nanos() as u64);
        done += 1;
        errors += u64::from(!ok);
        if more(submitted, now) {
            started[slot] = now;
            io.submit(slot)?;
            submitted += 1;
        }
        progress.tick(now, start, done, spec.bs);
    }
    let elapsed = start.elapsed();
    let host_cpu = thread_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    progress.finish();
    Ok(LoopOutcome {
        commands: done,
        errors,
        elapsed,
        latency: hist,
        host_cpu,
    })
}

/// The progress bar on stderr (indicatif, hidden when stderr is not a terminal or with
/// `--no-progress` or `--json`).
struct Progress {
    bar: indicatif::ProgressBar,
    limit: Limit,
    last: Instant,
}

impl Progress {
    fn new(spec: &PerfSpec, label: &str) -> Self {
        let len = match spec.limit {
            Limit::Seconds(s) => (s * 1000.0) as u64,
            Limit::Count(n) => n,
        };
        let bar = if spec.progress && !spec.json {
            crate::progress::bar(len, label)
        } else {
            indicatif::ProgressBar::hidden()
        };
        Self {
            bar,
            limit: spec.limit,
            last: Instant::now(),
        }
    }

    fn tick(&mut self, now: Instant, start: Instant, done: u64, bs: usize) {
        if self.bar.is_hidden() || now.duration_since(self.last) < Duration::from_millis(100) {
            return;
        }
        self.last = now;
        let secs = now.duration_since(start).as_secs_f64();
        self.bar.set_position(match self.limit {
            Limit::Seconds(_) => (secs * 1000.0) as u64,
            Limit::Count(_) => done,
        });
        self.bar.set_message(format!(
            "{:>8.2} GB/s {:>9.0} IOPS",
            done as f64 * bs as f64 / secs.max(1e-9) / 1e9,
            done as f64 / secs.max(1e-9)
        ));
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Subtracts counters (`after - before`) for the fields the summary shows.
pub fn stats_delta(after: Stats, before: Stats) -> Stats {
    Stats {
        pdus: after.pdus - before.pdus,
        data_pdus: after.data_pdus - before.data_pdus,
        bytes_placed: after.bytes_placed - before.bytes_placed,
        bytes_copied: after.bytes_copied - before.bytes_copied,
        bytes_read_in_place: after.bytes_read_in_place - before.bytes_read_in_place,
        digests_offloaded: after.digests_offloaded - before.digests_offloaded,
        digests_computed: after.digests_computed - before.digests_computed,
        digests_failed: after.digests_failed - before.digests_failed,
        ..after
    }
}

// ----- the raw TCP baselines -----
