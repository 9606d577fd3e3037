//! Task management against Debian's tgtd: tgtd is stopped (SIGSTOP) past a read's deadline, so
//! the initiator sends ABORT TASK; continued (SIGCONT), tgtd answers both. Whichever it
//! handles first, the read ends (with its data, or aborted with its buffer), the connection
//! survives, and the read issued again returns the data.

mod common;

use std::process::Command as Process;
use std::time::Duration;

use common::*;
use ulp_ddp_core::SgBuffer;
use ulp_iscsi::blocking::{Direction, Session};
use ulp_iscsi::wire::{Digests, Lun};
use ulp_iscsi::{Command, CommandError, Data, scsi};
use ulp_testbed::peers::{Tgtd, peer_available};

/// Continues the stopped process on drop (a failing test must not leave tgtd stopped).
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = Process::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn tgtd_stopped_past_a_deadline_answers_the_abort_and_the_session_goes_on() {
    if !peer_available("tgtd") || !peer_available("tgtadm") {
        return;
    }
    let tgtd = Tgtd::start(8 << 20, "None");
    let pid = tgtd.pid().expect("tgtd runs");
    let mut cfg = config(&tgtd.iqn, false);
    cfg.task_timeout = Some(Duration::from_millis(500));
    cfg.abort_timeout = Duration::from_secs(10);
    cfg.lu_reset_timeout = Duration::from_secs(10);
    let mut s = Session::connect(("127.0.0.1", tgtd.port), cfg, options(true)).expect("login");
    let lun = Lun::single_level(1);
    s.test_unit_ready(lun).expect("TEST UNIT READY");
    s.set_block_len(lun, 512);
    let data = pattern(64 * 1024, 7);
    s.write(lun, 0, SgBuffer::from_vec(data.clone()))
        .expect("write");
    // Stop tgtd for 2 s: the read's deadline (0.5 s) passes and ABORT TASK goes out.
    assert!(
        Process::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .is_ok_and(|st| st.success())
    );
    let resume = Continue(pid);
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(resume);
    });
    let done = s
        .execute(Command {
            lun,
            cdb: scsi::read_10(0, 128),
            data: Data::Read(SgBuffer::zeroed(64 * 1024)),
        })
        .expect("a completion");
    waker.join().expect("waker");
    eprintln!(
        "the stalled read ended with {:?}",
        done.result.as_ref().map(|o| o.status)
    );
    match done.result {
        Ok(o) => {
            assert!(o.is_good());
            assert_eq!(done.buffer.expect("buffer").into_vec(), data);
        }
        Err(CommandError::Aborted { .. }) => {
            assert_eq!(done.buffer.map(|b| b.len()), Some(64 * 1024));
        }
        Err(e) => panic!("the read: {e}"),
    }
    // On the wire: one immediate ABORT TASK naming the read, answered "Function complete" or
    // "Task does not exist".
    let capture = s.capture().expect("capture").to_vec();
    let sent = headers(&capture, Direction::ToTarget, 0x02);
    assert_eq!(sent.len(), 1, "one TMF request");
    assert_eq!(sent[0][0], 0x42, "immediate");
    assert_eq!(sent[0][1], 0x81, "ABORT TASK");
    let answers = headers(&capture, Direction::FromTarget, 0x22);
    assert_eq!(answers.len(), 1, "one TMF response");
    eprintln!("tgtd answered ABORT TASK with response {}", answers[0][2]);
    assert!(answers[0][2] <= 1, "response {}", answers[0][2]);
    assert_eq!(answers[0][16..20], sent[0][16..20], "the request's ITT");
    let again = s
        .read(lun, 0, SgBuffer::zeroed(64 * 1024))
        .expect("the read again");
    assert_eq!(again.into_vec(), data);
    s.logout().expect("logout");
}

/// The headers of PDUs with `opcode` sent in direction `dir` (no digests).
fn headers(capture: &[(Direction, Vec<u8>)], dir: Direction, opcode: u8) -> Vec<Vec<u8>> {
    let stream: Vec<u8> = capture
        .iter()
        .filter(|(d, _)| *d == dir)
        .flat_map(|(_, b)| b.iter().copied())
        .collect();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(bhs) = stream.get(at..at + 48) {
        let f = ulp_iscsi::wire::bhs::frame(bhs, Digests::NONE).expect("frames");
        if bhs[0] & 0x3F == opcode {
            out.push(bhs.to_vec());
        }
        at += f.total_len;
    }
    out
}
