//! Timers and task management in the sans-IO connection, with the test driving time: command
//! deadlines, ABORT TASK, LOGICAL UNIT RESET, the connection failing when both fail, login and
//! logout timeouts, and `poll_timeout` itself.

mod common;

use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{QueueId, SansIo, SgBuffer};
use ulp_iscsi::connection::{Phase, Recovery, TmfFailure};
use ulp_iscsi::wire::data_in::{DataInRepr, DataInStatus};
use ulp_iscsi::wire::login::Stage;
use ulp_iscsi::wire::task_mgmt::{TmfFunction, TmfRequestRepr, TmfResponseRepr};
use ulp_iscsi::wire::{Digests, Itt, Lun, Ttt};
use ulp_iscsi::{
    Command, CommandError, CommandId, Completion, Connection, ConnectionConfig, ConnectionError,
    Data, Event, scsi,
};

const SECOND: Duration = Duration::from_secs(1);

fn login_response(itt: u32, current: Stage, next: Stage, max_cmd_sn: u32) -> Vec<u8> {
    let text: &[u8] = if next == Stage::FullFeature {
        common::ANSWERS
    } else {
        b""
    };
    common::login_response(itt, current, next, max_cmd_sn, text)
}

/// Queue 8 deep, no pings (so that only the timers under test run).
fn config() -> ConnectionConfig {
    let mut config = ConnectionConfig::normal("iqn.i:x", "iqn.t:y");
    config.queue_id = QueueId(1);
    config.queue_depth = 8;
    config.noop_interval = None;
    config
}

fn receive(c: &mut Connection<SwBackend>, bytes: &[u8]) {
    c.handle_bytes(bytes);
}

fn next_itt(c: &mut Connection<SwBackend>) -> u32 {
    let t = c.poll_transmit().expect("a PDU to send");
    u32::from_be_bytes(t.parts()[0][16..20].try_into().unwrap())
}

fn logged_in(max_cmd_sn: u32) -> Connection<SwBackend> {
    logged_in_with(config(), max_cmd_sn)
}

fn logged_in_with(config: ConnectionConfig, max_cmd_sn: u32) -> Connection<SwBackend> {
    let mut c = Connection::new(config, SwBackend::new());
    c.start_login().unwrap();
    let itt = next_itt(&mut c);
    receive(
        &mut c,
        &login_response(itt, Stage::Security, Stage::Operational, 1),
    );
    assert!(c.poll_transmit().is_some(), "operational request");
    receive(
        &mut c,
        &login_response(itt, Stage::Operational, Stage::FullFeature, max_cmd_sn),
    );
    assert!(matches!(c.poll_event(), Some(Event::Connected)));
    assert_eq!(c.phase(), Phase::FullFeature);
    c
}

/// Submits a read of `len` bytes into a buffer of 0xEE on `lun`; its id.
fn submit_read(c: &mut Connection<SwBackend>, lun: Lun, len: usize) -> CommandId {
    c.submit(Command {
        lun,
        cdb: scsi::read_10(0, (len / 512) as u16),
        data: Data::Read(SgBuffer::from_vec(vec![0xEE; len])),
    })
}

/// Every PDU waiting to be sent: (header, payload length).
fn sent(c: &mut Connection<SwBackend>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(t) = c.poll_transmit() {
        out.push(t.parts()[0].to_vec());
    }
    out
}

/// A read handed out: its id and ITT.
fn read(c: &mut Connection<SwBackend>, lun: Lun, len: usize) -> (CommandId, u32) {
    let id = submit_read(c, lun, len);
    let pdus = sent(c);
    assert_eq!(pdus.len(), 1);
    assert_eq!(pdus[0][0] & 0x3F, 0x01, "a SCSI Command");
    (id, u32::from_be_bytes(pdus[0][16..20].try_into().unwrap()))
}

fn events(c: &mut Connection<SwBackend>) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn recoveries(events: &[Event]) -> Vec<Recovery> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Recovery(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn completions(events: Vec<Event>) -> Vec<Completion> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Completed(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The one Task Management Function Request among `pdus`, parsed.
fn tmf_request(pdus: &[Vec<u8>]) -> TmfRequestRepr {
    let tmfs: Vec<_> = pdus.iter().filter(|h| h[0] & 0x3F == 0x02).collect();
    assert_eq!(tmfs.len(), 1, "one TMF request");
    TmfRequestRepr::parse(tmfs[0], Digests::NONE).expect("a valid TMF request")
}

fn tmf_response(itt: u32, response: u8, stat_sn: u32) -> Vec<u8> {
    let r = TmfResponseRepr {
        response,
        itt: Itt(itt),
        stat_sn,
        exp_cmd_sn: 2,
        max_cmd_sn: 50,
    };
    let mut b = vec![0; 48];
    r.emit(&mut b, Digests::NONE).unwrap();
    b
}

fn data_in(itt: u32, data: &[u8], stat_sn: Option<u32>) -> Vec<u8> {
    let r = DataInRepr {
        final_: stat_sn.is_some(),
        ack: false,
        status: stat_sn.map(|stat_sn| DataInStatus {
            status: 0,
            stat_sn,
            overflow: false,
            underflow: false,
            residual: 0,
        }),
        lun: Lun::default(),
        itt: Itt(itt),
        ttt: Ttt::RESERVED,
        exp_cmd_sn: 2,
        max_cmd_sn: 50,
        data_sn: 0,
        buffer_offset: 0,
        data,
    };
    let mut b = vec![0; r.buffer_len(Digests::NONE)];
    r.emit(&mut b, Digests::NONE).unwrap();
    b
}

/// Drives `c` to `t0 + 30 s`, when the read `itt` times out: the ABORT TASK request.
fn time_out(c: &mut Connection<SwBackend>, t0: Instant, id: CommandId, itt: u32) -> TmfRequestRepr {
    c.handle_timeout(t0);
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + 30 * SECOND),
        "the read's deadline"
    );
    c.handle_timeout(t0 + 29 * SECOND);
    assert!(c.poll_transmit().is_none(), "nothing before the deadline");
    c.handle_timeout(t0 + 30 * SECOND);
    let ev = events(c);
    assert_eq!(
        recoveries(&ev),
        [
            Recovery::TaskTimedOut {
                id,
                itt,
                lun: Lun::default(),
                waited: 30 * SECOND
            },
            Recovery::AbortTaskSent {
                id,
                itt,
                lun: Lun::default()
            }
        ]
    );
    assert_eq!(
        recovery_text(&ev[0]),
        format!(
            "command {} (ITT {itt:#x} on LUN 0) got no answer within 30.0 s: aborting it",
            id.0
        )
    );
    let req = tmf_request(&sent(c));
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + 45 * SECOND),
        "the abort timeout"
    );
    req
}

/// A recovery event's words.
fn recovery_text(e: &Event) -> String {
    match e {
        Event::Recovery(r) => r.to_string(),
        other => panic!("not a recovery event: {other:?}"),
    }
}

#[test]
fn a_read_past_its_deadline_is_aborted_and_its_buffer_comes_back() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 4096);
    let req = time_out(&mut c, t0, id, itt);
    // ABORT TASK: immediate, the task's ITT, LUN and CmdSN, the next CmdSN not consumed.
    assert_eq!(req.function, TmfFunction::AbortTask);
    assert!(req.immediate);
    assert_eq!(req.ref_task_tag, Itt(itt));
    assert_eq!(req.ref_cmd_sn, 1, "the read's CmdSN");
    assert_eq!(req.cmd_sn, 2, "an immediate PDU carries the next CmdSN");
    assert_eq!(req.lun, Lun::default());
    assert!(
        req.itt.0 >= 0x8000_0000 && req.itt != Itt::RESERVED,
        "{:#x}",
        req.itt.0
    );
    assert_eq!(c.sequence_numbers().0, 2, "CmdSN not advanced");
    // Some data arrived before the abort was answered; then Function complete.
    receive(&mut c, &data_in(itt, &[7; 512], None));
    c.handle_timeout(t0 + 31 * SECOND);
    receive(&mut c, &tmf_response(req.itt.0, 0, 101));
    let ev = events(&mut c);
    assert_eq!(
        recoveries(&ev),
        [Recovery::TaskAborted {
            id,
            itt,
            response: 0,
            completed_first: false
        }]
    );
    let done = completions(ev);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, id);
    assert_eq!(
        done[0].result,
        Err(CommandError::Aborted {
            itt,
            lun: Lun::default(),
            function: TmfFunction::AbortTask,
            outstanding: 31 * SECOND,
        })
    );
    assert_eq!(
        done[0].result.as_ref().unwrap_err().to_string(),
        format!(
            "aborted (ABORT TASK) after 31.0 s outstanding: ITT {itt:#x} on LUN 0 had no answer within its deadline"
        )
    );
    let b = done
        .into_iter()
        .next()
        .unwrap()
        .buffer
        .expect("the buffer comes back");
    let b = b.into_vec();
    assert_eq!(b.len(), 4096);
    assert!(b[..512].iter().all(|&x| x == 7) && b[512..].iter().all(|&x| x == 0xEE));
    assert_eq!(c.engine().registered(), 0);
    assert_eq!(c.phase(), Phase::FullFeature);
    assert_eq!(c.outstanding(), 0);
    assert_eq!(c.poll_timeout(), None, "no timer left");
    // The connection goes on: the next read works, and its tag is not the aborted one.
    let (id2, itt2) = read(&mut c, Lun::default(), 512);
    assert_ne!(itt2, itt, "the aborted task's tag is reused last");
    receive(&mut c, &data_in(itt2, &[9; 512], Some(102)));
    let done = completions(events(&mut c));
    assert_eq!(done[0].id, id2);
    assert!(done[0].result.as_ref().unwrap().is_good());
}

#[test]
fn task_does_not_exist_also_ends_the_task() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 1024);
    let req = time_out(&mut c, t0, id, itt);
    receive(&mut c, &tmf_response(req.itt.0, 1, 101));
    let ev = events(&mut c);
    assert_eq!(
        recovery_text(&ev[0]),
        format!(
            "ABORT TASK of ITT {itt:#x} answered \"Task does not exist\" (1): command {} aborted",
            id.0
        )
    );
    let done = completions(ev);
    assert!(matches!(
        done[0].result,
        Err(CommandError::Aborted {
            function: TmfFunction::AbortTask,
            ..
        })
    ));
    assert_eq!(done[0].buffer.as_ref().map(SgBuffer::len), Some(1024));
    assert_eq!(c.phase(), Phase::FullFeature);
}

#[test]
fn a_response_that_races_the_abort_completes_the_command_normally() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 512);
    let req = time_out(&mut c, t0, id, itt);
    // The target answered the read before it saw the abort.
    receive(&mut c, &data_in(itt, &[5; 512], Some(101)));
    let done = completions(events(&mut c));
    assert_eq!(done.len(), 1);
    assert!(done[0].result.as_ref().unwrap().is_good());
    assert_eq!(done[0].buffer.as_ref().map(SgBuffer::len), Some(512));
    // A new read takes a tag meanwhile; the abort's answer must not touch it.
    let (id2, itt2) = read(&mut c, Lun::default(), 512);
    receive(&mut c, &tmf_response(req.itt.0, 0, 102));
    let ev = events(&mut c);
    assert_eq!(
        recoveries(&ev),
        [Recovery::TaskAborted {
            id,
            itt,
            response: 0,
            completed_first: true
        }]
    );
    assert!(completions(ev).is_empty(), "nothing else completes");
    receive(&mut c, &data_in(itt2, &[6; 512], Some(103)));
    let done = completions(events(&mut c));
    assert_eq!(done[0].id, id2);
    assert!(done[0].result.as_ref().unwrap().is_good());
    assert_eq!(c.phase(), Phase::FullFeature);
}

#[test]
fn an_abort_without_answer_is_followed_by_a_lun_reset_that_ends_every_command_on_the_lun() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let lun1 = Lun::single_level(1);
    let (id, itt) = read(&mut c, Lun::default(), 512);
    c.handle_timeout(t0);
    // A second read on the same LUN and one on another LUN, started 10 s later.
    c.handle_timeout(t0 + 10 * SECOND);
    let (id2, itt2) = read(&mut c, Lun::default(), 512);
    let (id3, itt3) = read(&mut c, lun1, 512);
    c.handle_timeout(t0 + 10 * SECOND);
    c.handle_timeout(t0 + 30 * SECOND);
    let abort = tmf_request(&sent(&mut c));
    let _ = events(&mut c);
    c.handle_timeout(t0 + 44 * SECOND);
    assert!(c.poll_transmit().is_none());
    // 15 s without an answer.
    c.handle_timeout(t0 + 45 * SECOND);
    let ev = events(&mut c);
    let rec = recoveries(&ev);
    // The other reads' deadlines (t0 + 40 s) passed meanwhile; their aborts wait.
    assert!(rec.contains(&Recovery::AbortFailed {
        id,
        itt,
        lun: Lun::default(),
        failure: TmfFailure::NoResponse(15 * SECOND)
    }));
    assert!(rec.contains(&Recovery::LunResetSent {
        lun: Lun::default(),
        commands: 2
    }));
    let reset = tmf_request(&sent(&mut c));
    assert_eq!(reset.function, TmfFunction::LogicalUnitReset);
    assert_eq!(reset.lun, Lun::default());
    assert_eq!(reset.ref_task_tag, Itt::RESERVED);
    assert_eq!(
        reset.ref_cmd_sn, 0,
        "RefCmdSN is reserved outside ABORT TASK (RFC 7143 §11.5)"
    );
    assert!(reset.immediate);
    assert_ne!(reset.itt, abort.itt, "a new ITT for the reset");
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + 75 * SECOND),
        "the LU reset timeout"
    );
    // The abort's late answer is ignored; the reset's completes both reads on LUN 0.
    receive(&mut c, &tmf_response(abort.itt.0, 0, 101));
    assert!(events(&mut c).is_empty());
    c.handle_timeout(t0 + 46 * SECOND);
    receive(&mut c, &tmf_response(reset.itt.0, 0, 102));
    let ev = events(&mut c);
    assert!(recoveries(&ev).contains(&Recovery::LunResetDone {
        lun: Lun::default(),
        aborted: 2
    }));
    let mut done = completions(ev);
    done.sort_by_key(|d| d.id);
    assert_eq!(done.iter().map(|d| d.id).collect::<Vec<_>>(), [id, id2]);
    assert_eq!(
        done[0].result,
        Err(CommandError::Aborted {
            itt,
            lun: Lun::default(),
            function: TmfFunction::LogicalUnitReset,
            outstanding: 46 * SECOND
        })
    );
    assert_eq!(
        done[1].result.as_ref().unwrap_err().to_string(),
        format!("aborted (LOGICAL UNIT RESET of LUN 0) after 36.0 s outstanding: ITT {itt2:#x}")
    );
    assert!(
        done.iter()
            .all(|d| d.buffer.as_ref().map(SgBuffer::len) == Some(512))
    );
    // The read on LUN 1 timed out too: its own ABORT TASK goes out now.
    let next = tmf_request(&sent(&mut c));
    assert_eq!(
        (next.function, next.ref_task_tag, next.lun),
        (TmfFunction::AbortTask, Itt(itt3), lun1)
    );
    receive(&mut c, &tmf_response(next.itt.0, 0, 103));
    let done = completions(events(&mut c));
    assert_eq!(done[0].id, id3);
    assert_eq!(c.phase(), Phase::FullFeature);
    assert_eq!(c.engine().registered(), 0);
}

#[test]
fn a_rejected_abort_is_followed_by_a_lun_reset() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 512);
    let abort = time_out(&mut c, t0, id, itt);
    receive(&mut c, &tmf_response(abort.itt.0, 255, 101));
    let ev = events(&mut c);
    assert_eq!(
        recovery_text(&ev[0]),
        format!(
            "ABORT TASK of ITT {itt:#x} (command {}) was answered \"Function rejected\" (response 255): LOGICAL UNIT RESET of LUN 0 follows",
            id.0
        )
    );
    let reset = tmf_request(&sent(&mut c));
    assert_eq!(reset.function, TmfFunction::LogicalUnitReset);
    // The reset's timer starts at the next handle_timeout (the answer came with the bytes).
    assert_eq!(c.poll_timeout(), Some(t0 + 30 * SECOND));
    c.handle_timeout(t0 + 31 * SECOND);
    assert_eq!(c.poll_timeout(), Some(t0 + 61 * SECOND));
    receive(&mut c, &tmf_response(reset.itt.0, 0, 102));
    let done = completions(events(&mut c));
    assert!(matches!(
        done[0].result,
        Err(CommandError::Aborted {
            function: TmfFunction::LogicalUnitReset,
            ..
        })
    ));
}

#[test]
fn a_lun_reset_without_answer_fails_the_connection_in_words() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 512);
    time_out(&mut c, t0, id, itt);
    c.handle_timeout(t0 + 45 * SECOND);
    let _ = sent(&mut c);
    let _ = events(&mut c);
    c.handle_timeout(t0 + 74 * SECOND);
    assert_eq!(c.phase(), Phase::FullFeature);
    c.handle_timeout(t0 + 75 * SECOND);
    assert_eq!(c.phase(), Phase::Failed);
    let err = c.failure().cloned().expect("a failure");
    let words = format!(
        "LOGICAL UNIT RESET of LUN 0 got no response within 30.0 s after ABORT TASK of ITT {itt:#x} got no response within 15.0 s"
    );
    assert_eq!(err.to_string(), words);
    let ev = events(&mut c);
    assert!(recoveries(&ev).contains(&Recovery::LunResetFailed {
        lun: Lun::default(),
        failure: TmfFailure::NoResponse(30 * SECOND)
    }));
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Closed(e) if e.to_string() == words))
    );
    let done = completions(ev);
    assert_eq!(
        done[0].result,
        Err(CommandError::ConnectionLost(Box::new(err)))
    );
    assert_eq!(done[0].buffer.as_ref().map(SgBuffer::len), Some(512));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_late_pdu_for_an_aborted_task_completes_no_other_command() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 512);
    let abort = time_out(&mut c, t0, id, itt);
    let (other, other_itt) = read(&mut c, Lun::default(), 512);
    assert_ne!(other_itt, itt);
    receive(&mut c, &tmf_response(abort.itt.0, 0, 101));
    let done = completions(events(&mut c));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, id);
    // RFC 7143: nothing for the aborted task after the TMF response. A target that sends
    // its data anyway breaks the protocol: the connection fails; the other read's buffer is
    // untouched and comes back.
    receive(&mut c, &data_in(itt, &[1; 512], Some(102)));
    assert_eq!(c.phase(), Phase::Failed);
    let done = completions(events(&mut c));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, other);
    assert!(matches!(
        done[0].result,
        Err(CommandError::ConnectionLost(_))
    ));
    let b = done.into_iter().next().unwrap().buffer.unwrap().into_vec();
    assert!(b.iter().all(|&x| x == 0xEE), "the late data went nowhere");
    assert_eq!(c.engine().registered(), 0);
}

#[test]
fn task_management_goes_out_with_the_window_closed_and_a_full_queue() {
    // MaxCmdSN 8: eight reads take the window and every tag (the queue is 8 deep).
    let mut c = logged_in(8);
    let t0 = Instant::now();
    let ids: Vec<_> = (0..9)
        .map(|_| submit_read(&mut c, Lun::default(), 512))
        .collect();
    let pdus = sent(&mut c);
    assert_eq!(pdus.len(), 8);
    assert_eq!(
        c.outstanding(),
        9,
        "the ninth waits for a tag and the window"
    );
    c.handle_timeout(t0);
    c.handle_timeout(t0 + 30 * SECOND);
    let ev = events(&mut c);
    let timed_out = recoveries(&ev)
        .iter()
        .filter(|r| matches!(r, Recovery::TaskTimedOut { .. }))
        .count();
    assert_eq!(timed_out, 8, "the waiting command does not count");
    let req = tmf_request(&sent(&mut c));
    assert_eq!(req.function, TmfFunction::AbortTask);
    assert!(req.itt.0 >= 0x8000_0000, "no command tag needed");
    // The answer frees a tag; the ninth read goes out (the window opened with the answer).
    receive(&mut c, &tmf_response(req.itt.0, 0, 101));
    let done = completions(events(&mut c));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, ids[0]);
    let pdus = sent(&mut c);
    assert!(pdus.iter().any(|h| h[0] & 0x3F == 0x01), "the ninth read");
    assert!(
        pdus.iter().any(|h| h[0] & 0x3F == 0x02),
        "the next ABORT TASK"
    );
}

#[test]
fn the_login_must_reach_full_feature_phase_within_the_login_timeout() {
    let mut c = Connection::new(config(), SwBackend::new());
    c.start_login().unwrap();
    let itt = next_itt(&mut c);
    let t0 = Instant::now();
    c.handle_timeout(t0);
    assert_eq!(c.poll_timeout(), Some(t0 + 15 * SECOND));
    receive(
        &mut c,
        &login_response(itt, Stage::Security, Stage::Operational, 1),
    );
    assert!(c.poll_transmit().is_some(), "operational request");
    c.handle_timeout(t0 + 14 * SECOND);
    assert_eq!(c.phase(), Phase::Login);
    c.handle_timeout(t0 + 15 * SECOND);
    assert_eq!(c.phase(), Phase::Failed);
    let err = c.failure().cloned().unwrap();
    assert_eq!(
        err,
        ConnectionError::LoginTimeout {
            stage: 1,
            rounds: 1,
            waited: 15 * SECOND
        }
    );
    assert_eq!(
        err.to_string(),
        "the login did not reach full feature phase within 15.0 s: no Login Response to the operational negotiation request (stage 1) after 1 responses"
    );
    assert_eq!(c.poll_timeout(), None);
    // Before any time was given, there is nothing to wait for but the first time.
    let mut c = Connection::new(config(), SwBackend::new());
    c.start_login().unwrap();
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(t0);
    assert_eq!(c.poll_timeout(), Some(t0 + 15 * SECOND));
}

#[test]
fn an_unanswered_logout_after_all_io_is_a_clean_end_with_a_warning() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    c.handle_timeout(t0);
    c.logout().unwrap();
    assert!(c.poll_transmit().is_some());
    assert_eq!(
        c.poll_timeout(),
        Some(t0),
        "the logout timer starts at the next time"
    );
    c.handle_timeout(t0 + SECOND);
    assert_eq!(c.poll_timeout(), Some(t0 + 16 * SECOND));
    c.handle_timeout(t0 + 16 * SECOND);
    assert_eq!(c.phase(), Phase::Closed);
    let ev = events(&mut c);
    assert_eq!(
        recoveries(&ev),
        [Recovery::LogoutUnanswered {
            waited: 15 * SECOND
        }]
    );
    assert_eq!(
        recovery_text(&ev[0]),
        "warning: no Logout Response within 15.0 s; every command had completed, so the session ended cleanly"
    );
    assert!(matches!(ev[1], Event::Closed(ConnectionError::LoggedOut)));
    assert_eq!(c.failure(), None);
}

#[test]
fn an_unanswered_logout_with_commands_outstanding_is_a_failure() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, _) = read(&mut c, Lun::default(), 512);
    c.handle_timeout(t0);
    c.logout().unwrap();
    let _ = sent(&mut c);
    c.handle_timeout(t0);
    c.handle_timeout(t0 + 15 * SECOND);
    assert_eq!(c.phase(), Phase::Failed);
    let err = c.failure().cloned().unwrap();
    assert_eq!(
        err.to_string(),
        "no Logout Response within 15.0 s with 1 SCSI command(s) still outstanding"
    );
    let done = completions(events(&mut c));
    assert_eq!(done[0].id, id);
    assert_eq!(
        done[0].result,
        Err(CommandError::ConnectionLost(Box::new(err)))
    );
    assert!(done[0].buffer.is_some());
}

#[test]
fn a_target_that_closes_instead_of_answering_the_logout_ends_cleanly_with_a_warning() {
    let mut c = logged_in(50);
    c.logout().unwrap();
    let _ = sent(&mut c);
    c.handle_received(Ok(0));
    assert_eq!(c.phase(), Phase::Closed);
    let ev = events(&mut c);
    assert_eq!(recoveries(&ev), [Recovery::ClosedInsteadOfLogoutResponse]);
    assert!(matches!(ev[1], Event::Closed(ConnectionError::LoggedOut)));
    // With a command outstanding, the same close is a failure.
    let mut c = logged_in(50);
    read(&mut c, Lun::default(), 512);
    c.logout().unwrap();
    c.handle_received(Ok(0));
    assert_eq!(c.failure(), Some(&ConnectionError::PeerClosed));
    // A close before the Logout Request went out answers nothing: a failure, not a logout
    // (found by the iscsi_receive fuzz target).
    let mut c = logged_in(50);
    c.logout().unwrap();
    c.handle_received(Ok(0));
    assert_eq!(c.failure(), Some(&ConnectionError::PeerClosed));
    assert!(recoveries(&events(&mut c)).is_empty());
}

/// `poll_timeout` never names a time before the last `handle_timeout`, and after
/// `handle_timeout(t)` it names a time after `t` (or none): a driver that sleeps until it never
/// spins. Driven through a whole ladder with pings on.
#[test]
fn poll_timeout_is_never_in_the_past_and_never_spins() {
    let mut config = config();
    config.noop_interval = Some(5 * SECOND);
    let mut c = logged_in_with(config, 50);
    let t0 = Instant::now();
    read(&mut c, Lun::default(), 512);
    let mut now = t0;
    c.handle_timeout(now);
    let mut turns = 0;
    while let Some(next) = c.poll_timeout() {
        assert!(next > now, "turn {turns}: {next:?} is not after {now:?}");
        now = next;
        c.handle_timeout(now);
        // Answer pings (so that only the ladder ends the connection).
        for h in sent(&mut c) {
            if h[0] & 0x3F == 0x00 {
                let itt = u32::from_be_bytes(h[16..20].try_into().unwrap());
                let nop = ulp_iscsi::wire::nop::NopInRepr {
                    lun: Lun::default(),
                    itt: Itt(itt),
                    ttt: Ttt::RESERVED,
                    stat_sn: 101 + turns,
                    exp_cmd_sn: 2,
                    max_cmd_sn: 50,
                    data: &[],
                };
                let mut b = vec![0; 48];
                nop.emit(&mut b, Digests::NONE).unwrap();
                receive(&mut c, &b);
            }
        }
        turns += 1;
        assert!(turns < 100, "the ladder ends");
    }
    // 30 s deadline, 15 s abort, 30 s reset: the connection failed at t0 + 75 s.
    assert_eq!(c.phase(), Phase::Failed);
    assert_eq!(now, t0 + 75 * SECOND);
    assert!(matches!(
        c.failure(),
        Some(ConnectionError::LunResetFailed { .. })
    ));
}

#[test]
fn no_deadline_without_a_task_timeout() {
    let mut config = config();
    config.task_timeout = None;
    let mut c = logged_in_with(config, 50);
    read(&mut c, Lun::default(), 512);
    c.handle_timeout(Instant::now());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_reject_of_the_abort_is_a_failed_abort() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 512);
    let abort = time_out(&mut c, t0, id, itt);
    let mut header = vec![0; 48];
    abort.emit(&mut header, Digests::NONE).unwrap();
    let reject = ulp_iscsi::wire::reject::RejectRepr {
        reason: ulp_iscsi::wire::reject::RejectReason::ImmediateCommandReject,
        stat_sn: 101,
        exp_cmd_sn: 2,
        max_cmd_sn: 50,
        data_sn: 0,
        rejected_header: &header,
    };
    let mut b = vec![0; reject.buffer_len(Digests::NONE)];
    reject.emit(&mut b, Digests::NONE).unwrap();
    receive(&mut c, &b);
    assert_eq!(c.phase(), Phase::FullFeature, "only the abort failed");
    let ev = events(&mut c);
    assert!(matches!(
        recoveries(&ev)[0],
        Recovery::AbortFailed {
            failure: TmfFailure::Rejected(
                ulp_iscsi::wire::reject::RejectReason::ImmediateCommandReject
            ),
            ..
        }
    ));
    let reset = tmf_request(&sent(&mut c));
    assert_eq!(reset.function, TmfFunction::LogicalUnitReset);
}

/// A write being aborted: the target's R2T before the answer is still answered (standard
/// abort semantics); after "Function complete" nothing of the write goes out, and its buffer
/// comes back.
#[test]
fn an_aborted_write_sends_no_more_data_and_hands_its_buffer_back() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let id = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::write_10(0, 64),
        data: Data::Write(SgBuffer::from_vec(vec![0x5A; 32 * 1024])),
    });
    let pdus = sent(&mut c);
    let itt = u32::from_be_bytes(pdus[0][16..20].try_into().unwrap());
    let abort = time_out(&mut c, t0, id, itt);
    let r2t = ulp_iscsi::wire::r2t::R2tRepr {
        lun: Lun::default(),
        itt: Itt(itt),
        ttt: Ttt(9),
        stat_sn: 101,
        exp_cmd_sn: 2,
        max_cmd_sn: 50,
        r2t_sn: 0,
        buffer_offset: 8192,
        desired_len: 24 * 1024,
    };
    let mut b = vec![0; 48];
    r2t.emit(&mut b, Digests::NONE).unwrap();
    receive(&mut c, &b);
    // One Data-Out answers the R2T now; the rest would follow, but the abort completes first.
    let first = c.poll_transmit().expect("Data-Out").parts()[0].to_vec();
    assert_eq!(first[0] & 0x3F, 0x05);
    receive(&mut c, &tmf_response(abort.itt.0, 0, 101));
    assert!(
        sent(&mut c).is_empty(),
        "no Data-Out after the abort completed"
    );
    let done = completions(events(&mut c));
    assert_eq!(done[0].id, id);
    assert!(matches!(done[0].result, Err(CommandError::Aborted { .. })));
    assert_eq!(done[0].buffer.as_ref().map(SgBuffer::len), Some(32 * 1024));
}

#[test]
fn a_task_management_response_to_nothing_fails_the_connection() {
    let mut c = logged_in(50);
    read(&mut c, Lun::default(), 512);
    receive(&mut c, &tmf_response(0x8000_0003, 0, 101));
    assert_eq!(c.phase(), Phase::Failed);
    assert_eq!(
        c.failure().map(ToString::to_string).as_deref(),
        Some(
            "protocol violation by the target: Task Management Function Response for ITT 0x80000003, which names no such task"
        )
    );
}

/// The ITTs of the SCSI Commands among `pdus`.
fn command_itts(pdus: &[Vec<u8>]) -> Vec<u32> {
    pdus.iter()
        .filter(|h| h[0] & 0x3F == 0x01)
        .map(|h| u32::from_be_bytes(h[16..20].try_into().unwrap()))
        .collect()
}

/// A command that completes while its ABORT TASK is outstanding frees its tag only when the
/// abort is answered: the ABORT TASK still names that ITT, and a target that looks the task up
/// by ITT after a new command took it would abort the new one.
#[test]
fn a_tag_is_not_reused_while_an_abort_task_names_it() {
    let mut config = config();
    config.queue_depth = 2;
    let mut c = logged_in_with(config, 50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 512);
    c.handle_timeout(t0);
    c.handle_timeout(t0 + 10 * SECOND);
    let (_, other_itt) = read(&mut c, Lun::default(), 512);
    // A third read waits for a tag.
    let waiting = submit_read(&mut c, Lun::default(), 512);
    assert!(sent(&mut c).is_empty(), "no tag free");
    c.handle_timeout(t0 + 10 * SECOND);
    c.handle_timeout(t0 + 30 * SECOND);
    let abort = tmf_request(&sent(&mut c));
    assert_eq!(abort.ref_task_tag, Itt(itt));
    let _ = events(&mut c);
    // The read's status arrives before the abort's answer: the read completes...
    receive(&mut c, &data_in(itt, &[5; 512], Some(101)));
    let done = completions(events(&mut c));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, id);
    assert!(done[0].result.as_ref().unwrap().is_good());
    // ... but its tag stays out of use while the ABORT TASK names it.
    assert_eq!(
        command_itts(&sent(&mut c)),
        Vec::<u32>::new(),
        "no command may take ITT {itt:#x} while ABORT TASK names it"
    );
    receive(&mut c, &tmf_response(abort.itt.0, 1, 102));
    let ev = events(&mut c);
    assert!(matches!(
        recoveries(&ev)[..],
        [Recovery::TaskAborted {
            completed_first: true,
            ..
        }]
    ));
    // Answered: the tag is free again and the waiting read goes out on it.
    assert_eq!(command_itts(&sent(&mut c)), [itt]);
    assert_ne!(itt, other_itt);
    receive(&mut c, &data_in(itt, &[6; 512], Some(103)));
    let done = completions(events(&mut c));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, waiting);
    assert!(done[0].result.as_ref().unwrap().is_good());
    assert_eq!(c.phase(), Phase::FullFeature);
}

/// A Reject of a task management request given up on (the ladder moved past it) is a late
/// answer like a late response: ignored, the connection goes on.
#[test]
fn a_late_reject_of_an_abort_given_up_on_is_ignored() {
    let mut c = logged_in(50);
    let t0 = Instant::now();
    let (id, itt) = read(&mut c, Lun::default(), 512);
    let abort = time_out(&mut c, t0, id, itt);
    c.handle_timeout(t0 + 45 * SECOND);
    let reset = tmf_request(&sent(&mut c));
    assert_eq!(reset.function, TmfFunction::LogicalUnitReset);
    let _ = events(&mut c);
    let mut header = vec![0; 48];
    abort.emit(&mut header, Digests::NONE).unwrap();
    let reject = ulp_iscsi::wire::reject::RejectRepr {
        reason: ulp_iscsi::wire::reject::RejectReason::ImmediateCommandReject,
        stat_sn: 101,
        exp_cmd_sn: 2,
        max_cmd_sn: 50,
        data_sn: 0,
        rejected_header: &header,
    };
    let mut b = vec![0; reject.buffer_len(Digests::NONE)];
    reject.emit(&mut b, Digests::NONE).unwrap();
    receive(&mut c, &b);
    assert_eq!(c.phase(), Phase::FullFeature, "{:?}", c.failure());
    // The reset's answer still ends the read.
    receive(&mut c, &tmf_response(reset.itt.0, 0, 102));
    let ev = events(&mut c);
    assert!(recoveries(&ev).contains(&Recovery::LunResetDone {
        lun: Lun::default(),
        aborted: 1
    }));
    let done = completions(ev);
    assert_eq!(done[0].id, id);
    assert!(matches!(done[0].result, Err(CommandError::Aborted { .. })));
}

/// A ping interval of zero is no interval (as the CLI's `--noop-interval 0`): the ping timer
/// must not be due again at every `handle_timeout`, which would make a driver spin.
#[test]
fn a_zero_ping_interval_turns_pings_off_instead_of_spinning() {
    let mut config = config();
    config.noop_interval = Some(Duration::ZERO);
    config.task_timeout = None;
    let mut c = logged_in_with(config, 50);
    let t0 = Instant::now();
    for i in 0..3 {
        let now = t0 + i * SECOND;
        c.handle_timeout(now);
        let _ = sent(&mut c);
        assert!(
            c.poll_timeout().is_none_or(|next| next > now),
            "turn {i}: due again at once"
        );
    }
}
