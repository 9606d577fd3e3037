//! The sans-IO connection without sockets: the CmdSN window, and arbitrary bytes from a
//! "target" after login (never a panic, never a byte outside the registered buffer).

mod common;

use proptest::prelude::*;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SansIo;
use ulp_ddp_core::{QueueId, SgBuffer};
use ulp_iscsi::connection::{Phase, Residual};
use ulp_iscsi::wire::data_in::{DataInRepr, DataInStatus};
use ulp_iscsi::wire::login::Stage;
use ulp_iscsi::wire::nop::NopInRepr;
use ulp_iscsi::wire::scsi_rsp::ScsiRspRepr;
use ulp_iscsi::wire::{Digests, Itt, Lun, Ttt};
use ulp_iscsi::{
    Command, CommandError, Connection, ConnectionConfig, ConnectionError, Data, Event, Violation,
    scsi,
};

fn login_response(itt: u32, current: Stage, next: Stage, max_cmd_sn: u32) -> Vec<u8> {
    let text: &[u8] = if current == Stage::Operational {
        common::ANSWERS
    } else {
        b""
    };
    login_response_with(itt, current, next, max_cmd_sn, text)
}

fn login_response_with(
    itt: u32,
    current: Stage,
    next: Stage,
    max_cmd_sn: u32,
    text: &[u8],
) -> Vec<u8> {
    common::login_response(itt, current, next, max_cmd_sn, text)
}

/// The configuration of every connection here: queue 1, 8 deep.
fn config() -> ConnectionConfig {
    let mut config = ConnectionConfig::normal("iqn.i:x", "iqn.t:y");
    config.queue_id = QueueId(1);
    config.queue_depth = 8;
    config
}

/// Feeds target bytes (the copy path); `Err` with the failure once the connection failed.
fn receive(c: &mut Connection<SwBackend>, bytes: &[u8]) -> Result<(), ConnectionError> {
    c.handle_bytes(bytes);
    if c.phase() == Phase::Failed {
        Err(c
            .failure()
            .cloned()
            .expect("a failed connection names its failure"))
    } else {
        Ok(())
    }
}

/// The ITT of the next PDU to send (bytes 16..20 of its header).
fn next_itt(c: &mut Connection<SwBackend>) -> u32 {
    let t = c.poll_transmit().expect("a PDU to send");
    u32::from_be_bytes(t.parts()[0][16..20].try_into().unwrap())
}

/// A connection logged in with the target's MaxCmdSN = `max_cmd_sn` (ExpCmdSN 1).
fn logged_in(max_cmd_sn: u32) -> Connection<SwBackend> {
    logged_in_with(max_cmd_sn, SwBackend::new())
}

fn logged_in_with(max_cmd_sn: u32, backend: SwBackend) -> Connection<SwBackend> {
    let mut c = Connection::new(config(), backend);
    c.start_login().unwrap();
    let itt = next_itt(&mut c);
    receive(
        &mut c,
        &login_response(itt, Stage::Security, Stage::Operational, 1),
    )
    .unwrap();
    assert!(c.poll_transmit().is_some(), "operational request");
    receive(
        &mut c,
        &login_response(itt, Stage::Operational, Stage::FullFeature, max_cmd_sn),
    )
    .unwrap();
    assert!(matches!(c.poll_event(), Some(Event::Connected)));
    assert_eq!(c.phase(), Phase::FullFeature);
    assert_eq!(c.tsih(), 7);
    c
}

/// The final Login Response (HeaderDigest=CRC32C negotiated) and a NOP-In ping framed with a
/// header digest arrive in the same piece, cut at every position: the NOP-In must be framed with
/// the new settings (52-byte header), i.e. they take effect exactly at the PDU boundary.
#[test]
fn header_digest_applies_from_the_pdu_after_the_final_login_response() {
    let mut wanted = ulp_iscsi::keys::Wanted::default();
    wanted.header_digest = ulp_iscsi::keys::DigestPref::Prefer;
    let nop = NopInRepr {
        lun: Lun::default(),
        itt: Itt::RESERVED,
        ttt: Ttt(0x55),
        stat_sn: 101,
        exp_cmd_sn: 1,
        max_cmd_sn: 9,
        data: &[],
    };
    let hd = Digests {
        header: true,
        data: false,
    };
    let mut nop_bytes = vec![0; nop.buffer_len(hd)];
    nop.emit(&mut nop_bytes, hd).unwrap();
    assert_eq!(nop_bytes.len(), 52);
    let mut stream = Vec::new();
    let mut login_len = 0;
    for cut in 1..=FINAL_AND_NOP_MAX {
        let mut config = config();
        config.wanted = wanted.clone();
        let mut c = Connection::new(config, SwBackend::new());
        c.start_login().unwrap();
        let itt = next_itt(&mut c);
        receive(
            &mut c,
            &login_response(itt, Stage::Security, Stage::Operational, 1),
        )
        .unwrap();
        assert!(c.poll_transmit().is_some(), "operational request");
        if stream.is_empty() {
            stream = login_response_with(
                itt,
                Stage::Operational,
                Stage::FullFeature,
                2,
                &String::from_utf8_lossy(common::ANSWERS)
                    .replace("HeaderDigest=None", "HeaderDigest=CRC32C")
                    .into_bytes(),
            );
            login_len = stream.len();
            stream.extend_from_slice(&nop_bytes);
        }
        if cut > stream.len() {
            break;
        }
        // Cut at `cut` (the whole stream in one piece when `cut` is its length).
        let (a, b) = stream.split_at(cut);
        receive(&mut c, a).unwrap();
        receive(&mut c, b).unwrap();
        assert_eq!(
            c.phase(),
            Phase::FullFeature,
            "cut {cut} (login {login_len})"
        );
        assert!(c.params().header_digest);
        // The queue was offered again with the negotiated digests.
        assert!(c.engine().config().header_digest, "cut {cut}");
        assert!(!c.engine().config().data_digest, "cut {cut}");
        assert_eq!(c.engine().stats().queues_added, 2, "cut {cut}");
        assert!(matches!(c.poll_event(), Some(Event::Connected)));
        assert!(c.poll_event().is_none(), "cut {cut}: no failure");
        // The NOP-In was understood: its window update and the ping's answer, a NOP-Out with a
        // header digest (48 + 4 bytes) echoing the TTT.
        assert_eq!(c.sequence_numbers().2, 9, "cut {cut}");
        let header = c
            .poll_transmit()
            .expect("NOP-Out answering the ping")
            .parts()[0]
            .to_vec();
        assert_eq!(header.len(), 52);
        assert_eq!(header[0] & 0x3F, 0x00);
        assert_eq!(&header[20..24], &0x55u32.to_be_bytes());
        assert!(c.poll_transmit().is_none());
        // The stream is still in step: the next PDU (another ping) frames and is answered.
        receive(&mut c, &nop_bytes).unwrap();
        assert!(
            c.poll_transmit().is_some(),
            "cut {cut}: second ping answered"
        );
        assert!(c.poll_event().is_none(), "cut {cut}: no failure");
    }
    assert!(login_len > 48 && stream.len() == login_len + 52);
    // The NOP-In's header digest is verified: a wrong one in the same piece as the final
    // Login Response fails the connection.
    let mut config = config();
    config.wanted = wanted;
    let mut c = Connection::new(config, SwBackend::new());
    c.start_login().unwrap();
    let itt = next_itt(&mut c);
    receive(
        &mut c,
        &login_response(itt, Stage::Security, Stage::Operational, 1),
    )
    .unwrap();
    let mut bad = stream.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = receive(&mut c, &bad).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectionError::Engine(ulp_ddp_core::Error::HeaderDigest { .. })
        ),
        "{err:?}"
    );
}

/// More than the final Login Response and NOP-In of the test above take.
const FINAL_AND_NOP_MAX: usize = 1024;

fn read(c: &mut Connection<SwBackend>, len: usize) -> ulp_iscsi::CommandId {
    c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::read_10(0, (len / 512) as u16),
        data: Data::Read(SgBuffer::from_vec(vec![0xEE; len])),
    })
}

#[test]
fn cmd_sn_window_holds_commands_until_it_opens() {
    // MaxCmdSN 2 with ExpCmdSN 1: two commands may go.
    let mut c = logged_in(2);
    for _ in 0..4 {
        read(&mut c, 512);
    }
    let mut sent = 0;
    while c.poll_transmit().is_some() {
        sent += 1;
    }
    assert_eq!(sent, 2);
    assert_eq!(c.sequence_numbers().0, 3);
    // A window update that would shrink it is ignored; one that opens it releases the rest.
    for (exp, max) in [(1u32, 0u32), (3, 4)] {
        let nop = NopInRepr {
            lun: Lun::default(),
            itt: Itt::RESERVED,
            ttt: Ttt::RESERVED,
            stat_sn: 101,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            data: &[],
        };
        let mut b = vec![0; 48];
        nop.emit(&mut b, Digests::NONE).unwrap();
        receive(&mut c, &b).unwrap();
    }
    let mut sent = 0;
    while c.poll_transmit().is_some() {
        sent += 1;
    }
    assert_eq!(sent, 2);
    assert_eq!(c.sequence_numbers(), (5, 3, 4, 101));
    // Serial arithmetic across the wrap.
    assert!(ulp_iscsi::serial::lt(u32::MAX, 1));
}

#[test]
fn tags_stay_within_the_backend_tag_range() {
    // A backend tracking 2-bit tags: at most 4 ITTs (0..4) although the queue is 8 deep.
    let mut limits = ulp_ddp_core::Limits::unlimited(ulp_iscsi::ISCSI);
    limits.tag_range = ulp_ddp_core::TagRange::Bits(2);
    let mut c = logged_in_with(100, SwBackend::with_limits(limits));
    for _ in 0..6 {
        read(&mut c, 512);
    }
    let mut itts = Vec::new();
    while let Some(t) = c.poll_transmit() {
        itts.push(u32::from_be_bytes(t.parts()[0][16..20].try_into().unwrap()));
    }
    assert_eq!(itts.len(), 4, "{itts:?}");
    assert!(itts.iter().all(|&i| i < 4), "{itts:?}");
    assert_eq!(c.outstanding(), 6);
    assert_eq!(c.engine().stats().setups_declined, 0);
}

/// Byte ranges of the buffer that Data-In PDUs for `itt` in `stream` could place (a reference
/// framer: every complete PDU until one that does not frame). An over-approximation of what the
/// engine may write: it stops earlier, and refuses overlaps and out-of-range data.
fn placeable(stream: &[u8], itt: u32) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut at = 0;
    while let Some(bhs) = stream.get(at..at + 48) {
        let Ok(f) = ulp_iscsi::wire::bhs::frame(bhs, Digests::NONE) else {
            break;
        };
        if bhs[0] & 0x3F == 0x25 && bhs[16..20] == itt.to_be_bytes() {
            let off = u64::from(u32::from_be_bytes(bhs[40..44].try_into().unwrap()));
            ranges.push((off, off + f.data_len as u64));
        }
        at += f.total_len;
    }
    ranges
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_target_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        prefix in proptest::collection::vec(any::<u8>(), 48..49),
        offset in 0u32..4200,
        len in 0usize..600,
        cut in 1usize..64,
    ) {
        let mut c = logged_in(50);
        // The ITT the read really got (the login used one before it).
        let (id, itt) = read_with_itt(&mut c, 4096);
        // A valid Data-In header for the read (offset and length anywhere, in or out of the
        // buffer) with 0x11 payload, then a Data-In-looking header, then anything.
        let mut stream = data_in_pdu(itt, 0, offset, &vec![0x11; len], None);
        let mut second = prefix;
        second[0] = 0x25;
        second[4] = 0;
        second[16..20].copy_from_slice(&itt.to_be_bytes());
        stream.extend_from_slice(&second);
        stream.extend_from_slice(&bytes);
        for piece in stream.chunks(cut) {
            c.handle_bytes(piece);
        }
        c.fail(ConnectionError::PeerClosed);
        let mut buffer = None;
        while let Some(e) = c.poll_event() {
            if let Event::Completed(done) = e {
                prop_assert_eq!(done.id, id);
                buffer = done.buffer;
            }
        }
        let b = buffer.expect("the read buffer always comes back").into_vec();
        prop_assert_eq!(b.len(), 4096);
        prop_assert_eq!(c.engine().registered(), 0);
        // Placement was reached: the first PDU's data is in the buffer when it fits.
        let end = offset as usize + len;
        if end <= 4096 {
            prop_assert!(b[offset as usize..end].iter().all(|&x| x == 0x11));
        }
        // Canary bytes outside every range a Data-In for the read could place stay untouched.
        let ranges = placeable(&stream, itt);
        prop_assert_eq!(ranges.first().copied(), Some((u64::from(offset), end as u64)));
        for (i, &x) in b.iter().enumerate() {
            let i = i as u64;
            if !ranges.iter().any(|&(s, e)| s <= i && i < e) {
                prop_assert_eq!(x, 0xEE, "byte {} written outside every Data-In", i);
            }
        }
    }
}

/// A read of `len` bytes into a buffer filled with 0xEE; returns its id and ITT (read from
/// the SCSI Command header the connection transmitted).
fn read_with_itt(c: &mut Connection<SwBackend>, len: usize) -> (ulp_iscsi::CommandId, u32) {
    let id = read(c, len);
    let header = c.poll_transmit().expect("SCSI Command").parts()[0].to_vec();
    assert_eq!(header[0] & 0x3F, 0x01);
    let itt = u32::from_be_bytes(header[16..20].try_into().unwrap());
    assert!(c.poll_transmit().is_none());
    (id, itt)
}

fn data_in_pdu(
    itt: u32,
    data_sn: u32,
    offset: u32,
    data: &[u8],
    status: Option<DataInStatus>,
) -> Vec<u8> {
    let r = DataInRepr {
        final_: status.is_some(),
        ack: false,
        status,
        lun: Lun::default(),
        itt: Itt(itt),
        ttt: Ttt::RESERVED,
        exp_cmd_sn: 2,
        max_cmd_sn: 50,
        data_sn,
        buffer_offset: offset,
        data,
    };
    let mut b = vec![0; r.buffer_len(Digests::NONE)];
    r.emit(&mut b, Digests::NONE).unwrap();
    b
}

fn good(stat_sn: u32, underflow: Option<u32>) -> Option<DataInStatus> {
    Some(DataInStatus {
        status: 0,
        stat_sn,
        overflow: false,
        underflow: underflow.is_some(),
        residual: underflow.unwrap_or(0),
    })
}

fn scsi_response(itt: u32, stat_sn: u32, underflow: Option<u32>) -> Vec<u8> {
    let r = ScsiRspRepr {
        bidi_overflow: false,
        bidi_underflow: false,
        overflow: false,
        underflow: underflow.is_some(),
        response: 0,
        status: 0,
        itt: Itt(itt),
        snack_tag: 0,
        stat_sn,
        exp_cmd_sn: 2,
        max_cmd_sn: 50,
        exp_data_sn: 1,
        bidi_residual: 0,
        residual: underflow.unwrap_or(0),
        sense: &[],
        response_data: &[],
    };
    let mut b = vec![0; r.buffer_len(Digests::NONE)];
    r.emit(&mut b, Digests::NONE).unwrap();
    b
}

fn completion(c: &mut Connection<SwBackend>) -> ulp_iscsi::Completion {
    let mut done = None;
    while let Some(e) = c.poll_event() {
        if let Event::Completed(d) = e {
            assert!(done.is_none(), "one completion");
            done = Some(d);
        }
    }
    done.expect("the command completed")
}

#[test]
fn data_in_buffer_offset_must_follow_the_previous_one() {
    // DataPDUInOrder=Yes (the default): a Data-In that skips bytes fails the connection and
    // the buffer comes back.
    let mut c = logged_in(50);
    assert!(c.params().data_pdu_in_order);
    let (id, itt) = read_with_itt(&mut c, 1024);
    receive(&mut c, &data_in_pdu(itt, 0, 0, &[1; 256], None)).unwrap();
    let err = receive(
        &mut c,
        &data_in_pdu(itt, 1, 512, &[2; 512], good(101, None)),
    )
    .unwrap_err();
    assert_eq!(
        err,
        ConnectionError::Protocol(Violation::DataOffset {
            itt,
            expected: 256,
            received: 512
        })
    );
    assert_eq!(c.phase(), Phase::Failed);
    let mut done = None;
    while let Some(e) = c.poll_event() {
        if let Event::Completed(d) = e {
            done = Some(d);
        }
    }
    let done = done.expect("completed");
    assert_eq!(done.id, id);
    assert_eq!(
        done.result,
        Err(CommandError::ConnectionLost(Box::new(err)))
    );
    let b = done.buffer.expect("buffer back").into_vec();
    // The engine placed both PDUs inside the buffer before the connection saw the offset;
    // the skipped bytes were never written.
    assert!(b[..256].iter().all(|&x| x == 1));
    assert!(b[256..512].iter().all(|&x| x == 0xEE));
    assert_eq!(c.engine().registered(), 0);
}

#[test]
fn good_status_with_missing_data_is_short_data() {
    // Data-In with S: GOOD after 512 of 1024 bytes.
    let mut c = logged_in(50);
    let (id, itt) = read_with_itt(&mut c, 1024);
    receive(&mut c, &data_in_pdu(itt, 0, 0, &[3; 512], good(101, None))).unwrap();
    let done = completion(&mut c);
    assert_eq!(done.id, id);
    assert_eq!(
        done.result,
        Err(CommandError::ShortData {
            expected: 1024,
            received: 512
        })
    );
    assert_eq!(done.buffer.expect("buffer back").len(), 1024);
    // The command failed, not the connection.
    assert_eq!(c.phase(), Phase::FullFeature);

    // SCSI Response GOOD after 512 of 1024 bytes, no residual: short data.
    let (_, itt) = read_with_itt(&mut c, 1024);
    receive(&mut c, &data_in_pdu(itt, 0, 0, &[4; 512], None)).unwrap();
    receive(&mut c, &scsi_response(itt, 102, None)).unwrap();
    assert_eq!(
        completion(&mut c).result,
        Err(CommandError::ShortData {
            expected: 1024,
            received: 512
        })
    );
    // A residual that accounts for the missing bytes is a success, reporting them.
    let (_, itt) = read_with_itt(&mut c, 1024);
    receive(&mut c, &data_in_pdu(itt, 0, 0, &[5; 512], None)).unwrap();
    receive(&mut c, &scsi_response(itt, 103, Some(512))).unwrap();
    let done = completion(&mut c);
    let outcome = done.result.expect("GOOD with a matching residual");
    assert_eq!(outcome.data_in, 512);
    assert_eq!(outcome.residual, Residual::Underflow(512));
    // A residual claiming less than what is missing is still short data.
    let (_, itt) = read_with_itt(&mut c, 1024);
    receive(
        &mut c,
        &data_in_pdu(itt, 0, 0, &[6; 256], good(104, Some(512))),
    )
    .unwrap();
    assert_eq!(
        completion(&mut c).result,
        Err(CommandError::ShortData {
            expected: 512,
            received: 256
        })
    );
    assert_eq!(c.phase(), Phase::FullFeature);
}

#[test]
fn queue_config_carries_required_digests() {
    let mut config = config();
    config.wanted.header_digest = ulp_iscsi::keys::DigestPref::Require;
    let c = Connection::new(config, SwBackend::new());
    assert!(c.engine().config().header_digest);
    assert!(!c.engine().config().data_digest);
    let c = Connection::new(self::config(), SwBackend::new());
    assert!(!c.engine().config().header_digest);
}

/// A target may answer a write with its status before taking all the data it asked for (a
/// CHECK CONDITION, say). The Data-Out PDUs still queued for that write must not go out: its
/// task tag is free again, and the next command that takes it would send them with its own
/// buffer, breaking the byte stream.
#[test]
fn no_data_out_after_the_write_completed() {
    // One task tag, so the next command takes the write's.
    let mut limits = ulp_ddp_core::Limits::unlimited(ulp_iscsi::ISCSI);
    limits.tag_range = ulp_ddp_core::TagRange::Bits(0);
    let mut c = logged_in_with(100, SwBackend::with_limits(limits));
    let id = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::write_10(0, 128),
        data: Data::Write(SgBuffer::from_vec(vec![0x5A; 64 * 1024])),
    });
    let header = c.poll_transmit().expect("SCSI Command").parts()[0].to_vec();
    assert_eq!(header[0] & 0x3F, 0x01);
    let itt = u32::from_be_bytes(header[16..20].try_into().unwrap());
    while c.poll_transmit().is_some() {}
    // The target asks for the whole write, then answers before taking any of it.
    let r2t = ulp_iscsi::wire::r2t::R2tRepr {
        lun: Lun::default(),
        itt: Itt(itt),
        ttt: Ttt(9),
        stat_sn: 101,
        exp_cmd_sn: 2,
        max_cmd_sn: 50,
        r2t_sn: 0,
        buffer_offset: 0,
        desired_len: 64 * 1024,
    };
    let mut b = vec![0; 48];
    r2t.emit(&mut b, Digests::NONE).unwrap();
    receive(&mut c, &b).unwrap();
    receive(&mut c, &scsi_response(itt, 101, None)).unwrap();
    let done = completion(&mut c);
    assert_eq!(done.id, id);
    assert_eq!(
        done.buffer.map(|b| b.len()),
        Some(64 * 1024),
        "the buffer comes back"
    );
    // A new write takes the tag; no Data-Out of the finished write goes out with its buffer.
    c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::write_10(0, 1),
        data: Data::Write(SgBuffer::from_vec(vec![0xA5; 512])),
    });
    let mut opcodes = Vec::new();
    while let Some(t) = c.poll_transmit() {
        opcodes.push(t.parts()[0][0] & 0x3F);
    }
    assert_eq!(
        opcodes,
        [0x01],
        "only the new SCSI Command (its data immediate)"
    );
    assert_eq!(c.phase(), Phase::FullFeature);
}

/// A NOP-In answering the NOP-Out `ping` (its ITT, StatSN `stat_sn`).
fn nop_in(itt: u32, stat_sn: u32) -> Vec<u8> {
    let nop = NopInRepr {
        lun: Lun::default(),
        itt: Itt(itt),
        ttt: Ttt::RESERVED,
        stat_sn,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        data: &[],
    };
    let mut b = vec![0; 48];
    nop.emit(&mut b, Digests::NONE).unwrap();
    b
}

/// NOP-Out pings are a timer of the state machine, driven only by `handle_timeout(now)`: the
/// first goes out one interval after full feature phase began, none while the target talks,
/// and one unanswered for the ping timeout fails the connection.
#[test]
fn nop_out_pings_are_timers() {
    use std::time::{Duration, Instant};
    let interval = Duration::from_secs(5);
    let mut c = logged_in(100);
    let t0 = Instant::now();
    c.handle_timeout(t0);
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + interval),
        "armed at full feature phase"
    );
    c.handle_timeout(t0 + interval / 2);
    assert!(c.poll_transmit().is_none(), "nothing before the interval");
    // The first interval passes in silence: a ping.
    c.handle_timeout(t0 + interval);
    let (opcode, itt, ttt) = {
        let t = c.poll_transmit().expect("a NOP-Out");
        let h = t.parts()[0];
        (
            h[0] & 0x3F,
            u32::from_be_bytes(h[16..20].try_into().unwrap()),
            u32::from_be_bytes(h[20..24].try_into().unwrap()),
        )
    };
    assert_eq!(
        (opcode, ttt),
        (0x00, 0xFFFF_FFFF),
        "a NOP-Out asking for an answer"
    );
    assert_ne!(itt, 0xFFFF_FFFF);
    // Its answer comes; the next interval has traffic (the answer), so no ping follows it.
    receive(&mut c, &nop_in(itt, 101)).unwrap();
    assert!(
        c.poll_event().is_none(),
        "the connection's own ping is no event"
    );
    c.handle_timeout(t0 + 2 * interval);
    assert!(
        c.poll_transmit().is_none(),
        "the target spoke in the last interval"
    );
    // Silence again: a ping, and no answer for the ping timeout (5 s): the connection fails.
    c.handle_timeout(t0 + 3 * interval);
    assert!(c.poll_transmit().is_some(), "a second NOP-Out");
    assert_eq!(c.poll_timeout(), Some(t0 + 4 * interval));
    c.handle_timeout(t0 + 4 * interval);
    assert!(c.is_closed());
    let closed = std::iter::from_fn(|| c.poll_event())
        .find_map(|e| match e {
            Event::Closed(e) => Some(e),
            _ => None,
        })
        .expect("Closed");
    assert!(
        matches!(closed, ConnectionError::PingTimeout { waited } if waited == interval),
        "{closed}"
    );
    assert_eq!(
        closed.to_string(),
        "the target did not answer a NOP-Out ping within 5.0 s"
    );
}

/// An empty read buffer has nothing to register, but it is still the caller's: it comes back
/// with the completion, on success and when the connection ends (found by the `iscsi_receive`
/// fuzz target: it was dropped, and the completion carried no buffer).
#[test]
fn an_empty_read_buffer_comes_back() {
    let mut c = logged_in(100);
    let id = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::read_10(0, 0),
        data: Data::Read(SgBuffer::from_vec(Vec::with_capacity(4096))),
    });
    let itt = next_itt(&mut c);
    receive(&mut c, &scsi_response(itt, 101, None)).unwrap();
    let done = completion(&mut c);
    assert_eq!(done.id, id);
    assert!(done.result.is_ok(), "{:?}", done.result);
    assert_eq!(
        done.buffer.map(|b| b.len()),
        Some(0),
        "the buffer comes back"
    );

    // And when the connection ends first.
    let id = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::read_10(0, 0),
        data: Data::Read(SgBuffer::from_vec(Vec::new())),
    });
    while c.poll_transmit().is_some() {}
    c.close();
    let done = completion(&mut c);
    assert_eq!(done.id, id);
    assert_eq!(
        done.result.unwrap_err(),
        CommandError::ConnectionLost(Box::new(ConnectionError::LocallyClosed))
    );
    assert_eq!(
        done.buffer.map(|b| b.len()),
        Some(0),
        "the buffer comes back"
    );
}

/// A target answering an ITT twice: the second answer arrives when the tag is already the next
/// command's, whose SCSI Command has not even gone out. The target cannot know that command, so
/// the answer is a protocol violation; taking it would complete a command the target never
/// received, and its SCSI Command would then go out under a tag already free again (found by
/// the `iscsi_receive` fuzz target).
#[test]
fn an_answer_for_a_command_not_sent_yet_is_refused() {
    // One task tag, so the second read waits for the first one's.
    let mut limits = ulp_ddp_core::Limits::unlimited(ulp_iscsi::ISCSI);
    limits.tag_range = ulp_ddp_core::TagRange::Bits(0);
    let mut c = logged_in_with(100, SwBackend::with_limits(limits));
    let (first, itt) = read_with_itt(&mut c, 512);
    let second = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::read_10(1, 1),
        data: Data::Read(SgBuffer::zeroed(512)),
    });
    assert!(
        c.poll_transmit().is_none(),
        "the second read waits for a tag"
    );
    // The first read's answer (without its data: a CHECK CONDITION would do as well).
    receive(&mut c, &scsi_response(itt, 101, Some(512))).unwrap();
    // The same answer again: by now the tag is the second read's, not yet sent.
    let err = receive(&mut c, &scsi_response(itt, 102, Some(512))).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectionError::Protocol(Violation::UnknownItt { itt: i, .. }) if i == itt
        ),
        "{err:?}"
    );
    let mut done = Vec::new();
    while let Some(e) = c.poll_event() {
        if let Event::Completed(d) = e {
            done.push((d.id, d.result.is_ok(), d.buffer.map(|b| b.len())));
        }
    }
    assert_eq!(
        done,
        [(first, true, Some(512)), (second, false, Some(512))],
        "the first read completes, the second fails, both buffers come back"
    );
    assert!(
        c.poll_transmit().is_none(),
        "the second read never goes out"
    );
}

/// The same for a Reject: one naming the ITT of a command whose SCSI Command has not gone out
/// (the tag was the previous command's) does not end that command.
#[test]
fn a_reject_for_a_command_not_sent_yet_is_not_for_it() {
    let mut limits = ulp_ddp_core::Limits::unlimited(ulp_iscsi::ISCSI);
    limits.tag_range = ulp_ddp_core::TagRange::Bits(0);
    let mut c = logged_in_with(100, SwBackend::with_limits(limits));
    let (first, itt) = read_with_itt(&mut c, 512);
    let header = {
        // The first read's SCSI Command header, as the target would quote it.
        let mut h = [0u8; 48];
        h[0] = 0x01;
        h[16..20].copy_from_slice(&itt.to_be_bytes());
        h
    };
    let second = c.submit(Command {
        lun: Lun::default(),
        cdb: scsi::read_10(1, 1),
        data: Data::Read(SgBuffer::zeroed(512)),
    });
    receive(&mut c, &scsi_response(itt, 101, Some(512))).unwrap();
    let reject = ulp_iscsi::wire::reject::RejectRepr {
        reason: ulp_iscsi::wire::reject::RejectReason::ProtocolError,
        stat_sn: 102,
        exp_cmd_sn: 3,
        max_cmd_sn: 100,
        data_sn: 0,
        rejected_header: &header,
    };
    let mut b = vec![0; reject.buffer_len(Digests::NONE)];
    reject.emit(&mut b, Digests::NONE).unwrap();
    let _ = receive(&mut c, &b);
    let mut done = Vec::new();
    while let Some(e) = c.poll_event() {
        if let Event::Completed(d) = e {
            done.push((d.id, d.result));
        }
    }
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(done[0].0, first);
    assert_eq!(done[1].0, second);
    assert_ne!(
        done[1].1,
        Err(CommandError::Rejected(
            ulp_iscsi::wire::reject::RejectReason::ProtocolError
        )),
        "the Reject is not the second read's"
    );
    assert!(
        c.poll_transmit().is_none(),
        "the second read never goes out"
    );
}

/// A Logout Response for a Logout Request that has not gone out is not its answer: the session
/// did not log out cleanly (it was taken as a clean logout).
#[test]
fn a_logout_response_before_the_logout_request_went_out_is_refused() {
    let mut limits = ulp_ddp_core::Limits::unlimited(ulp_iscsi::ISCSI);
    limits.tag_range = ulp_ddp_core::TagRange::Bits(0);
    let mut c = logged_in_with(100, SwBackend::with_limits(limits));
    c.logout().unwrap();
    let r = ulp_iscsi::wire::logout::LogoutResponseRepr {
        response: ulp_iscsi::wire::logout::LogoutResponse::Success,
        itt: Itt(0),
        stat_sn: 101,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        time2wait: 2,
        time2retain: 20,
    };
    let mut b = vec![0; r.buffer_len(Digests::NONE)];
    r.emit(&mut b, Digests::NONE).unwrap();
    let err = receive(&mut c, &b).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectionError::Protocol(Violation::UnknownItt { itt: 0, .. })
        ),
        "{err:?}"
    );
}

/// A Data-In after the status, in the same read as the status: the engine places both before
/// the connection sees either, so the later one has written into the buffer the status vouched
/// for. The command must not complete GOOD with that buffer (found by the iscsi_receive fuzz
/// target: GOOD, and bytes changed beyond `data_in`).
#[test]
fn data_in_after_the_status_in_the_same_read_fails_the_command() {
    let mut c = logged_in(50);
    let (id, itt) = read_with_itt(&mut c, 1024);
    let mut stream = data_in_pdu(itt, 0, 0, &[1; 512], good(101, Some(512)));
    stream.extend(data_in_pdu(itt, 1, 512, &[2; 512], None));
    let err = receive(&mut c, &stream).unwrap_err();
    let cause = ConnectionError::Protocol(Violation::DataInAfterStatus { itt });
    assert_eq!(err, cause);
    let done = completion(&mut c);
    assert_eq!(done.id, id);
    assert_eq!(
        done.result,
        Err(CommandError::ConnectionLost(Box::new(cause))),
        "not GOOD: the buffer changed after the status"
    );
    assert_eq!(done.buffer.expect("the buffer comes back").len(), 1024);
}
