//! The strict command lifecycle and the timers of the sans-IO host, with time driven by the
//! test (no sleeps): CIDs carry a generation, a command counts as sent only once its capsule
//! went out, a PDU for a stale, unsent or wrong kind of command ends the connection, C2HData
//! must honour the HPDA the host asked for, every sent command has a deadline, and Keep Alive
//! that goes unanswered or fails ends the connection. Every buffer comes back on every path.

use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{QueueId, SansIo, SgBuffer};
use ulp_nvme_tcp::nvme;
use ulp_nvme_tcp::wire::{
    C2hDataRepr, CapsuleRespRepr, Cqe, Digests, Error as WireError, IcRespRepr, Pda,
};
use ulp_nvme_tcp::{Connection, ConnectionConfig, ConnectionError, Data, Event, Status, Violation};

const LEN: usize = 4096;

fn connect(cfg: ConnectionConfig) -> Connection<SwBackend> {
    let mut q = Connection::new(cfg, SwBackend::new());
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    let mut ic = Vec::new();
    IcRespRepr {
        cpda: Pda::ZERO,
        digests: Digests::NONE,
        maxh2cdata: 8192,
    }
    .emit(&mut ic)
    .expect("icresp");
    q.handle_bytes(&ic);
    assert!(matches!(q.poll_event(), Some(Event::Connected(_))));
    q
}

fn io_queue() -> Connection<SwBackend> {
    connect(ConnectionConfig::io(QueueId(1), 1, 4, Digests::NONE))
}

fn read(q: &mut Connection<SwBackend>) -> u16 {
    q.submit(
        nvme::read(1, 0, (LEN / 512) as u32),
        Data::Read(SgBuffer::zeroed(LEN)),
    )
    .expect("submit")
}

fn write(q: &mut Connection<SwBackend>) -> u16 {
    q.submit(
        nvme::write(1, 0, (LEN / 512) as u32),
        Data::Write(SgBuffer::from_vec(vec![7; LEN])),
    )
    .expect("submit")
}

fn flush(q: &mut Connection<SwBackend>) -> usize {
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    out.len()
}

fn resp(cid: u16, status: u16) -> Vec<u8> {
    let mut out = Vec::new();
    CapsuleRespRepr {
        cqe: Cqe {
            cid,
            status,
            ..Cqe::default()
        },
    }
    .emit(&mut out, Digests::NONE)
    .expect("resp");
    out
}

fn c2h(cid: u16, data: &[u8], pda: Pda) -> Vec<u8> {
    let mut out = Vec::new();
    C2hDataRepr {
        cccid: cid,
        datao: 0,
        datal: data.len() as u32,
        last_pdu: true,
        success: false,
    }
    .emit(&mut out, Digests::NONE, pda, data)
    .expect("c2h");
    out
}

/// Takes every event: the completions (all aborted, with their buffers whole) and the error
/// the connection ended with.
fn ended(q: &mut Connection<SwBackend>) -> (usize, ConnectionError) {
    let mut aborted = 0;
    let mut error = None;
    while let Some(e) = q.poll_event() {
        match e {
            Event::Completed(c) => {
                assert_eq!(c.status, Status::ABORTED, "CID {}", c.cid);
                assert_eq!(c.buffer.expect("buffer back").len(), LEN as u64);
                aborted += 1;
            }
            Event::Closed(e) => error = Some(e),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(q.outstanding(), 0);
    assert_eq!(q.engine().registered(), 0, "every buffer released");
    (aborted, error.expect("the connection ended"))
}

#[test]
fn a_stale_response_cannot_complete_the_slots_next_command() {
    let mut q = io_queue();
    // One slot only in use: complete command A, take it, and reuse its slot for B.
    let a = read(&mut q);
    flush(&mut q);
    let mut bytes = c2h(a, &[1; LEN], Pda::ZERO);
    bytes.extend(resp(a, 0));
    q.handle_bytes(&bytes);
    let done = q.poll_completion(Some(a)).expect("A completes");
    assert_eq!(done.status, Status::SUCCESS);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(read(&mut q));
    }
    flush(&mut q);
    let b = *ids
        .iter()
        .find(|&&c| c & 0x0FFF == a)
        .expect("A's slot reused");
    assert_ne!(b, a, "a new generation");
    // The controller repeats A's response: it names no outstanding command.
    q.handle_bytes(&resp(a, 0));
    let (aborted, e) = ended(&mut q);
    assert_eq!(
        e,
        ConnectionError::Protocol(Violation::UnknownCid {
            pdu: "CapsuleResp",
            cid: a
        })
    );
    assert!(e.to_string().contains("CapsuleResp names CID"), "{e}");
    assert_eq!(aborted, 4, "B was not completed by A's stale response");
    assert!(e.to_string().contains("stale"), "{e}");
}

#[test]
fn a_response_for_a_command_not_yet_sent_is_a_violation() {
    let mut q = io_queue();
    let w = write(&mut q);
    // The capsule was never transmitted.
    assert!(!q.is_sent(w));
    q.handle_bytes(&resp(w, 0));
    let (aborted, e) = ended(&mut q);
    assert_eq!(
        e,
        ConnectionError::Protocol(Violation::NotSent {
            pdu: "CapsuleResp",
            cid: w
        })
    );
    assert_eq!(
        aborted, 1,
        "the write fails, it is not reported as a success"
    );
    assert!(e.to_string().contains("has not sent yet"), "{e}");
}

#[test]
fn data_for_a_read_not_yet_sent_is_refused_before_placement() {
    let mut q = io_queue();
    let r = read(&mut q);
    assert_eq!(
        q.engine().registered(),
        0,
        "setup happens when the capsule goes out"
    );
    q.handle_bytes(&c2h(r, &[9; LEN], Pda::ZERO));
    let mut buffer = None;
    let mut error = None;
    while let Some(e) = q.poll_event() {
        match e {
            Event::Completed(c) => buffer = c.buffer,
            Event::Closed(e) => error = Some(e),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        error,
        Some(ConnectionError::Protocol(Violation::NotSent {
            pdu: "C2HData",
            cid: r
        }))
    );
    assert_eq!(
        buffer.expect("buffer back").into_vec(),
        vec![0; LEN],
        "nothing was placed in it"
    );
}

#[test]
fn data_for_a_write_names_the_problem() {
    let mut q = io_queue();
    let w = write(&mut q);
    flush(&mut q);
    q.handle_bytes(&c2h(w, &[9; 512], Pda::ZERO));
    let (_, e) = ended(&mut q);
    assert_eq!(e, ConnectionError::Protocol(Violation::DataForNonRead(w)));
    assert!(e.to_string().contains("reads no data"), "{e}");
}

#[test]
fn c2h_data_must_honour_the_hpda_asked_for() {
    let hpda = Pda::new(3).expect("pda"); // 16 bytes
    let mut q = connect(ConnectionConfig::io(QueueId(1), 1, 4, Digests::NONE).with_hpda(hpda));
    let r = read(&mut q);
    flush(&mut q);
    // Aligned to 16: accepted.
    let mut ok = c2h(r, &[5; LEN], hpda);
    ok.extend(resp(r, 0));
    q.handle_bytes(&ok);
    let c = q.poll_completion(Some(r)).expect("completion");
    assert_eq!(c.status, Status::SUCCESS);
    assert_eq!(c.buffer.expect("buffer").into_vec(), vec![5; LEN]);
    // PDO 24 (no padding): refused before any byte is placed.
    let r = read(&mut q);
    flush(&mut q);
    q.handle_bytes(&c2h(r, &[6; LEN], Pda::ZERO));
    let (aborted, e) = ended(&mut q);
    assert_eq!(aborted, 1);
    assert_eq!(
        e,
        ConnectionError::Wire(WireError::MisalignedPdo {
            pdo: 24,
            alignment: 16
        })
    );
    assert!(e.to_string().contains("data alignment"), "{e}");
}

#[test]
fn a_sent_command_times_out_once_at_its_deadline() {
    let timeout = Duration::from_secs(30);
    let mut q = io_queue();
    let t0 = Instant::now();
    q.handle_timeout(t0);
    assert_eq!(q.poll_timeout(), None, "nothing outstanding, no timer");
    let r = read(&mut q);
    assert_eq!(q.poll_timeout(), None, "not sent yet: no deadline");
    flush(&mut q);
    assert_eq!(
        q.poll_timeout(),
        Some(t0 + timeout),
        "io_timeout after it went out"
    );
    let t1 = t0 + Duration::from_secs(10);
    q.handle_timeout(t1);
    let w = write(&mut q);
    flush(&mut q);
    assert_eq!(
        q.poll_timeout(),
        Some(t0 + timeout),
        "the earliest deadline"
    );
    q.handle_timeout(t0 + timeout - Duration::from_millis(1));
    assert!(q.poll_event().is_none());
    q.handle_timeout(t0 + timeout);
    match q.poll_event() {
        Some(Event::TimedOut {
            cid,
            command,
            waited,
        }) => {
            assert_eq!((cid, command, waited), (r, "Read", timeout));
        }
        other => panic!("expected the read's timeout, got {other:?}"),
    }
    assert!(q.poll_event().is_none(), "reported once");
    assert_eq!(
        q.poll_timeout(),
        Some(t1 + timeout),
        "the write's deadline next"
    );
    // The write completes in time: it never times out.
    q.handle_bytes(&resp(w, 0));
    assert_eq!(
        q.poll_completion(Some(w)).expect("write").status,
        Status::SUCCESS
    );
    q.handle_timeout(t1 + timeout * 2);
    assert!(q.poll_event().is_none());
    assert_eq!(
        q.outstanding(),
        1,
        "the timed-out read is still the connection's"
    );
    // The caller gives up: the read's buffer comes back.
    q.close();
    let (aborted, e) = ended(&mut q);
    assert_eq!((aborted, e), (1, ConnectionError::LocallyClosed));
}

#[test]
fn a_command_sent_before_the_time_is_known_gets_its_deadline_from_the_next_time() {
    let timeout = Duration::from_secs(5);
    let mut q = connect(
        ConnectionConfig::io(QueueId(1), 1, 4, Digests::NONE).with_command_timeout(Some(timeout)),
    );
    read(&mut q);
    flush(&mut q);
    let t0 = Instant::now();
    q.handle_timeout(t0);
    assert_eq!(q.poll_timeout(), Some(t0 + timeout));
    q.handle_timeout(t0 + timeout);
    assert!(matches!(q.poll_event(), Some(Event::TimedOut { .. })));
}

#[test]
fn no_command_timeout_no_deadline() {
    let mut q =
        connect(ConnectionConfig::io(QueueId(1), 1, 4, Digests::NONE).with_command_timeout(None));
    let t0 = Instant::now();
    q.handle_timeout(t0);
    read(&mut q);
    flush(&mut q);
    assert_eq!(q.poll_timeout(), None);
    q.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(q.poll_event().is_none());
}

fn admin_with_keep_alive(interval: Duration, t0: Instant) -> (Connection<SwBackend>, u16) {
    let cfg = ConnectionConfig::admin(QueueId(0), Digests::NONE).with_keep_alive(Some(interval));
    let mut q = connect(cfg);
    q.handle_timeout(t0);
    q.handle_timeout(t0 + interval);
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    assert_eq!(out[0], 0x04, "Keep Alive capsule");
    assert_eq!(out[8], nvme::OPC_KEEP_ALIVE);
    let cid = u16::from_le_bytes([out[10], out[11]]);
    (q, cid)
}

#[test]
fn an_unanswered_keep_alive_ends_the_connection_after_the_kato() {
    let interval = Duration::from_millis(2500);
    let t0 = Instant::now();
    let (mut q, _) = admin_with_keep_alive(interval, t0);
    let sent_at = t0 + interval;
    // The next interval passes: no second Keep Alive on top of the first.
    q.handle_timeout(sent_at + interval);
    assert_eq!(flush(&mut q), 0);
    assert!(q.is_open());
    q.handle_timeout(sent_at + 2 * interval - Duration::from_millis(1));
    assert!(q.is_open());
    q.handle_timeout(sent_at + 2 * interval);
    let (_, e) = ended(&mut q);
    assert_eq!(
        e,
        ConnectionError::KeepAliveTimedOut {
            waited: 2 * interval
        }
    );
    assert_eq!(
        e.to_string(),
        "the controller did not answer Keep Alive in 5.0 s (the keep-alive timeout)"
    );
}

#[test]
fn a_failed_keep_alive_ends_the_connection() {
    let interval = Duration::from_millis(2500);
    let t0 = Instant::now();
    let (mut q, cid) = admin_with_keep_alive(interval, t0);
    let status = Status::generic(nvme::SC_INVALID_FIELD);
    q.handle_bytes(&resp(cid, status.to_cqe()));
    let (_, e) = ended(&mut q);
    assert_eq!(e, ConnectionError::KeepAliveFailed(status));
    assert!(e.to_string().contains("Invalid Field in Command"), "{e}");
}

#[test]
fn a_second_r2t_while_one_is_outstanding_exceeds_maxr2t() {
    use ulp_nvme_tcp::wire::R2tRepr;
    let mut q = io_queue();
    let w = q
        .submit(
            nvme::write(1, 0, 32),
            Data::Write(SgBuffer::from_vec(vec![3; 16384])),
        )
        .expect("submit");
    flush(&mut q);
    let r2t = |r2to: u32, r2tl: u32| {
        let mut out = Vec::new();
        R2tRepr {
            cccid: w,
            ttag: 1,
            r2to,
            r2tl,
        }
        .emit(&mut out, Digests::NONE)
        .expect("r2t");
        out
    };
    // Two R2Ts back to back, before the host had a chance to send the first one's data.
    let mut bytes = r2t(0, 8192);
    bytes.extend(r2t(8192, 8192));
    q.handle_bytes(&bytes);
    let mut error = None;
    while let Some(e) = q.poll_event() {
        if let Event::Closed(e) = e {
            error = Some(e);
        }
    }
    assert_eq!(
        error,
        Some(ConnectionError::Protocol(Violation::R2tLimit(w)))
    );
}
