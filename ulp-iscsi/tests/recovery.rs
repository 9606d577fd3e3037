//! The task-management ladder end to end: the blocking session against the embedded target
//! holding reads (a stalled LUN) and answering, ignoring or rejecting task management. The
//! blocking driver wakes for the connection's timers (deadlines, TMF timeouts, login timeout).

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use ulp_ddp_core::SgBuffer;
use ulp_iscsi::blocking::{Error, Options, Session};
use ulp_iscsi::scsi;
use ulp_iscsi::wire::task_mgmt::TmfFunction;
use ulp_iscsi::wire::{Itt, Lun};
use ulp_iscsi::{Command, CommandError, ConnectionConfig, ConnectionError, Data};
use ulp_testbed::iscsi::{Target, TargetConfig, TmfPolicy};
use ulp_testbed::scripted::ScriptedPeer;

const MS: Duration = Duration::from_millis(1);

fn stalled_target(tmf: TmfPolicy) -> Target {
    Target::start(TargetConfig {
        unit_attention: false,
        stall_reads: 1,
        tmf,
        ..TargetConfig::default()
    })
    .expect("start embedded target")
}

/// A session with short deadlines: 300 ms per command, 300 ms per task management request;
/// without the session's own recovery (re-issue, reinstatement), so that the connection's
/// ladder is what the caller sees.
fn session(t: &Target) -> Session {
    session_with(t, options_without_reinstatement())
}

fn session_with(t: &Target, options: Options) -> Session {
    let mut cfg = config(t.iqn(), false);
    cfg.task_timeout = Some(300 * MS);
    cfg.abort_timeout = 300 * MS;
    cfg.lu_reset_timeout = 300 * MS;
    let mut s = Session::connect(t.addr(), cfg, options).expect("login");
    s.set_block_len(Lun::default(), 512);
    s
}

fn read_cmd(lba: u32, len: usize) -> Command {
    Command {
        lun: Lun::default(),
        cdb: scsi::read_10(lba, (len / 512) as u16),
        data: Data::Read(SgBuffer::from_vec(vec![0xEE; len])),
    }
}

/// Writes a pattern, then reads it back while the target holds the read: the completion (its
/// error) and how long it took.
fn stalled_read(s: &mut Session) -> (ulp_iscsi::Completion, Duration) {
    s.write(Lun::default(), 0, SgBuffer::from_vec(pattern(4096, 3)))
        .expect("write");
    let t = Instant::now();
    let done = s.execute(read_cmd(0, 4096)).expect("a completion");
    (done, t.elapsed())
}

/// The session still works after the recovery: the read the target held is re-issued and
/// returns the data.
fn reissue_verifies(s: &mut Session) {
    let back = s
        .read(Lun::default(), 0, SgBuffer::zeroed(4096))
        .expect("the re-issued read");
    assert_eq!(back.into_vec(), pattern(4096, 3));
}

#[test]
fn a_stalled_read_is_aborted_and_its_buffer_comes_back() {
    let t = stalled_target(TmfPolicy::Answer);
    let mut s = session(&t);
    let (done, took) = stalled_read(&mut s);
    let Err(CommandError::Aborted {
        itt,
        lun,
        function,
        outstanding,
    }) = done.result
    else {
        panic!("expected an aborted read, got {:?}", done.result);
    };
    assert_eq!((lun, function), (Lun::default(), TmfFunction::AbortTask));
    assert!(
        outstanding >= 300 * MS && took < Duration::from_secs(5),
        "{outstanding:?} {took:?}"
    );
    let b = done.buffer.expect("the buffer comes back").into_vec();
    assert_eq!(b.len(), 4096);
    assert!(
        b.iter().all(|&x| x == 0xEE),
        "the target sent nothing for it"
    );
    // What the target received: one immediate ABORT TASK naming the read.
    let tmfs = t.tmf_requests();
    assert_eq!(tmfs.len(), 1, "{tmfs:?}");
    assert_eq!(tmfs[0].function, TmfFunction::AbortTask);
    assert!(tmfs[0].immediate);
    assert_eq!(tmfs[0].ref_task_tag, Itt(itt));
    assert_eq!(tmfs[0].lun, Lun::default());
    assert!(ulp_iscsi::serial::lt(tmfs[0].ref_cmd_sn, tmfs[0].cmd_sn));
    assert_eq!(s.connection().engine().registered(), 0);
    reissue_verifies(&mut s);
    s.logout().expect("logout");
}

#[test]
fn an_ignored_abort_is_followed_by_a_lun_reset() {
    let t = stalled_target(TmfPolicy::IgnoreAbortTask);
    let mut s = session(&t);
    let (done, took) = stalled_read(&mut s);
    assert!(
        matches!(
            done.result,
            Err(CommandError::Aborted {
                function: TmfFunction::LogicalUnitReset,
                ..
            })
        ),
        "{:?}",
        done.result
    );
    assert!(took >= 600 * MS, "deadline and abort timeout: {took:?}");
    assert_eq!(done.buffer.map(|b| b.len()), Some(4096));
    let functions: Vec<_> = t.tmf_requests().iter().map(|r| r.function).collect();
    assert_eq!(
        functions,
        [TmfFunction::AbortTask, TmfFunction::LogicalUnitReset]
    );
    reissue_verifies(&mut s);
    s.logout().expect("logout");
}

#[test]
fn a_rejected_abort_is_followed_by_a_lun_reset() {
    let t = stalled_target(TmfPolicy::RejectAbortTask);
    let mut s = session(&t);
    let (done, took) = stalled_read(&mut s);
    assert!(
        matches!(
            done.result,
            Err(CommandError::Aborted {
                function: TmfFunction::LogicalUnitReset,
                ..
            })
        ),
        "{:?}",
        done.result
    );
    assert!(
        took < 600 * MS + Duration::from_secs(2),
        "no abort timeout: {took:?}"
    );
    reissue_verifies(&mut s);
}

#[test]
fn a_target_that_answers_no_task_management_fails_the_connection_in_words() {
    let t = stalled_target(TmfPolicy::IgnoreAll);
    let mut s = session(&t);
    let (done, took) = stalled_read(&mut s);
    let Err(CommandError::ConnectionLost(cause)) = &done.result else {
        panic!("expected the connection's end, got {:?}", done.result);
    };
    let ConnectionError::LunResetFailed { abort_itt, .. } = **cause else {
        panic!("expected LunResetFailed, got {cause}");
    };
    assert_eq!(
        cause.to_string(),
        format!(
            "LOGICAL UNIT RESET of LUN 0 got no response within 0.3 s after ABORT TASK of ITT {abort_itt:#x} got no response within 0.3 s"
        )
    );
    assert!(
        took >= 900 * MS && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(done.buffer.map(|b| b.len()), Some(4096));
    // Later commands fail at once with the same cause.
    match s.test_unit_ready(Lun::default()) {
        Err(Error::Command {
            error: CommandError::ConnectionLost(c),
            ..
        }) => assert!(matches!(*c, ConnectionError::LunResetFailed { .. }), "{c}"),
        other => panic!("expected the connection's cause, got {other:?}"),
    }
}

#[test]
fn a_login_without_answer_ends_at_the_login_timeout() {
    let peer = ScriptedPeer::start(|s| {
        let mut bhs = [0u8; 48];
        s.read_exact(&mut bhs).expect("Login Request");
        // Keep the connection open, silent, until the initiator gives up.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let mut config =
        ConnectionConfig::normal("iqn.2024-01.io.example:host", "iqn.2024-01.io.example:t");
    config.login_timeout = 400 * MS;
    let options = Options::default();
    let t = Instant::now();
    let err = Session::connect(peer.addr(), config, options).unwrap_err();
    let took = t.elapsed();
    peer.finish();
    assert!(
        matches!(
            err,
            Error::Connection(ConnectionError::LoginTimeout {
                stage: 0,
                rounds: 0,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "connection: the login did not reach full feature phase within 0.4 s: no Login Response to the security negotiation request (stage 0) after 0 responses"
    );
    assert!(
        took >= 400 * MS && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// Among several reads in flight, the one the target holds is aborted; the others complete
/// with their data, and the aborted one, issued again, too.
#[test]
fn only_the_stalled_read_among_many_is_aborted() {
    let t = stalled_target(TmfPolicy::Answer);
    let mut s = session(&t);
    let data = pattern(8 * 4096, 5);
    s.write(Lun::default(), 0, SgBuffer::from_vec(data.clone()))
        .expect("write");
    let ids: Vec<_> = (0..8u32)
        .map(|i| s.submit(read_cmd(i * 8, 4096)).expect("submitted"))
        .collect();
    let mut aborted = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let done = s.wait(*id).expect("a completion");
        match done.result {
            Ok(o) => {
                assert!(o.is_good());
                assert_eq!(
                    done.buffer.unwrap().into_vec(),
                    data[i * 4096..(i + 1) * 4096]
                );
            }
            Err(CommandError::Aborted { .. }) => {
                assert_eq!(done.buffer.map(|b| b.len()), Some(4096));
                aborted.push(i);
            }
            Err(e) => panic!("read {i}: {e}"),
        }
    }
    assert_eq!(aborted, [0], "the first read was held");
    let again = s
        .read(Lun::default(), 0, SgBuffer::zeroed(4096))
        .expect("issued again");
    assert_eq!(again.into_vec(), data[..4096]);
    s.logout().expect("logout");
}

/// With the session's recovery on (the default), an aborted read is issued again by the
/// session itself (the SCSI layer's retry): the caller sees the data, and the steps reported
/// in words.
#[test]
fn the_session_reissues_an_aborted_read_and_reports_the_steps() {
    let t = stalled_target(TmfPolicy::Answer);
    let mut s = session_with(&t, options(false));
    s.write(Lun::default(), 0, SgBuffer::from_vec(pattern(4096, 3)))
        .expect("write");
    let back = s
        .read(Lun::default(), 0, SgBuffer::zeroed(4096))
        .expect("the read, issued again after its abort");
    assert_eq!(back.into_vec(), pattern(4096, 3));
    let steps: Vec<String> = s.take_events().iter().map(ToString::to_string).collect();
    assert!(steps.iter().any(|e| e.contains("ABORT TASK")), "{steps:#?}");
    assert_eq!(t.tmf_requests().len(), 1);
    s.logout().expect("logout");
}
