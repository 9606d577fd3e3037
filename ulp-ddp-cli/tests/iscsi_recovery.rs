//! Session recovery against a real tgtd (Debian's `tgt`, a file-backed LUN that survives a
//! restart), through the CLI, whose output says what the host did: each test prints it.
//!
//! (a) tgtd stopped (SIGSTOP) for longer than the task deadline in the middle of a
//! write-then-read run at QD 16, then continued; (b) tgtd killed and restarted with the same
//! target and LUN mid-run; (c) tgtd gone for longer than the replacement timeout. Timeouts are
//! short here (pings every 1 s, 1 s to answer, task deadline 2 s, one reinstatement attempt at
//! most 3 s, one every 1 s) so each test takes seconds.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ulp_testbed::peers::{Tgtd, peer_available};

/// Commands of 64 KiB per phase (64 MiB), written and read back `PASSES` times: a run of
/// several seconds, for the fault to land in its middle.
const COUNT: usize = 1024;
const PASSES: usize = 24;
const LUN_BYTES: u64 = 96 << 20;

/// A running `ulp-ddp iscsi verify`, its output lines (both streams) as they come.
struct Run {
    child: Child,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    seen: Vec<String>,
    started: Instant,
}

fn reader(
    stream: impl Read + Send + 'static,
    tx: std::sync::mpsc::Sender<String>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    })
}

impl Run {
    fn start(tgtd: &Tgtd, replacement_timeout: &str) -> Self {
        let url = format!("iscsi://127.0.0.1:{}/{}/1", tgtd.port, tgtd.iqn);
        let count = COUNT.to_string();
        let passes = PASSES.to_string();
        let args = [
            "iscsi",
            "verify",
            &url,
            "--bs",
            "65536",
            "--count",
            &count,
            "--qd",
            "16",
            "--passes",
            &passes,
            "--noop-interval",
            "1",
            "--noop-timeout",
            "1",
            "--task-timeout",
            "2",
            "--replacement-timeout",
            replacement_timeout,
            "--reconnect-delay",
            "1",
            "--login-timeout",
            "3",
        ];
        println!("$ ulp-ddp {}", args.join(" "));
        let mut child = Command::new(env!("CARGO_BIN_EXE_ulp-ddp"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ulp-ddp starts");
        let (tx, lines) = channel();
        let readers = vec![
            reader(child.stdout.take().expect("stdout"), tx.clone()),
            reader(child.stderr.take().expect("stderr"), tx),
        ];
        Self {
            child,
            lines,
            readers,
            seen: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Prints and keeps the lines that arrive within `d`.
    fn take_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => self.keep(l),
                Err(_) => break,
            }
        }
    }

    fn keep(&mut self, l: String) {
        println!("[{:5.1} s] {l}", self.started.elapsed().as_secs_f64());
        self.seen.push(l);
    }

    /// Waits (at most `limit`) for a line containing `text`.
    fn wait_line(&mut self, text: &str, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = until
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no line with {text:?} within {limit:?}"));
            match self.lines.recv_timeout(left) {
                Ok(l) => self.keep(l),
                Err(_) => panic!("no line with {text:?} within {limit:?}: {:#?}", self.seen),
            }
        }
    }

    /// Waits (at most `limit`) for the run to end; its exit status and every line.
    fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let until = Instant::now() + limit;
        let status = loop {
            while let Ok(l) = self.lines.try_recv() {
                self.keep(l);
            }
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the run did not end within {limit:?}: {:#?}", self.seen);
            }
            self.take_for(Duration::from_millis(50));
        };
        for r in std::mem::take(&mut self.readers) {
            let _ = r.join();
        }
        while let Ok(l) = self.lines.try_recv() {
            self.keep(l);
        }
        println!(
            "(run ended after {:.1} s: {status})",
            self.started.elapsed().as_secs_f64()
        );
        (status, self.seen.join("\n"))
    }
}

fn tgtd() -> Option<Tgtd> {
    if !peer_available("tgtd") || !peer_available("tgtadm") {
        return None;
    }
    Some(Tgtd::start(LUN_BYTES, "None"))
}

/// The run is in its write phase: the session is up and commands are flowing.
fn in_the_middle(run: &mut Run) {
    run.wait_line("capacity:", Duration::from_secs(10));
    run.take_for(Duration::from_millis(300));
    assert!(
        !run.seen.iter().any(|l| l.contains("verified")),
        "the run ended before the fault: make it longer"
    );
}

#[test]
fn a_tgtd_stopped_longer_than_the_task_deadline_then_continued() {
    let Some(tgtd) = tgtd() else { return };
    let mut run = Run::start(&tgtd, "30");
    in_the_middle(&mut run);
    assert!(tgtd.signal("STOP"), "SIGSTOP tgtd");
    println!(
        "[{:5.1} s] (test: tgtd stopped)",
        run.started.elapsed().as_secs_f64()
    );
    run.take_for(Duration::from_millis(4500));
    assert!(tgtd.signal("CONT"), "SIGCONT tgtd");
    println!(
        "[{:5.1} s] (test: tgtd continued)",
        run.started.elapsed().as_secs_f64()
    );
    let (status, out) = run.finish(Duration::from_secs(30));
    assert!(status.success(), "{out}");
    assert!(out.contains("connection lost: "), "{out}");
    assert!(out.contains("session reinstated "), "{out}");
    assert!(out.contains(" issued again"), "{out}");
    assert_eq!(
        out.matches("0 failed, 1024 buffers back, 0 differ from what was written")
            .count(),
        PASSES,
        "{out}"
    );
    assert!(out.contains("every byte read back as written"), "{out}");
}

#[test]
fn b_tgtd_killed_and_restarted_with_the_same_target_and_lun() {
    let Some(mut tgtd) = tgtd() else { return };
    let mut run = Run::start(&tgtd, "30");
    in_the_middle(&mut run);
    tgtd.kill();
    println!(
        "[{:5.1} s] (test: tgtd killed)",
        run.started.elapsed().as_secs_f64()
    );
    run.take_for(Duration::from_millis(2500));
    tgtd.restart();
    println!(
        "[{:5.1} s] (test: tgtd restarted on the same port, target and LUN file)",
        run.started.elapsed().as_secs_f64()
    );
    let (status, out) = run.finish(Duration::from_secs(30));
    assert!(status.success(), "{out}");
    assert!(out.contains("connection lost: "), "{out}");
    assert!(out.contains("failed: TCP connection to 127.0.0.1"), "{out}");
    assert!(out.contains("session reinstated "), "{out}");
    assert_eq!(
        out.matches("0 failed, 1024 buffers back, 0 differ from what was written")
            .count(),
        PASSES,
        "{out}"
    );
    assert!(out.contains("every byte read back as written"), "{out}");
}

#[test]
fn c_tgtd_gone_longer_than_the_replacement_timeout() {
    let Some(mut tgtd) = tgtd() else { return };
    let mut run = Run::start(&tgtd, "4");
    in_the_middle(&mut run);
    tgtd.kill();
    let killed = Instant::now();
    println!(
        "[{:5.1} s] (test: tgtd killed for good)",
        run.started.elapsed().as_secs_f64()
    );
    let (status, out) = run.finish(Duration::from_secs(30));
    let took = killed.elapsed();
    assert!(!status.success(), "{out}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert!(
        out.contains("session lost: session not reinstated within replacement_timeout 4.0 s"),
        "{out}"
    );
    assert!(
        out.contains("failed: session not reinstated within replacement_timeout 4.0 s")
            || out.contains("failed: refused: the session was lost: session not reinstated"),
        "{out}"
    );
    // Every command of every phase ended, each with its buffer back; from the loss on, every
    // one failed.
    let phases: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("commands of 65536 bytes at QD 16"))
        .collect();
    assert!(
        phases.len() < 2 * PASSES,
        "the run stops once the session is lost: {out}"
    );
    assert!(out.contains("stopping: the session was lost"), "{out}");
    let mut failed = 0;
    for l in &phases {
        assert!(l.contains("1024 buffers back"), "{l}");
        failed += l
            .split(" s: ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{l}"));
    }
    // The phase the loss ended: the commands after the loss failed (those outstanding with
    // the replacement timeout's words, the rest refused), every buffer back.
    let last = phases.last().expect("phases");
    println!("{failed} commands failed, every buffer came back ({last})");
    assert!(
        failed >= 16,
        "at least the 16 outstanding at the loss: {failed}"
    );
}
