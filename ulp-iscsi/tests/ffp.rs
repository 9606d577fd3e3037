//! Full feature phase by RFC 7143, sans IO: the target's PDUs are scripted, time is the test's.
//! Text continuations inside the CmdSN window, MaxCmdSN values to ignore, Reject (§11.17.1),
//! Asynchronous Messages (§11.9.1), MaxOutstandingR2T, Data-In digest errors.

mod common;

use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{QueueId, SansIo, SgBuffer};
use ulp_iscsi::connection::{AsyncEvent, Phase};
use ulp_iscsi::scsi::{self, Sense};
use ulp_iscsi::wire::async_msg::AsyncMsgRepr;
use ulp_iscsi::wire::data_in::{DataInRepr, DataInStatus};
use ulp_iscsi::wire::login::Stage;
use ulp_iscsi::wire::logout::{LogoutResponse, LogoutResponseRepr};
use ulp_iscsi::wire::nop::NopInRepr;
use ulp_iscsi::wire::r2t::R2tRepr;
use ulp_iscsi::wire::reject::{RejectReason, RejectRepr};
use ulp_iscsi::wire::scsi_rsp::ScsiRspRepr;
use ulp_iscsi::wire::text::TextResponseRepr;
use ulp_iscsi::wire::{Digests, Itt, Lun, Ttt};
use ulp_iscsi::{
    Command, CommandError, CommandId, Completion, Connection, ConnectionConfig, ConnectionError,
    Data, Event, Violation,
};

/// Encodes a `Repr` into a whole PDU with `digests`.
macro_rules! pdu {
    ($repr:expr, $digests:expr) => {{
        let r = $repr;
        let mut b = vec![0; r.buffer_len($digests)];
        r.emit(&mut b, $digests).unwrap();
        b
    }};
    ($repr:expr) => {
        pdu!($repr, Digests::NONE)
    };
}

fn config() -> ConnectionConfig {
    let mut config = ConnectionConfig::normal("iqn.i:x", "iqn.t:y");
    config.queue_id = QueueId(1);
    config.queue_depth = 8;
    config
}

use common::login_response;

/// A transmitted PDU's header.
fn next_header(c: &mut Connection<SwBackend>) -> Vec<u8> {
    c.poll_transmit().expect("a PDU to send").parts()[0].to_vec()
}

fn word(h: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(h[at..at + 4].try_into().unwrap())
}

/// Every PDU queued: (header, payload length).
fn drain(c: &mut Connection<SwBackend>) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    while let Some(t) = c.poll_transmit() {
        let parts = t.parts();
        out.push((
            parts[0].to_vec(),
            parts[1..].iter().map(|p| p.len()).sum::<usize>(),
        ));
    }
    out
}

/// The final Login Response's `text`, completed with an answer to every offered key it does not
/// mention (RFC 7143 §6.2.1: the initiator fails a login that leaves one unanswered).
fn answered(text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    for (k, v) in [
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
        ("ErrorRecoveryLevel", "0"),
        ("MaxConnections", "1"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
    ] {
        let mentioned = text
            .split(|&b| b == 0)
            .any(|pair| pair.starts_with(format!("{k}=").as_bytes()));
        if !mentioned {
            out.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
    }
    out
}

/// Logged in, MaxCmdSN `max_cmd_sn` (ExpCmdSN 1), with the final Login Response's `text`
/// (the keys it leaves out answered by [`answered`]).
fn logged_in_with(max_cmd_sn: u32, config: ConnectionConfig, text: &[u8]) -> Connection<SwBackend> {
    let text = &answered(text)[..];
    let mut c = Connection::new(config, SwBackend::new());
    c.start_login().unwrap();
    let itt = word(&next_header(&mut c), 16);
    c.handle_bytes(&login_response(
        itt,
        Stage::Security,
        Stage::Operational,
        1,
        b"",
    ));
    assert!(c.poll_transmit().is_some(), "operational request");
    c.handle_bytes(&login_response(
        itt,
        Stage::Operational,
        Stage::FullFeature,
        max_cmd_sn,
        text,
    ));
    assert!(matches!(c.poll_event(), Some(Event::Connected)));
    assert_eq!(c.phase(), Phase::FullFeature);
    c
}

fn logged_in(max_cmd_sn: u32) -> Connection<SwBackend> {
    logged_in_with(max_cmd_sn, config(), b"MaxRecvDataSegmentLength=8192\0")
}

fn events(c: &mut Connection<SwBackend>) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn completions(c: &mut Connection<SwBackend>) -> Vec<Completion> {
    events(c)
        .into_iter()
        .filter_map(|e| match e {
            Event::Completed(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn closed(c: &mut Connection<SwBackend>) -> ConnectionError {
    events(c)
        .into_iter()
        .find_map(|e| match e {
            Event::Closed(e) => Some(e),
            _ => None,
        })
        .expect("Closed")
}

/// A read of `len` bytes; its id and the SCSI Command's header.
fn read(c: &mut Connection<SwBackend>, len: usize) -> (CommandId, Vec<u8>) {
    let id = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::read_10(0, (len / 512) as u16),
        data: Data::Read(SgBuffer::from_vec(vec![0xEE; len])),
    });
    let h = next_header(c);
    assert_eq!(h[0] & 0x3F, 0x01);
    (id, h)
}

fn nop_in(stat_sn: u32, exp: u32, max: u32) -> Vec<u8> {
    pdu!(NopInRepr {
        lun: Lun::default(),
        itt: Itt::RESERVED,
        ttt: Ttt::RESERVED,
        stat_sn,
        exp_cmd_sn: exp,
        max_cmd_sn: max,
        data: &[],
    })
}

fn reject(reason: RejectReason, stat_sn: u32, rejected: &[u8]) -> Vec<u8> {
    pdu!(RejectRepr {
        reason,
        stat_sn,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        data_sn: 0,
        rejected_header: &rejected[..48],
    })
}

fn scsi_response(itt: u32, stat_sn: u32, status: u8, sense: &[u8]) -> Vec<u8> {
    pdu!(ScsiRspRepr {
        bidi_overflow: false,
        bidi_underflow: false,
        overflow: false,
        underflow: false,
        response: 0,
        status,
        itt: Itt(itt),
        snack_tag: 0,
        stat_sn,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        exp_data_sn: 0,
        bidi_residual: 0,
        residual: 0,
        sense,
        response_data: &[],
    })
}

fn async_msg(event: u8, params: [u16; 3], stat_sn: u32, data: &[u8]) -> Vec<u8> {
    pdu!(AsyncMsgRepr {
        lun: Lun::single_level(3),
        stat_sn,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        event,
        vcode: 0x42,
        params,
        data,
    })
}

fn logout_response(itt: u32, stat_sn: u32) -> Vec<u8> {
    pdu!(LogoutResponseRepr {
        response: LogoutResponse::Success,
        itt: Itt(itt),
        stat_sn,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        time2wait: 2,
        time2retain: 20,
    })
}

fn text_response(
    itt: u32,
    ttt: u32,
    stat_sn: u32,
    exp: u32,
    max: u32,
    last: bool,
    data: &[u8],
) -> Vec<u8> {
    pdu!(TextResponseRepr {
        final_: last,
        cont: !last,
        lun: Lun::default(),
        itt: Itt(itt),
        ttt: if last { Ttt::RESERVED } else { Ttt(ttt) },
        stat_sn,
        exp_cmd_sn: exp,
        max_cmd_sn: max,
        data,
    })
}

// ----- sequencing -----

/// RFC 7143 §4.2.2.1: a Text Request is non-immediate, so the one answering a Text Response
/// with the C bit takes the next CmdSN and waits for the window like a command.
#[test]
fn text_continuation_waits_for_the_cmd_sn_window() {
    // MaxCmdSN 1: one non-immediate PDU (CmdSN 1) may go.
    let mut c = logged_in(1);
    let id = c.send_targets().unwrap();
    let h = next_header(&mut c);
    assert_eq!(h[0] & 0x3F, 0x04, "Text Request");
    let itt = word(&h, 16);
    assert_eq!(word(&h, 24), 1, "CmdSN 1");
    // The answer is continued; the target has taken CmdSN 1 but keeps the window closed
    // (MaxCmdSN = ExpCmdSN - 1).
    c.handle_bytes(&text_response(
        itt,
        0x77,
        101,
        2,
        1,
        false,
        b"TargetName=iqn.t:a\0",
    ));
    assert!(
        c.poll_transmit().is_none(),
        "the continuation waits for the window"
    );
    // A command submitted meanwhile queues behind it.
    c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::test_unit_ready(),
        data: Data::None,
    });
    assert!(c.poll_transmit().is_none());
    // The window opens by one: the continuation goes first, with CmdSN 2 and the TTT.
    c.handle_bytes(&nop_in(102, 2, 2));
    let sent = drain(&mut c);
    assert_eq!(sent.len(), 1, "only the continuation fits");
    let h = &sent[0].0;
    assert_eq!(h[0] & 0x3F, 0x04);
    assert_eq!((word(h, 16), word(h, 20), word(h, 24)), (itt, 0x77, 2));
    assert_eq!(c.sequence_numbers().0, 3);
    // The rest of the answer; then the window lets the command go.
    c.handle_bytes(&text_response(
        itt,
        0,
        103,
        3,
        3,
        true,
        b"TargetAddress=10.0.0.1:3260,1\0",
    ));
    let ev = events(&mut c);
    let targets = ev
        .iter()
        .find_map(|e| match e {
            Event::Discovered { id: got, targets } if *got == id => Some(targets),
            _ => None,
        })
        .expect("Discovered");
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].name, "iqn.t:a");
    assert_eq!(targets[0].addresses, ["10.0.0.1:3260,1"]);
    let sent = drain(&mut c);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0[0] & 0x3F, word(&sent[0].0, 24)), (0x01, 3));
}

/// RFC 7143 §4.2.2.1: a PDU whose MaxCmdSN is below its ExpCmdSN - 1 (serial arithmetic)
/// has both ignored; MaxCmdSN = ExpCmdSN - 1 is a closed window and taken; values that do
/// not advance are ignored.
#[test]
fn max_cmd_sn_below_exp_cmd_sn_minus_one_is_ignored() {
    let mut c = logged_in(2);
    // (Unsolicited NOP-Ins: their StatSN is not taken; ExpStatSN stays 101.)
    // ExpCmdSN 5, MaxCmdSN 3 < 4: both ignored (ExpCmdSN does not move either).
    c.handle_bytes(&nop_in(101, 5, 3));
    assert_eq!(c.sequence_numbers(), (1, 1, 2, 101));
    // Across the wrap: ExpCmdSN 1, MaxCmdSN 0xFFFF_FFFE (< 0 = ExpCmdSN - 1): ignored.
    c.handle_bytes(&nop_in(101, 1, u32::MAX - 1));
    assert_eq!(c.sequence_numbers(), (1, 1, 2, 101));
    // Two commands fill the window (CmdSN 1, 2); a third waits.
    for _ in 0..3 {
        c.submit(Command {
            lun: Lun::default(),
            cdb: scsi::test_unit_ready(),
            data: Data::None,
        });
    }
    assert_eq!(drain(&mut c).len(), 2);
    // ExpCmdSN 3, MaxCmdSN 2: a closed window, valid: ExpCmdSN taken, nothing goes.
    c.handle_bytes(&nop_in(103, 3, 2));
    assert_eq!(c.sequence_numbers(), (3, 3, 2, 101));
    assert!(c.poll_transmit().is_none());
    // A shrinking MaxCmdSN inside the rule (ExpCmdSN 3, MaxCmdSN 2 again, then 1 < 2:
    // ignored) changes nothing; one that opens it sends the third.
    c.handle_bytes(&nop_in(104, 3, 1));
    assert_eq!(c.sequence_numbers(), (3, 3, 2, 101));
    c.handle_bytes(&nop_in(105, 3, 3));
    assert_eq!(drain(&mut c).len(), 1);
    assert_eq!(c.phase(), Phase::FullFeature);
}

// ----- Reject -----

/// §11.17.1: a Reject of a Data-Out (data digest error) does not end the command: the target
/// sends its SCSI Response once it has the rest of the data. The command keeps its tag, the
/// response completes it, and nothing else fails.
#[test]
fn reject_of_a_data_out_keeps_the_task_until_its_response() {
    let mut c = logged_in(100);
    let (read_id, read_h) = read(&mut c, 512);
    let write_id = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::write_10(0, 128),
        data: Data::Write(SgBuffer::from_vec(vec![0x5A; 64 * 1024])),
    });
    let sent = drain(&mut c);
    let write_itt = word(&sent[0].0, 16);
    // The target asks for 8 KiB; the Data-Out answering it is rejected.
    c.handle_bytes(&r2t(write_itt, 5, 0, 8192, 8192, 101));
    let sent = drain(&mut c);
    assert_eq!(sent.len(), 1);
    let data_out = sent[0].0.clone();
    assert_eq!(data_out[0] & 0x3F, 0x05);
    c.handle_bytes(&reject(RejectReason::DataDigestError, 101, &data_out));
    assert_eq!(c.phase(), Phase::FullFeature);
    assert!(
        completions(&mut c).is_empty(),
        "nothing completes on the Reject"
    );
    // The target ends the write with CHECK CONDITION (sense: ABORTED COMMAND).
    let sense = Sense {
        key: 0xB,
        asc: 0x47,
        ascq: 0x03,
    }
    .to_fixed();
    c.handle_bytes(&scsi_response(write_itt, 102, 2, &sense));
    let done = completions(&mut c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, write_id);
    let outcome = done[0].result.as_ref().expect("a status");
    assert_eq!(outcome.status, 2);
    assert_eq!(
        outcome.sense.expect("sense").to_string(),
        "ABORTED COMMAND: INFORMATION UNIT iuCRC ERROR DETECTED (ASC/ASCQ 47h/03h)"
    );
    assert_eq!(done[0].buffer.as_ref().map(SgBuffer::len), Some(64 * 1024));
    // The read is untouched and completes normally.
    let read_itt = word(&read_h, 16);
    c.handle_bytes(&scsi_response(read_itt, 103, 0, &[]));
    let done = completions(&mut c);
    assert_eq!(done[0].id, read_id);
    assert!(matches!(
        done[0].result,
        Err(CommandError::ShortData { .. })
    ));
    assert_eq!(c.phase(), Phase::FullFeature);
}

/// A Reject of a SCSI Command ends that command only (buffer back after release); a Reject
/// carrying an earlier CmdSN for the same tag is not that command's.
#[test]
fn reject_of_a_scsi_command_fails_only_that_command() {
    let mut c = logged_in(100);
    let (a, ha) = read(&mut c, 1024);
    let (b, hb) = read(&mut c, 512);
    c.handle_bytes(&reject(RejectReason::CommandNotSupported, 101, &ha));
    let done = completions(&mut c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, a);
    assert_eq!(
        done[0].result,
        Err(CommandError::Rejected(RejectReason::CommandNotSupported))
    );
    assert_eq!(done[0].buffer.as_ref().map(SgBuffer::len), Some(1024));
    assert_eq!(c.engine().registered(), 1, "only the other read's buffer");
    // A copy of b's header with another CmdSN: an earlier command that had b's tag.
    let mut stale = hb.clone();
    stale[24..28].copy_from_slice(&9u32.to_be_bytes());
    c.handle_bytes(&reject(RejectReason::InvalidPduField, 102, &stale));
    let err = c
        .failure()
        .cloned()
        .expect("unmappable Reject fails the connection");
    let itt = word(&hb, 16);
    assert_eq!(
        err,
        ConnectionError::RejectedPdu {
            reason: RejectReason::InvalidPduField,
            opcode: 0x01,
            itt
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the target rejected a SCSI Command (opcode 0x01, ITT {itt:#x}) with reason invalid \
             PDU field (0x09), which ends no single task"
        )
    );
    // b was not completed as rejected: it ends with the connection's cause.
    let done = completions(&mut c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, b);
    assert_eq!(
        done[0].result,
        Err(CommandError::ConnectionLost(Box::new(err)))
    );
}

/// A Reject of a NOP-Out ping fails that ping only: the caller's gets `Event::Failed`, the
/// connection's own stops its deadline. A rejected Text Request fails that text request.
#[test]
fn reject_of_a_ping_or_text_fails_only_it() {
    let mut c = logged_in(100);
    let (_, hr) = read(&mut c, 512);
    let id = c.ping(vec![1, 2, 3]).unwrap();
    let ping = next_header(&mut c);
    c.handle_bytes(&reject(RejectReason::ImmediateCommandReject, 101, &ping));
    let ev = events(&mut c);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::Failed { id: got, error: CommandError::Rejected(RejectReason::ImmediateCommandReject) }] if *got == id
        ),
        "{ev:?}"
    );
    assert_eq!(c.phase(), Phase::FullFeature);
    // The connection's own ping, rejected: its deadline stops, the connection lives on.
    let t0 = Instant::now();
    c.handle_timeout(t0);
    c.handle_timeout(t0 + Duration::from_secs(5));
    let ping = next_header(&mut c);
    assert_eq!(ping[0] & 0x3F, 0x00);
    c.handle_bytes(&reject(RejectReason::ImmediateCommandReject, 102, &ping));
    assert!(
        events(&mut c).is_empty(),
        "the connection's ping is no event"
    );
    c.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(c.phase(), Phase::FullFeature, "no ping timeout");
    let _ = drain(&mut c);
    // A rejected SendTargets.
    let id = c.send_targets().unwrap();
    let text = next_header(&mut c);
    c.handle_bytes(&reject(RejectReason::ProtocolError, 103, &text));
    let ev = events(&mut c);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::Failed { id: got, error: CommandError::Rejected(RejectReason::ProtocolError) }] if *got == id
        ),
        "{ev:?}"
    );
    // The read is still there.
    c.handle_bytes(&scsi_response(word(&hr, 16), 104, 0x18, &[]));
    assert_eq!(completions(&mut c)[0].result.as_ref().unwrap().status, 0x18);
    assert_eq!(c.phase(), Phase::FullFeature);
}

/// A Reject of a Data-Out for a tag with no command, and one with reason "waiting for
/// logout".
#[test]
fn reject_of_an_unknown_task_and_waiting_for_logout() {
    let mut c = logged_in(100);
    let mut data_out = vec![0u8; 48];
    data_out[0] = 0x05;
    data_out[1] = 0x80;
    data_out[16..20].copy_from_slice(&0x33u32.to_be_bytes());
    c.handle_bytes(&reject(RejectReason::DataDigestError, 101, &data_out));
    let err = closed(&mut c);
    assert_eq!(
        err.to_string(),
        "the target rejected a SCSI Data-Out (opcode 0x05, ITT 0x33) with reason data digest \
         error (0x02), which ends no single task"
    );

    // Waiting for logout: the rejected command fails, the initiator logs out, and the end is
    // the target's request, not the user's logout.
    let mut c = logged_in(100);
    let (a, ha) = read(&mut c, 512);
    let (b, _) = read(&mut c, 512);
    c.handle_bytes(&reject(RejectReason::WaitingForLogout, 101, &ha));
    let done = completions(&mut c);
    assert_eq!(done[0].id, a);
    assert_eq!(
        done[0].result,
        Err(CommandError::Rejected(RejectReason::WaitingForLogout))
    );
    let logout = next_header(&mut c);
    assert_eq!(logout[0] & 0x3F, 0x06, "Logout Request");
    c.handle_bytes(&logout_response(word(&logout, 16), 102));
    assert_eq!(c.phase(), Phase::Failed);
    let ev = events(&mut c);
    let cause = ConnectionError::TargetRequestedLogout { within: None };
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Completed(d) if d.id == b
            && d.result == Err(CommandError::ConnectionLost(Box::new(cause.clone()))))),
        "{ev:?}"
    );
    assert!(matches!(ev.last(), Some(Event::Closed(e)) if *e == cause));
    assert_eq!(
        cause.to_string(),
        "the target rejected a PDU as waiting for logout (Reject reason 0x0c); the initiator \
         logged out"
    );
}

// ----- Data-In digest -----

/// A Data-In whose data digest does not match fails its command only (RFC 7143 §7.8 at
/// ErrorRecoveryLevel 0: discard, terminate the command with an error); the other command
/// and the connection go on.
#[test]
fn data_in_digest_error_fails_only_its_command() {
    let mut config = config();
    config.wanted.data_digest = ulp_iscsi::keys::DigestPref::Prefer;
    let mut c = logged_in_with(
        100,
        config,
        b"HeaderDigest=None\0DataDigest=CRC32C\0MaxRecvDataSegmentLength=8192\0",
    );
    assert!(c.params().data_digest);
    let dd = Digests {
        header: false,
        data: true,
    };
    let (a, ha) = read(&mut c, 1024);
    let (b, hb) = read(&mut c, 512);
    let data_in = |itt: u32, sn: u32, off: u32, data: &[u8], status: Option<DataInStatus>| {
        pdu!(
            DataInRepr {
                final_: status.is_some(),
                ack: false,
                status,
                lun: Lun::default(),
                itt: Itt(itt),
                ttt: Ttt::RESERVED,
                exp_cmd_sn: 3,
                max_cmd_sn: 100,
                data_sn: sn,
                buffer_offset: off,
                data,
            },
            dd
        )
    };
    let good = |stat_sn| {
        Some(DataInStatus {
            status: 0,
            stat_sn,
            overflow: false,
            underflow: false,
            residual: 0,
        })
    };
    let (ia, ib) = (word(&ha, 16), word(&hb, 16));
    c.handle_bytes(&data_in(ia, 0, 0, &[1; 512], None));
    let mut bad = data_in(ia, 1, 512, &[2; 512], good(101));
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    c.handle_bytes(&bad);
    assert_eq!(c.phase(), Phase::FullFeature, "{:?}", c.failure());
    let done = completions(&mut c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, a);
    let err = CommandError::DataDigest {
        itt: ia,
        data_sn: 1,
        offset: 512,
    };
    assert_eq!(done[0].result, Err(err.clone()));
    assert_eq!(
        err.to_string(),
        format!(
            "data digest mismatch in the SCSI Data-In for ITT {ia:#x} with DataSN 1 at Buffer \
             Offset 512: the data is not trusted and the command failed (no SNACK at \
             ErrorRecoveryLevel 0, RFC 7143 §7.8)"
        )
    );
    assert_eq!(done[0].buffer.as_ref().map(SgBuffer::len), Some(1024));
    // The other read completes with its data.
    c.handle_bytes(&data_in(ib, 0, 0, &[3; 512], good(102)));
    let done = completions(&mut c);
    assert_eq!(done[0].id, b);
    assert!(done[0].result.is_ok());
    assert!(done[0].buffer.take_vec_all_eq(3));
    // A digest error in a PDU other than Data-In (a SCSI Response with sense) ends the
    // session: it cannot be asked for again at ErrorRecoveryLevel 0.
    let (_, hc) = read(&mut c, 512);
    let ic = word(&hc, 16);
    let sense = Sense {
        key: 5,
        asc: 0x24,
        ascq: 0,
    }
    .to_fixed();
    let mut bad = pdu!(
        ScsiRspRepr {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow: false,
            underflow: false,
            response: 0,
            status: 2,
            itt: Itt(ic),
            snack_tag: 0,
            stat_sn: 103,
            exp_cmd_sn: 4,
            max_cmd_sn: 100,
            exp_data_sn: 0,
            bidi_residual: 0,
            residual: 0,
            sense: &sense,
            response_data: &[],
        },
        dd
    );
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    c.handle_bytes(&bad);
    let err = closed(&mut c);
    assert_eq!(
        err,
        ConnectionError::DataDigest {
            opcode: ulp_iscsi::wire::Opcode::ScsiResponse,
            itt: ic
        }
    );
    assert!(err.to_string().starts_with(&format!(
        "data digest mismatch in a SCSI Response (ITT {ic:#x})"
    )));
}

trait AllEq {
    fn take_vec_all_eq(&self, x: u8) -> bool;
}

impl AllEq for Option<SgBuffer> {
    fn take_vec_all_eq(&self, x: u8) -> bool {
        self.clone()
            .is_some_and(|b| b.into_vec().iter().all(|&y| y == x))
    }
}

// ----- Asynchronous Messages -----

#[test]
fn async_scsi_event_vendor_and_reserved_are_reported() {
    let mut c = logged_in(100);
    // Event 0 with sense (SenseLength, fixed-format sense): REPORTED LUNS DATA HAS CHANGED.
    let sense = Sense {
        key: 6,
        asc: 0x3F,
        ascq: 0x0E,
    }
    .to_fixed();
    let mut data = (sense.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&sense);
    c.handle_bytes(&async_msg(0, [0, 0, 0], 101, &data));
    c.handle_bytes(&async_msg(255, [1, 2, 3], 102, &[]));
    c.handle_bytes(&async_msg(9, [0, 0, 0], 103, &[]));
    let texts: Vec<String> = events(&mut c)
        .into_iter()
        .map(|e| match e {
            Event::Async(a) => a.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        [
            "SCSI asynchronous event for LUN 3: UNIT ATTENTION: REPORTED LUNS DATA HAS CHANGED \
             (ASC/ASCQ 3Fh/0Eh)",
            "vendor-specific asynchronous event (AsyncVCode 0x42, parameters 1, 2, 3)",
            "asynchronous event with reserved code 9, ignored",
        ]
    );
    assert_eq!(c.phase(), Phase::FullFeature);
}

/// Event 1 (logout request) and event 4 (renegotiation request): the initiator logs out
/// at once; the end names the target's request, not the user's logout.
#[test]
fn async_logout_and_renegotiation_requests_log_out() {
    for (event, cause, event_text, text) in [
        (
            1u8,
            ConnectionError::TargetRequestedLogout {
                within: Some(Duration::from_secs(10)),
            },
            "the target asks the initiator to log out within 10 s",
            "the target asked for a logout within 10 s (Asynchronous Message event 1); the \
             initiator logged out",
        ),
        (
            4,
            ConnectionError::TargetRequestedRenegotiation {
                within: Duration::from_secs(10),
            },
            "the target asks for the operational parameters to be renegotiated within 10 s",
            "the target asked to renegotiate the operational parameters within 10 s \
             (Asynchronous Message event 4); the initiator logged out so that a new login \
             renegotiates them",
        ),
    ] {
        let mut c = logged_in(100);
        let (id, _) = read(&mut c, 512);
        c.handle_bytes(&async_msg(event, [0, 0, 10], 101, &[]));
        let ev = events(&mut c);
        assert!(
            matches!(ev.as_slice(), [Event::Async(a)] if a.code() == event && a.to_string() == event_text),
            "{ev:?}"
        );
        let logout = next_header(&mut c);
        assert_eq!(logout[0] & 0x3F, 0x06, "Logout Request");
        assert_eq!(logout[0] & 0x40, 0x40, "immediate");
        assert_eq!(c.phase(), Phase::LoggingOut);
        c.handle_bytes(&logout_response(word(&logout, 16), 102));
        assert_eq!(c.phase(), Phase::Failed, "not a clean user logout");
        assert_eq!(c.failure(), Some(&cause));
        let ev = events(&mut c);
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Completed(d) if d.id == id
            && d.result == Err(CommandError::ConnectionLost(Box::new(cause.clone())))))
        );
        assert!(matches!(ev.last(), Some(Event::Closed(e)) if *e == cause));
        assert_eq!(cause.to_string(), text);
    }
}

/// Events 2 and 3: the connection ends at once with Time2Wait and Time2Retain in words.
#[test]
fn async_connection_and_session_drop_end_with_time2wait() {
    let cases = [
        (
            2u8,
            [0u16, 2, 20],
            ConnectionError::TargetDroppedConnection {
                time2wait: Duration::from_secs(2),
                time2retain: Duration::from_secs(20),
            },
            "the target will drop connection 0: reconnect after Time2Wait 2 s, the target \
             keeps the tasks for Time2Retain 20 s",
            "the target dropped the connection (Asynchronous Message event 2): reconnect after \
             Time2Wait 2 s, the target keeps the tasks for Time2Retain 20 s",
        ),
        (
            3,
            [0, 0, 0],
            ConnectionError::TargetDroppedSession {
                time2wait: Duration::ZERO,
                time2retain: Duration::ZERO,
            },
            "the target will drop every connection of the session: reconnect at once \
             (Time2Wait 0 s), the target keeps no tasks (Time2Retain 0 s)",
            "the target dropped the session (Asynchronous Message event 3): reconnect at once \
             (Time2Wait 0 s), the target keeps no tasks (Time2Retain 0 s)",
        ),
    ];
    for (event, params, cause, event_text, text) in cases {
        let mut c = logged_in(100);
        let (id, _) = read(&mut c, 512);
        c.handle_bytes(&async_msg(event, params, 101, &[]));
        assert_eq!(c.phase(), Phase::Failed);
        let ev = events(&mut c);
        assert!(
            matches!(ev.first(), Some(Event::Async(a)) if a.to_string() == event_text),
            "{ev:?}"
        );
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Completed(d) if d.id == id
            && d.result == Err(CommandError::ConnectionLost(Box::new(cause.clone())))
            && d.buffer.is_some()))
        );
        assert!(matches!(ev.last(), Some(Event::Closed(e)) if *e == cause));
        assert_eq!(cause.to_string(), text);
    }
    // The decoded event for a connection drop.
    let m = AsyncMsgRepr {
        lun: Lun::default(),
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        event: 2,
        vcode: 0,
        params: [1, 2, 3],
        data: &[],
    };
    assert_eq!(
        AsyncEvent::from_message(&m),
        AsyncEvent::ConnectionDrop {
            cid: 1,
            time2wait: Duration::from_secs(2),
            time2retain: Duration::from_secs(3)
        }
    );
}

// ----- MaxOutstandingR2T -----

fn r2t(itt: u32, ttt: u32, sn: u32, offset: u32, len: u32, stat_sn: u32) -> Vec<u8> {
    pdu!(R2tRepr {
        lun: Lun::default(),
        itt: Itt(itt),
        ttt: Ttt(ttt),
        stat_sn,
        exp_cmd_sn: 2,
        max_cmd_sn: 100,
        r2t_sn: sn,
        buffer_offset: offset,
        desired_len: len,
    })
}

/// MaxOutstandingR2T=1 (the default): a second R2T while the first one's Data-Outs have not
/// all gone out is a violation naming the limit, ITT and R2TSN; once they went, the next R2T
/// is fine.
#[test]
fn max_outstanding_r2t_is_honoured() {
    let write = |c: &mut Connection<SwBackend>| {
        c.submit(Command {
            lun: Lun::default(),
            cdb: scsi::write_10(0, 512),
            data: Data::Write(SgBuffer::from_vec(vec![0x5A; 256 * 1024])),
        });
        let sent = drain(c);
        assert_eq!(sent[0].0[0] & 0x3F, 0x01);
        word(&sent[0].0, 16)
    };
    let mut c = logged_in(100);
    assert_eq!(c.params().max_outstanding_r2t, 1);
    let itt = write(&mut c);
    c.handle_bytes(&r2t(itt, 1, 0, 65536, 65536, 101));
    let sent = drain(&mut c);
    assert_eq!(sent.len(), 8, "64 KiB in 8 KiB Data-Outs");
    assert!(sent.iter().all(|(h, _)| word(h, 20) == 1));
    // The first R2T's data all went out: the second is within the limit.
    c.handle_bytes(&r2t(itt, 2, 1, 131072, 65536, 101));
    assert_eq!(c.phase(), Phase::FullFeature);
    // Its Data-Outs are still queued (only one handed out): a third R2T is one too many.
    assert!(c.poll_transmit().is_some());
    c.handle_bytes(&r2t(itt, 3, 2, 196608, 65536, 101));
    let err = c.failure().cloned().expect("violation");
    assert_eq!(
        err,
        ConnectionError::Protocol(Violation::TooManyR2ts {
            itt,
            r2t_sn: 2,
            max: 1
        })
    );
    assert_eq!(
        err.to_string(),
        format!(
            "protocol violation by the target: R2T for ITT {itt:#x} with R2TSN 2 beyond \
             MaxOutstandingR2T=1: the command's earlier R2Ts are still outstanding"
        )
    );
}

// ----- words -----

#[test]
fn violations_name_the_pdu_and_field() {
    let cases = [
        (
            Violation::SecondStatus {
                opcode: ulp_iscsi::wire::Opcode::ScsiResponse,
                itt: 4,
            },
            "SCSI Response for ITT 0x4 carries a second status for the command",
        ),
        (
            Violation::UnderflowBeyondTransfer {
                opcode: ulp_iscsi::wire::Opcode::DataIn,
                itt: 4,
                residual: 9000,
                expected: 512,
            },
            "SCSI Data-In for ITT 0x4 with an underflow Residual Count of 9000, beyond its \
             Expected Data Transfer Length of 512 bytes",
        ),
        (
            Violation::R2tOutsideWrite {
                itt: 1,
                offset: 0,
                len: 0,
                write_len: 4096,
                max_burst: 262144,
            },
            "R2T for ITT 0x1 with Desired Data Transfer Length 0 at Buffer Offset 0, for a \
             4096-byte write (MaxBurstLength 262144)",
        ),
        (
            Violation::DataSn {
                itt: 2,
                expected: 1,
                received: 3,
            },
            "SCSI Data-In for ITT 0x2 with DataSN 3, expected 1",
        ),
    ];
    for (v, text) in cases {
        assert_eq!(v.to_string(), text);
    }
}
