//! Session reinstatement through the library: against the embedded target (a target that cuts
//! every read, one that goes away) and tgtd (killed before the logout is answered).

mod common;

use std::time::{Duration, Instant};

use common::*;
use ulp_iscsi::blocking::{Error, Options, Session, SessionEvent};
use ulp_iscsi::wire::Lun;
use ulp_iscsi::{Command, CommandError, ConnectionError, Data, SgBuffer, scsi};
use ulp_testbed::iscsi::{Misbehave, Target, TargetConfig};
use ulp_testbed::peers::{Tgtd, peer_available};

fn quick(max_retries: u32, replacement: Duration) -> Options {
    let mut o = Options::default();
    o.max_retries = max_retries;
    o.replacement_timeout = replacement;
    o.reconnect_delay = Duration::from_millis(50);
    o.login_timeout = Duration::from_secs(2);
    o
}

fn print(events: &[SessionEvent]) {
    for e in events {
        println!("{e}");
    }
}

#[test]
fn a_read_the_target_cuts_is_reissued_max_retries_times_then_fails_with_the_cause() {
    let t = Target::start(TargetConfig {
        misbehave: Misbehave::TruncatedPdu,
        unit_attention: false,
        ..TargetConfig::default()
    })
    .unwrap();
    let mut c = Session::connect(
        t.addr(),
        config(t.iqn(), false),
        quick(2, Duration::from_secs(10)),
    )
    .unwrap();
    c.set_block_len(Lun::default(), 512);
    let done = c
        .execute(Command {
            lun: Lun::default(),
            cdb: scsi::read_10(0, 8),
            data: Data::Read(SgBuffer::zeroed(4096)),
        })
        .expect("the read completes");
    let events = c.take_events();
    print(&events);
    let Err(CommandError::ConnectionLost(cause)) = done.result else {
        panic!("{:?}", done.result);
    };
    assert!(
        matches!(
            *cause,
            ConnectionError::PeerClosed | ConnectionError::Socket(_)
        ),
        "{cause:?}"
    );
    assert_eq!(done.buffer.expect("its buffer").len(), 4096);
    let reinstated = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Reinstated { reissued: 1, .. }))
        .count();
    assert_eq!(reinstated, 2, "issued 3 times in all: {events:?}");
    assert!(
        events[0].to_string().starts_with("connection lost: ")
            && events[0]
                .to_string()
                .ends_with("; reinstating the session (1 command to issue again)"),
        "{}",
        events[0]
    );
    // The next command finds the connection ended: the session is reinstated first.
    let back = c
        .write(Lun::default(), 8, SgBuffer::from_vec(pattern(4096, 7)))
        .expect("a write goes through");
    assert_eq!(back.len(), 4096);
    assert_eq!(c.reinstatements(), 3);
    assert_eq!(c.connection().config().isid, config(t.iqn(), false).isid);
}

#[test]
fn past_the_replacement_timeout_every_command_fails_in_words_and_new_ones_are_refused() {
    let t = Target::start(TargetConfig {
        unit_attention: false,
        ..TargetConfig::default()
    })
    .unwrap();
    let mut c = Session::connect(
        t.addr(),
        config(t.iqn(), false),
        quick(5, Duration::from_millis(600)),
    )
    .unwrap();
    c.set_block_len(Lun::default(), 512);
    c.write(Lun::default(), 0, SgBuffer::from_vec(pattern(4096, 1)))
        .unwrap();
    drop(t);
    let lost_at = Instant::now();
    let ids: Vec<_> = (0..4u32)
        .map(|i| {
            c.submit(Command {
                lun: Lun::default(),
                cdb: scsi::read_10(i * 8, 8),
                data: Data::Read(SgBuffer::zeroed(4096)),
            })
            .expect("taken before the loss is known")
        })
        .collect();
    let mut back = 0;
    for id in ids {
        let done = c.wait(id).expect("a completion");
        let Err(CommandError::SessionLost(why)) = &done.result else {
            panic!("{:?}", done.result);
        };
        assert!(
            why.starts_with("session not reinstated within replacement_timeout 0.6 s ("),
            "{why}"
        );
        assert!(why.contains("; last: "), "{why}");
        back += usize::from(done.buffer.is_some_and(|b| b.len() == 4096));
    }
    assert_eq!(back, 4, "every buffer came back");
    let waited = lost_at.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let events = c.take_events();
    print(&events);
    assert!(
        matches!(events.last(), Some(SessionEvent::Lost { failed: 4, .. })),
        "{events:?}"
    );
    let refused = c
        .submit(Command {
            lun: Lun::default(),
            cdb: scsi::write_10(0, 8),
            data: Data::Write(SgBuffer::from_vec(pattern(4096, 2))),
        })
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        refused
            .to_string()
            .starts_with("refused: the session was lost: session not reinstated"),
        "{refused}"
    );
    assert_eq!(refused.into_buffer().map(|b| b.len()), Some(4096));
    let e = c
        .read(Lun::default(), 0, SgBuffer::zeroed(512))
        .unwrap_err();
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn a_timeout_is_timed_out_for_io_callers_never_would_block() {
    let e = Error::Io(std::io::ErrorKind::WouldBlock.into());
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(!e.to_string().contains("os error 11"), "{e}");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    let t = Error::Timeout(ulp_iscsi::blocking::Timeout {
        peer: "target",
        waited: Duration::from_secs(2),
        what: "the Login Response".into(),
    });
    let io: std::io::Error = t.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(
        io.to_string(),
        "no answer from the target in 2.0 s while waiting for the Login Response"
    );
}

#[test]
fn tgtd_closing_instead_of_answering_the_logout_is_a_warning() {
    if !peer_available("tgtd") || !peer_available("tgtadm") {
        return;
    }
    let mut tgtd = Tgtd::start(8 << 20, "None");
    let mut c = Session::connect(
        ("127.0.0.1", tgtd.port),
        config(&tgtd.iqn, false),
        Options::default(),
    )
    .expect("login to tgtd");
    let lun = Lun::single_level(1);
    c.test_unit_ready(lun).expect("TEST UNIT READY");
    c.write(lun, 0, SgBuffer::from_vec(pattern(4096, 3)))
        .expect("write");
    tgtd.kill();
    c.logout()
        .expect("every command had completed: a warning, not a failure");
    let events = c.take_events();
    print(&events);
    assert!(
        matches!(events.as_slice(), [SessionEvent::LogoutUnanswered { .. }]),
        "{events:?}"
    );
    assert!(
        events[0]
            .to_string()
            .starts_with("warning: the target did not answer the Logout Request")
    );
}

#[test]
fn a_lun_that_changed_size_across_the_reinstatement_fails_the_commands() {
    if !peer_available("tgtd") || !peer_available("tgtadm") {
        return;
    }
    let mut tgtd = Tgtd::start(8 << 20, "None");
    let mut o = quick(5, Duration::from_secs(20));
    o.reconnect_delay = Duration::from_millis(200);
    let mut c = Session::connect(("127.0.0.1", tgtd.port), config(&tgtd.iqn, false), o)
        .expect("login to tgtd");
    let lun = Lun::single_level(1);
    c.test_unit_ready(lun).expect("TEST UNIT READY");
    let cap = c.read_capacity(lun).expect("READ CAPACITY");
    assert_eq!(cap.bytes(), 8 << 20);
    tgtd.kill();
    std::fs::File::options()
        .write(true)
        .open(tgtd.lun_file())
        .and_then(|f| f.set_len(16 << 20))
        .expect("grow the LUN file");
    tgtd.restart();
    let e = c
        .write(lun, 0, SgBuffer::from_vec(pattern(4096, 4)))
        .unwrap_err();
    let events = c.take_events();
    print(&events);
    let Error::Command {
        error: CommandError::SessionLost(why),
        buffer,
    } = &e
    else {
        panic!("{e}");
    };
    assert_eq!(buffer.as_ref().map(SgBuffer::len), Some(4096));
    assert!(
        why.starts_with(
            "session not reinstated: LUN 1 changed across the reinstatement (32768 blocks of \
             512 bytes, was 16384 of 512)"
        ),
        "{why}"
    );
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected);
}

#[test]
fn a_command_that_is_not_retry_safe_fails_with_the_cause_the_others_are_reissued() {
    let t = Target::start(TargetConfig {
        misbehave: Misbehave::TruncatedPdu,
        unit_attention: false,
        ..TargetConfig::default()
    })
    .unwrap();
    let mut c = Session::connect(
        t.addr(),
        config(t.iqn(), false),
        quick(1, Duration::from_secs(10)),
    )
    .unwrap();
    // The target cuts the read's Data-In and closes: the command after it is never answered.
    let read = c
        .submit(Command {
            lun: Lun::default(),
            cdb: scsi::read_10(0, 8),
            data: Data::Read(SgBuffer::zeroed(4096)),
        })
        .unwrap();
    let mut vendor = scsi::test_unit_ready();
    vendor.bytes[0] = 0xC0;
    assert!(!scsi::is_retry_safe(&vendor));
    let other = c
        .submit(Command {
            lun: Lun::default(),
            cdb: vendor,
            data: Data::None,
        })
        .unwrap();
    // The target's close arrives as an end of stream or, with the unread command in its
    // socket, as a reset: either is the cause.
    let done = c.wait(other).unwrap();
    let Err(CommandError::ConnectionLost(cause)) = done.result else {
        panic!("{:?}", done.result);
    };
    assert!(
        matches!(
            *cause,
            ConnectionError::PeerClosed | ConnectionError::Socket(_)
        ),
        "{cause:?}"
    );
    let done = c.wait(read).unwrap();
    assert!(matches!(done.result, Err(CommandError::ConnectionLost(_))));
    assert_eq!(done.buffer.map(|b| b.len()), Some(4096));
    let events = c.take_events();
    print(&events);
    assert!(
        matches!(
            events.first(),
            Some(SessionEvent::ConnectionLost {
                to_reissue: 1,
                failed: 1,
                ..
            })
        ),
        "{events:?}"
    );
    assert!(events[0].to_string().ends_with(
        "(1 command to issue again, 1 command failed: not retry-safe or out of retries)"
    ));
}

#[test]
fn a_tcp_connect_that_does_not_complete_is_a_timeout_in_words() {
    // A listener that never accepts: once its accept queue is full, Linux drops further SYNs
    // and a connect hangs.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut held = Vec::new();
    let t = Instant::now();
    let hangs = loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => break true,
        }
        if held.len() > 4096 || t.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    if !hangs {
        eprintln!("skipping: connects to a full accept queue complete here");
        return;
    }
    let mut o = Options::default();
    o.timeout = Duration::from_millis(300);
    let t = Instant::now();
    let e = Session::connect(addr, config("iqn.2024-01.io.example:t", false), o).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "no answer from the target in 0.3 s while waiting for the TCP connection to {addr} \
             to open"
        )
    );
    drop(l);
}

/// Reads one PDU (no digests) from `s`: its BHS and data segment.
fn read_pdu(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut pdu = vec![0u8; 48];
    s.read_exact(&mut pdu).expect("a BHS");
    let len = u32::from_be_bytes([0, pdu[5], pdu[6], pdu[7]]) as usize;
    let mut data = vec![0u8; len.div_ceil(4) * 4];
    s.read_exact(&mut data).expect("a data segment");
    pdu.extend_from_slice(&data);
    pdu
}

/// Answers the initiator's security and operational Login Requests: full feature phase.
fn scripted_login(s: &mut std::net::TcpStream) {
    use std::io::Write;
    use ulp_iscsi::wire::Digests;
    use ulp_iscsi::wire::login::{LoginRequestRepr, LoginResponseRepr, Stage, Stages};
    const ANSWERS: &[u8] = b"HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0\
InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=262144\0FirstBurstLength=65536\0\
ErrorRecoveryLevel=0\0MaxConnections=1\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0\
MaxOutstandingR2T=1\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0";
    for (stat_sn, (current, next)) in [
        (Stage::Security, Stage::Operational),
        (Stage::Operational, Stage::FullFeature),
    ]
    .into_iter()
    .enumerate()
    {
        let req = read_pdu(s);
        let req = LoginRequestRepr::parse(&req, Digests::NONE).expect("a Login Request");
        let r = LoginResponseRepr {
            stages: Stages {
                cont: false,
                current,
                next: Some(next),
            },
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: if next == Stage::FullFeature { 7 } else { 0 },
            itt: req.itt,
            stat_sn: stat_sn as u32,
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn + 16,
            status_class: 0,
            status_detail: 0,
            data: if next == Stage::FullFeature {
                ANSWERS
            } else {
                b""
            },
        };
        let mut b = vec![0; r.buffer_len(Digests::NONE)];
        r.emit(&mut b, Digests::NONE).unwrap();
        s.write_all(&b).unwrap();
    }
}

/// A target that drops the session with a Time2Wait longer than the replacement timeout: the
/// session waits (no attempt before Time2Wait), and at the replacement timeout every command
/// fails in words; no attempt is made with no time left ("cannot set a 0 duration timeout").
#[test]
fn a_time2wait_beyond_the_replacement_timeout_fails_in_words_without_an_attempt() {
    use std::io::Write;
    use ulp_iscsi::wire::Digests;
    use ulp_iscsi::wire::async_msg::{AsyncMsgRepr, event};
    use ulp_testbed::scripted::ScriptedPeer;
    let peer = ScriptedPeer::start(|s| {
        scripted_login(s);
        let cmd = read_pdu(s);
        assert_eq!(cmd[0] & 0x3F, 0x01, "a SCSI Command");
        // AsyncEvent 3: the session will be dropped; Time2Wait 30 s.
        let m = AsyncMsgRepr {
            lun: Lun::default(),
            stat_sn: 2,
            exp_cmd_sn: 2,
            max_cmd_sn: 20,
            event: event::SESSION_DROP,
            vcode: 0,
            params: [0, 30, 0],
            data: &[],
        };
        let mut b = vec![0; m.buffer_len(Digests::NONE)];
        m.emit(&mut b, Digests::NONE).unwrap();
        s.write_all(&b).unwrap();
    });
    let mut options = quick(5, Duration::from_millis(500));
    options.timeout = Duration::from_secs(5);
    let mut c = Session::connect(
        peer.addr(),
        config("iqn.2024-01.io.example:t", false),
        options,
    )
    .expect("scripted login");
    let started = Instant::now();
    let done = c
        .execute(Command {
            lun: Lun::default(),
            cdb: scsi::read_10(0, 8),
            data: Data::Read(SgBuffer::zeroed(4096)),
        })
        .expect("a completion");
    let took = started.elapsed();
    let events = c.take_events();
    print(&events);
    drop(peer);
    let Err(CommandError::SessionLost(why)) = &done.result else {
        panic!("{:?}", done.result);
    };
    assert!(
        why.starts_with(
            "session not reinstated within replacement_timeout 0.5 s (0 attempts); last: "
        ),
        "{why}"
    );
    assert!(why.contains("Time2Wait 30 s"), "{why}");
    assert!(!why.contains("duration"), "{why}");
    assert_eq!(done.buffer.map(|b| b.len()), Some(4096));
    assert!(
        !events.iter().any(|e| matches!(
            e,
            SessionEvent::Reinstating { .. } | SessionEvent::AttemptFailed { .. }
        )),
        "no attempt within Time2Wait: {events:?}"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// A target that never answers the caller's ping but keeps pinging the initiator (as LIO does
/// every 15 s): bytes keep arriving, so a silence timeout alone never ends the wait. The wait
/// ends at the timeout with an error that says what was waited for.
#[test]
fn a_ping_the_target_never_answers_is_a_timeout_while_the_target_keeps_talking() {
    use std::io::Write;
    use ulp_iscsi::wire::nop::NopInRepr;
    use ulp_iscsi::wire::{Digests, Itt, Ttt};
    use ulp_testbed::scripted::ScriptedPeer;
    let peer = ScriptedPeer::start(|s| {
        scripted_login(s);
        // Target pings every 100 ms for 5 s; the initiator's NOP-Out is never answered.
        for i in 0..50u32 {
            let nop = NopInRepr {
                lun: Lun::default(),
                itt: Itt::RESERVED,
                ttt: Ttt(i),
                stat_sn: 2,
                exp_cmd_sn: 1,
                max_cmd_sn: 20,
                data: &[],
            };
            let mut b = vec![0; 48];
            nop.emit(&mut b, Digests::NONE).unwrap();
            if s.write_all(&b).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut options = quick(5, Duration::from_secs(2));
    options.timeout = Duration::from_secs(1);
    let mut c = Session::connect(
        peer.addr(),
        config("iqn.2024-01.io.example:t", false),
        options,
    )
    .expect("scripted login");
    let started = Instant::now();
    let err = c.ping(b"are you there".to_vec()).unwrap_err();
    let took = started.elapsed();
    drop(c);
    drop(peer);
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(
        err.to_string()
            .ends_with("while waiting for the NOP-In answering a ping"),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// An Asynchronous Message that does not end the connection (AsyncEvent 0, a SCSI event) is
/// reported by the session in words, once; it is not kept where nobody takes it.
#[test]
fn a_scsi_asynchronous_event_is_reported_by_the_session_in_words() {
    use std::io::Write;
    use ulp_iscsi::wire::async_msg::{AsyncMsgRepr, event};
    use ulp_iscsi::wire::scsi_rsp::ScsiRspRepr;
    use ulp_iscsi::wire::{Digests, Itt};
    use ulp_testbed::scripted::ScriptedPeer;
    let peer = ScriptedPeer::start(|s| {
        scripted_login(s);
        let cmd = read_pdu(s);
        assert_eq!(cmd[0] & 0x3F, 0x01, "a SCSI Command");
        let itt = u32::from_be_bytes(cmd[16..20].try_into().unwrap());
        // SenseLength, then fixed-format sense: UNIT ATTENTION, CAPACITY DATA HAS CHANGED
        // (2Ah/09h).
        let mut data = vec![0, 18, 0x70, 0, 0x06, 0, 0, 0, 0, 10];
        data.extend_from_slice(&[0, 0, 0, 0, 0x2A, 0x09, 0, 0, 0, 0]);
        let m = AsyncMsgRepr {
            lun: Lun::default(),
            stat_sn: 2,
            exp_cmd_sn: 2,
            max_cmd_sn: 20,
            event: event::SCSI,
            vcode: 0,
            params: [0, 0, 0],
            data: &data,
        };
        let mut b = vec![0; m.buffer_len(Digests::NONE)];
        m.emit(&mut b, Digests::NONE).unwrap();
        s.write_all(&b).unwrap();
        let r = ScsiRspRepr {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow: false,
            underflow: false,
            response: 0,
            status: 0,
            itt: Itt(itt),
            snack_tag: 0,
            stat_sn: 3,
            exp_cmd_sn: 2,
            max_cmd_sn: 20,
            exp_data_sn: 0,
            bidi_residual: 0,
            residual: 0,
            sense: &[],
            response_data: &[],
        };
        let mut b = vec![0; r.buffer_len(Digests::NONE)];
        r.emit(&mut b, Digests::NONE).unwrap();
        s.write_all(&b).unwrap();
    });
    let mut c = Session::connect(
        peer.addr(),
        config("iqn.2024-01.io.example:t", false),
        quick(5, Duration::from_secs(2)),
    )
    .expect("scripted login");
    c.test_unit_ready(Lun::default()).expect("TEST UNIT READY");
    let events = c.take_events();
    print(&events);
    drop(c);
    peer.finish();
    let words: Vec<String> = events.iter().map(ToString::to_string).collect();
    assert_eq!(
        words,
        [
            "the target reported: SCSI asynchronous event for LUN 0: UNIT ATTENTION: CAPACITY DATA HAS CHANGED (ASC/ASCQ 2Ah/09h)"
        ],
        "{events:?}"
    );
}

/// A reinstatement attempt whose login succeeds but whose TEST UNIT READY gets no answer in
/// time is retried; when the session is then lost, that internal command must not surface as
/// a completion the caller never asked for (with the connection's id, or a duplicate id).
#[test]
fn an_attempt_abandoned_after_its_login_leaves_no_stray_completion() {
    let (events, outstanding, next) = abandoned_attempt(None);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SessionEvent::Recovery(_))),
        "{events:?}"
    );
    assert_eq!(outstanding, 0, "nothing else is outstanding");
    // The failed attempt names the command it waited for.
    let first = events
        .iter()
        .find_map(|e| match e {
            SessionEvent::AttemptFailed { attempt: 1, error } => Some(error.clone()),
            _ => None,
        })
        .expect("attempt 1 failed");
    assert!(
        first.starts_with("no answer from the target in 0.")
            && first
                .ends_with(" s while waiting for the answer to TEST UNIT READY after the login"),
        "{first}"
    );
    match next {
        Err(Error::Refused { reason, .. }) => assert_eq!(reason, "no command is outstanding"),
        other => panic!("a completion nobody submitted: {other:?}"),
    }
}

/// The connection's own recovery steps during a reinstatement attempt (its TEST UNIT READY
/// past the task deadline) are reported like any others.
#[test]
fn recovery_steps_during_a_reinstatement_attempt_are_reported() {
    let (events, _, _) = abandoned_attempt(Some(Duration::from_millis(100)));
    let steps: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Recovery(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.ends_with("got no answer within 0.1 s: aborting it")),
        "{events:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("ABORT TASK sent for command ")),
        "{events:?}"
    );
}

/// A target whose first connection takes a read and closes; the reinstatement's login
/// succeeds, its TEST UNIT READY is never answered, and no further connection is accepted
/// (the session is lost at its 1 s replacement timeout). The session's events, what it still
/// counts as outstanding, and what `wait_any` then says.
fn abandoned_attempt(
    task_timeout: Option<Duration>,
) -> (
    Vec<SessionEvent>,
    usize,
    Result<ulp_iscsi::Completion, Error>,
) {
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let target = std::thread::spawn(move || {
        // First connection: login, take the read, then close (the loss).
        let (mut s, _) = listener.accept().unwrap();
        scripted_login(&mut s);
        let cmd = read_pdu(&mut s);
        assert_eq!(cmd[0] & 0x3F, 0x01, "a SCSI Command");
        drop(s);
        // The reinstatement: login, then the TEST UNIT READY is never answered; no further
        // connection is accepted.
        let (mut s, _) = listener.accept().unwrap();
        drop(listener);
        scripted_login(&mut s);
        let tur = read_pdu(&mut s);
        assert_eq!(tur[0] & 0x3F, 0x01, "TEST UNIT READY");
        std::thread::sleep(Duration::from_millis(1500));
    });
    let mut options = quick(5, Duration::from_secs(1));
    options.login_timeout = Duration::from_millis(300);
    let mut cfg = config("iqn.2024-01.io.example:t", false);
    if task_timeout.is_some() {
        cfg.task_timeout = task_timeout;
    }
    let mut c = Session::connect(addr, cfg, options).expect("scripted login");
    let id = c
        .submit(Command {
            lun: Lun::default(),
            cdb: scsi::read_10(0, 8),
            data: Data::Read(SgBuffer::zeroed(4096)),
        })
        .unwrap();
    let done = c.wait(id).expect("a completion");
    let events = c.take_events();
    print(&events);
    assert!(
        matches!(done.result, Err(CommandError::SessionLost(_))),
        "{:?}",
        done.result
    );
    assert_eq!(done.buffer.map(|b| b.len()), Some(4096));
    let outstanding = c.outstanding();
    let next = c.wait_any();
    drop(c);
    target.join().unwrap();
    (events, outstanding, next)
}
