//! The Controller's recovery ladder end to end, against the embedded target, with faults
//! injected by the test bed's TCP proxy (cut, stall) and by the target itself (reads held
//! unanswered, Aborts honoured or refused). Short timeouts keep every test to a second or two:
//! io_timeout 300 ms, KATO 400 ms, reconnect_delay 100 ms, ctrl_loss_tmo 1-2 s.
//!
//! | test | fault | step of the ladder it proves |
//! |---|---|---|
//! | `cut_mid_run_*` | connection cut at QD 16, back after 300 ms | reset, reconnect, re-issue: every command completes, data intact |
//! | `cut_for_good_*` | connection cut, never back | ctrl_loss_tmo: every command fails with the reason, buffers back |
//! | `stall_*` | controller stops answering, connection open | Keep Alive timeout: reset, reconnect |
//! | `held_read_*` | one read never answered | io_timeout: Abort; aborted and retried, or not aborted and reset |
//! | `close_*` | none | CC.SHN, CSTS.SHST: the target sees the shutdown |
//!
//! Two tests are ignored: they check the documented timing (a command times out at io_timeout
//! whatever else wakes the host; nothing is failed before ctrl_loss_tmo) and fail on bugs of
//! the Controller (their `ignore` reasons say which); run them with `--ignored`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ulp_ddp_core::SgBuffer;
use ulp_nvme_tcp::blocking::{
    CommandId, Controller, ControllerEvent, Error, Io, IoCompletion, IoError,
};
use ulp_testbed::proxy::Proxy;

mod fixtures;
use fixtures::{options, target, violations};

/// Bytes per command.
const IO: usize = 4096;
/// Blocks per command (512-byte blocks).
const IO_BLOCKS: u64 = (IO / 512) as u64;
/// Slots of the read region (read back, never written during a run) and of the write region.
const SLOTS: u64 = 64;
/// First block of the write region.
const WRITE_BASE: u64 = SLOTS * IO_BLOCKS;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (seed as u8).wrapping_mul(97) ^ (i >> 9) as u8)
        .collect()
}

fn read_slba(slot: u64) -> u64 {
    slot * IO_BLOCKS
}

fn write_slba(slot: u64) -> u64 {
    WRITE_BASE + slot * IO_BLOCKS
}

/// What every slot of the read region holds.
fn read_data(slot: u64) -> Vec<u8> {
    pattern(IO, slot)
}

/// What a write to a slot of the write region carries (the same every time, so that commands
/// issued again after a reset leave the same bytes whatever the order).
fn write_data(slot: u64) -> Vec<u8> {
    pattern(IO, 0x80 + slot)
}

/// Fills the read region (one write per slot).
fn fill_read_region(c: &mut Controller) {
    for slot in 0..SLOTS {
        c.write(read_slba(slot), SgBuffer::from_vec(read_data(slot)))
            .expect("fill the read region");
    }
}

/// Command `i` of a run: even ones read a slot of the read region, odd ones write a slot of
/// the write region.
#[derive(Clone, Copy, Debug)]
enum Op {
    Read(u64),
    Write(u64),
}

impl Op {
    fn nth(i: u64) -> Self {
        let slot = (i / 2) % SLOTS;
        if i.is_multiple_of(2) {
            Self::Read(slot)
        } else {
            Self::Write(slot)
        }
    }

    fn io(self) -> Io {
        match self {
            Self::Read(slot) => Io::Read {
                slba: read_slba(slot),
                buffer: SgBuffer::zeroed(IO),
            },
            Self::Write(slot) => Io::Write {
                slba: write_slba(slot),
                data: SgBuffer::from_vec(write_data(slot)),
            },
        }
    }

    /// Checks a successful completion: its buffer holds the slot's data (read from the
    /// target, or handed back as written).
    fn check(self, done: IoCompletion) {
        assert!(
            done.is_success(),
            "{op:?}: {:?}",
            done.error_message(),
            op = self
        );
        let (command, expected) = match self {
            Self::Read(slot) => ("Read", read_data(slot)),
            Self::Write(slot) => ("Write", write_data(slot)),
        };
        assert_eq!(done.command, command);
        let got = done.buffer.expect("the buffer comes back").into_vec();
        assert!(got == expected, "{self:?}: wrong data");
    }
}

/// The events in words.
fn words(events: &[ControllerEvent]) -> Vec<String> {
    events.iter().map(ToString::to_string).collect()
}

/// Waits (at most 5 s) for `f`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A connection cut in the middle of a run at queue depth 16 and back 300 ms later: the
/// controller resets, reconnects (refused while cut, every reconnect_delay), issues again
/// what was in flight, and every command completes with its data; the new association then
/// shuts down cleanly.
#[test]
fn cut_mid_run_reconnects_and_every_command_completes() {
    const TOTAL: u64 = 600;
    const CUT_AFTER: u64 = 200;
    const OUTAGE: Duration = Duration::from_millis(300);
    let target = target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let o = options(&target);
    let mut c = Controller::connect(proxy.addr(), &o).expect("connect");
    fill_read_region(&mut c);
    assert_eq!(proxy.connections(), 2, "admin and I/O queue");
    let t = Instant::now();
    let mut cut_at = None;
    std::thread::scope(|s| {
        let mut ops: HashMap<CommandId, Op> = HashMap::new();
        let (mut next, mut done) = (0u64, 0u64);
        while done < TOTAL {
            while ops.len() < 16 && next < TOTAL {
                let op = Op::nth(next);
                ops.insert(c.submit(op.io()).expect("submit"), op);
                next += 1;
            }
            let completion = c.wait(None).expect("wait");
            let op = ops.remove(&completion.id).expect("a command of the run");
            op.check(completion);
            done += 1;
            if done == CUT_AFTER {
                // 15 commands outstanding (issued, some perhaps answered already).
                proxy.cut();
                cut_at = Some(Instant::now());
                let proxy = &proxy;
                s.spawn(move || {
                    std::thread::sleep(OUTAGE);
                    proxy.restore();
                });
            }
        }
    });
    let elapsed = t.elapsed();
    let events = c.take_events();
    let text = words(&events);
    println!(
        "{TOTAL} commands at QD 16, cut after {CUT_AFTER} for {} ms: {:.0} ms; {} refused \
         reconnects; events: {}",
        OUTAGE.as_millis(),
        elapsed.as_secs_f64() * 1e3,
        proxy.refused(),
        text.join("; ")
    );
    assert_eq!(c.reconnects(), 1, "{text:?}");
    let reissued = fixtures::reset_then_reconnected(&events, proxy.refused(), OUTAGE, &o);
    assert!(
        (1..=16).contains(&reissued),
        "{reissued} in flight at the cut"
    );
    let since_cut = cut_at.expect("cut").elapsed();
    assert!(since_cut < OUTAGE + Duration::from_secs(1), "{since_cut:?}");
    for slot in 0..SLOTS {
        let at = write_slba(slot) as usize * 512;
        assert!(target.contents(at, IO) == write_data(slot), "slot {slot}");
    }
    assert_eq!(proxy.connections(), 2, "the new association's queues");
    assert_eq!(violations(&target), Vec::<String>::new());
    c.close().expect("clean shutdown after the reconnect");
    assert_eq!(target.shutdowns(), 1);
}

/// A connection cut for good: the controller resets and tries to reconnect every
/// reconnect_delay until ctrl_loss_tmo, then fails every outstanding command with
/// `IoError::Lost` naming ctrl_loss_tmo, each with its buffer as given, and takes no new one.
#[test]
fn cut_for_good_fails_every_command_after_ctrl_loss_tmo() {
    let target = target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let mut o = options(&target);
    o.ctrl_loss_tmo = Duration::from_secs(1);
    let mut c = Controller::connect(proxy.addr(), &o).expect("connect");
    fill_read_region(&mut c);
    // The answers stop, so that the commands are in flight when the cut comes.
    proxy.stall();
    let mut ops: HashMap<CommandId, Op> = HashMap::new();
    for i in 0..16 {
        let op = Op::nth(i);
        ops.insert(c.submit(op.io()).expect("submit"), op);
    }
    let mut cut_at = None;
    let mut failed = 0;
    std::thread::scope(|s| {
        let proxy = &proxy;
        let cut_at = &mut cut_at;
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            proxy.cut();
            *cut_at = Some(Instant::now());
        });
        while !ops.is_empty() {
            let done = c.wait(None).expect("a completion");
            let op = ops.remove(&done.id).expect("a command of the run");
            let msg = done.error_message().expect("failed");
            let Err(IoError::Lost(reason)) = &done.result else {
                panic!("{op:?}: {msg}");
            };
            assert!(reason.contains("ctrl_loss_tmo 1.0 s"), "{reason}");
            assert!(msg.contains("ctrl_loss_tmo"), "{msg}");
            let buffer = done.buffer.expect("the buffer comes back").into_vec();
            assert_eq!(buffer.len(), IO, "{op:?}");
            if let Op::Write(slot) = op {
                assert!(buffer == write_data(slot), "a write's buffer as given");
            }
            failed += 1;
        }
    });
    // From the cut to the last failure.
    let elapsed = cut_at.expect("cut").elapsed();
    let text = words(&c.take_events());
    println!(
        "16 commands failed {:.0} ms after the cut (ctrl_loss_tmo {} ms, {} refused \
         reconnects): {}",
        elapsed.as_secs_f64() * 1e3,
        o.ctrl_loss_tmo.as_millis(),
        proxy.refused(),
        text.join("; ")
    );
    assert_eq!(failed, 16);
    fixtures::given_up_after_ctrl_loss_tmo(&text, elapsed, proxy.refused(), &o);
    assert_eq!(c.reconnects(), 0);
    match c.submit(Io::Flush) {
        Err(Error::Refused { reason, .. }) => {
            assert!(reason.contains("ctrl_loss_tmo"), "{reason}");
        }
        other => panic!("a lost controller takes no command: {other:?}"),
    }
    match c.read(0, SgBuffer::zeroed(IO)) {
        Err(e @ Error::Refused { .. }) => assert_eq!(
            e.into_buffer().map(|b| b.len()),
            Some(IO as u64),
            "nor a read, whose buffer comes back"
        ),
        other => panic!("a lost controller takes no read: {other:?}"),
    }
    assert_eq!(c.outstanding(), 0);
    assert_eq!(violations(&target), Vec::<String>::new());
    c.close().expect("closing a lost controller");
    assert_eq!(target.shutdowns(), 0);
}

/// `Options::ctrl_loss_tmo` as documented ("give up reconnecting, and fail every outstanding
/// command, this long after the controller was lost") and as Linux keeps it (attempts every
/// reconnect_delay, the last at ctrl_loss_tmo): nothing fails before ctrl_loss_tmo.
#[test]
fn cut_for_good_keeps_trying_until_ctrl_loss_tmo() {
    let target = target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let mut o = options(&target);
    o.ctrl_loss_tmo = Duration::from_secs(1);
    let mut c = Controller::connect(proxy.addr(), &o).expect("connect");
    proxy.cut();
    let t = Instant::now();
    let read = c.submit(Op::Read(0).io()).expect("submit");
    let done = c.wait(Some(read)).expect("the read");
    let elapsed = t.elapsed();
    println!(
        "lost after {:.0} ms, {} attempts refused: {:?}",
        elapsed.as_secs_f64() * 1e3,
        proxy.refused(),
        done.error_message()
    );
    assert!(matches!(done.result, Err(IoError::Lost(_))));
    assert!(elapsed >= o.ctrl_loss_tmo, "failed after {elapsed:?}");
    assert!(elapsed < o.ctrl_loss_tmo + Duration::from_millis(500));
    assert_eq!(proxy.refused(), 10, "one attempt every reconnect_delay");
}

/// A controller that stops answering with its connections open: the Keep Alive goes
/// unanswered for the KATO, the controller resets (in words: Keep Alive), reconnects once the
/// answers flow again, and the commands outstanding complete with their data.
#[test]
fn stall_resets_on_keep_alive_timeout_and_commands_complete() {
    let target = target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let mut o = options(&target);
    // The Keep Alive, not the commands' own timeout, finds the silence.
    o.io_timeout = Duration::from_secs(5);
    let mut c = Controller::connect(proxy.addr(), &o).expect("connect");
    fill_read_region(&mut c);
    proxy.stall();
    let before = proxy.accepted();
    let t = Instant::now();
    let mut ops: HashMap<CommandId, Op> = HashMap::new();
    for i in 0..16 {
        let op = Op::nth(i);
        ops.insert(c.submit(op.io()).expect("submit"), op);
    }
    let mut unstalled = None;
    std::thread::scope(|s| {
        let proxy = &proxy;
        let unstalled = &mut unstalled;
        // Answers flow again once the host tries to reconnect (its ICResp waits until then).
        s.spawn(move || {
            eventually("a reconnect", || proxy.accepted() > before);
            proxy.unstall();
            *unstalled = Some(t.elapsed());
        });
        while !ops.is_empty() {
            let done = c.wait(None).expect("a completion");
            ops.remove(&done.id).expect("a command").check(done);
        }
    });
    let elapsed = t.elapsed();
    let unstalled = unstalled.expect("unstalled");
    let events = c.take_events();
    let text = words(&events);
    println!(
        "stalled: reset and reconnect began after {:.0} ms, 16 commands done after {:.0} ms: {}",
        unstalled.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3,
        text.join("; ")
    );
    assert_eq!(c.reconnects(), 1, "{text:?}");
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(
        text[0].starts_with("resetting the controller: ") && text[0].contains("Keep Alive"),
        "{text:?}"
    );
    assert!(text[0].contains("keep-alive timeout"), "{text:?}");
    assert!(
        matches!(events[1], ControllerEvent::Reconnected { reissued: 16, .. }),
        "{text:?}"
    );
    // Keep Alive every KATO / 2, unanswered for the KATO: found within 1.5 KATO of the stall,
    // the reconnect attempt reconnect_delay later.
    assert!(
        unstalled >= o.kato && unstalled < o.kato * 3 / 2 + o.reconnect_delay * 3,
        "{unstalled:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    for slot in 0..8 {
        let at = write_slba(slot) as usize * 512;
        assert!(target.contents(at, IO) == write_data(slot), "slot {slot}");
    }
    assert_eq!(violations(&target), Vec::<String>::new());
}

/// A read the controller holds: after io_timeout the host sends Abort, the controller aborts
/// it (Command Abort Requested, no DNR), and the host issues it again, which completes. No
/// reset; the write issued beside it is not disturbed.
#[test]
fn held_read_is_aborted_then_retried() {
    let target = target();
    let o = options(&target);
    let mut c = Controller::connect(target.addr(), &o).expect("connect");
    fill_read_region(&mut c);
    target.hold_reads(1);
    let t = Instant::now();
    let read = c.submit(Op::Read(5).io()).expect("submit read");
    let write = c.submit(Op::Write(5).io()).expect("submit write");
    let first = c.wait(None).expect("the write");
    assert_eq!(first.id, write, "the write is not held");
    Op::Write(5).check(first);
    eventually("the read held", || target.held_reads() == 1);
    let done = c.wait(Some(read)).expect("the read");
    let elapsed = t.elapsed();
    Op::Read(5).check(done);
    let events = c.take_events();
    let text = words(&events);
    println!(
        "held read: done after {:.0} ms: {}",
        elapsed.as_secs_f64() * 1e3,
        text.join("; ")
    );
    assert_eq!(events.len(), 2, "{text:?}");
    let ControllerEvent::TimedOut {
        command,
        cid,
        waited,
    } = events[0]
    else {
        panic!("{text:?}");
    };
    assert_eq!(command, "Read");
    assert!(waited >= o.io_timeout, "{waited:?}");
    assert_eq!(
        text[0],
        format!(
            "Read (CID {cid}) timed out after {:.1} s; aborting it",
            secs(waited)
        )
    );
    assert_eq!(events[1], ControllerEvent::Aborted { cid });
    assert_eq!(text[1], format!("the controller aborted CID {cid}"));
    assert_eq!((target.aborts(), target.aborted()), (1, 1));
    assert_eq!(target.held_reads(), 0);
    assert_eq!(c.reconnects(), 0);
    assert!(
        elapsed >= o.io_timeout && elapsed < o.io_timeout + Duration::from_millis(500),
        "{elapsed:?}"
    );
    assert_eq!(target.violations(), Vec::<String>::new());
}

/// io_timeout is kept whatever else wakes the host: with no Keep Alive due for a while (KATO
/// 4 s, one every 2 s), a held read must still time out, and be aborted, at io_timeout.
#[test]
fn held_read_times_out_at_io_timeout_between_keep_alives() {
    let target = target();
    let mut o = options(&target);
    o.kato = Duration::from_secs(4);
    let mut c = Controller::connect(target.addr(), &o).expect("connect");
    fill_read_region(&mut c);
    target.hold_reads(1);
    let t = Instant::now();
    let read = c.submit(Op::Read(3).io()).expect("submit");
    let done = c.wait(Some(read)).expect("the read");
    let elapsed = t.elapsed();
    Op::Read(3).check(done);
    let text = words(&c.take_events());
    println!(
        "held read, KATO 4 s: done after {:.0} ms: {}",
        elapsed.as_secs_f64() * 1e3,
        text.join("; ")
    );
    assert_eq!(text.len(), 2, "{text:?}");
    assert_eq!(target.aborted(), 1);
    assert!(
        elapsed < o.io_timeout + Duration::from_millis(200),
        "io_timeout {:?}, aborted and retried after {elapsed:?}",
        o.io_timeout
    );
}

/// A read the controller holds every time: aborted and issued again max_retries times, then
/// it fails with Command Abort Requested; the controller goes on working.
#[test]
fn held_read_fails_after_max_retries() {
    let target = target();
    let mut o = options(&target);
    o.max_retries = 2;
    let mut c = Controller::connect(target.addr(), &o).expect("connect");
    fill_read_region(&mut c);
    target.hold_reads(u32::MAX);
    let t = Instant::now();
    let read = c.submit(Op::Read(7).io()).expect("submit");
    let done = c.wait(Some(read)).expect("the read");
    let elapsed = t.elapsed();
    let msg = done.error_message().expect("failed");
    let text = words(&c.take_events());
    println!(
        "read held every time: {msg} after {:.0} ms: {}",
        elapsed.as_secs_f64() * 1e3,
        text.join("; ")
    );
    let Err(IoError::Status { status, .. }) = done.result else {
        panic!("{msg}");
    };
    assert_eq!((status.sct, status.sc, status.dnr), (0, 0x07, false));
    assert!(
        msg.contains("Command Abort Requested (SCT 0h SC 07h)"),
        "{msg}"
    );
    assert_eq!(done.buffer.map(|b| b.len()), Some(IO as u64), "buffer back");
    // Issued 1 + max_retries times, each timed out and aborted.
    assert_eq!(text.len(), 6, "{text:?}");
    for pair in text.chunks(2) {
        assert!(pair[0].starts_with("Read (CID "), "{text:?}");
        assert!(pair[0].ends_with("; aborting it"), "{text:?}");
        assert!(
            pair[1].starts_with("the controller aborted CID "),
            "{text:?}"
        );
    }
    assert_eq!((target.aborts(), target.aborted()), (3, 3));
    assert_eq!(c.reconnects(), 0);
    assert!(
        elapsed >= o.io_timeout * 3 && elapsed < o.io_timeout * 3 + Duration::from_secs(1),
        "{elapsed:?}"
    );
    target.hold_reads(0);
    let back = c.read(read_slba(7), SgBuffer::zeroed(IO)).expect("read");
    assert!(back.into_vec() == read_data(7));
    assert_eq!(target.violations(), Vec::<String>::new());
}

/// A held read the controller will not abort ("not aborted", DW0 bit 0): the host resets the
/// controller, reconnects, issues the read again, and it completes.
#[test]
fn held_read_not_aborted_resets_and_reissues() {
    let target = target();
    let o = options(&target);
    let mut c = Controller::connect(target.addr(), &o).expect("connect");
    fill_read_region(&mut c);
    target.hold_reads(1);
    target.refuse_aborts(true);
    let t = Instant::now();
    let read = c.submit(Op::Read(9).io()).expect("submit");
    let done = c.wait(Some(read)).expect("the read");
    let elapsed = t.elapsed();
    Op::Read(9).check(done);
    let events = c.take_events();
    let text = words(&events);
    println!(
        "held read not aborted: done after {:.0} ms: {}",
        elapsed.as_secs_f64() * 1e3,
        text.join("; ")
    );
    assert_eq!(events.len(), 3, "{text:?}");
    let ControllerEvent::TimedOut { cid, .. } = events[0] else {
        panic!("{text:?}");
    };
    assert!(
        text[1].starts_with(&format!(
            "resetting the controller: Read (CID {cid}) timed out"
        )),
        "{text:?}"
    );
    assert!(
        text[1].ends_with("the controller did not abort it"),
        "{text:?}"
    );
    assert!(
        matches!(
            events[2],
            ControllerEvent::Reconnected {
                attempts: 1,
                reissued: 1,
                ..
            }
        ),
        "{text:?}"
    );
    assert_eq!(c.reconnects(), 1);
    assert_eq!((target.aborts(), target.aborted()), (1, 0));
    // The held read went with its connection.
    eventually("no read held", || target.held_reads() == 0);
    assert!(
        elapsed >= o.io_timeout + o.reconnect_delay
            && elapsed < o.io_timeout + o.reconnect_delay + Duration::from_millis(500),
        "{elapsed:?}"
    );
    assert_eq!(violations(&target), Vec::<String>::new());
}

/// `close` waits for what is outstanding, then shuts the controller down: CC.SHN, and
/// CSTS.SHST reports the shutdown complete. The target sees exactly one shutdown.
#[test]
fn close_shuts_the_controller_down() {
    let target = target();
    let o = options(&target);
    let mut c = Controller::connect(target.addr(), &o).expect("connect");
    let ids: Vec<CommandId> = (0..8)
        .map(|slot| c.submit(Op::Write(slot).io()).expect("submit"))
        .collect();
    assert_eq!(c.outstanding(), ids.len());
    assert_eq!(target.shutdowns(), 0);
    let t = Instant::now();
    c.close().expect("close");
    println!(
        "close with 8 writes outstanding: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(target.shutdowns(), 1);
    for slot in 0..8 {
        let at = write_slba(slot) as usize * 512;
        assert!(target.contents(at, IO) == write_data(slot), "slot {slot}");
    }
    assert_eq!(target.violations(), Vec::<String>::new());
}
