//! Time in the sans-IO connection: Keep Alive is a timer of the state machine, started when the
//! connection comes up, driven only by `handle_timeout(now)` and announced by `poll_timeout()`.

use std::time::{Duration, Instant};

use ulp_ddp_core::SansIo;
use ulp_ddp_core::{NoOffload, QueueId};
use ulp_nvme_tcp::wire::{CapsuleCmdRepr, CapsuleRespRepr, Cqe, Digests, IcRespRepr, Pda};
use ulp_nvme_tcp::{Connection, ConnectionConfig, Event};

const INTERVAL: Duration = Duration::from_millis(2500);

fn connected(keep_alive: Option<Duration>) -> Connection<NoOffload> {
    let cfg = ConnectionConfig::admin(QueueId(0), Digests::NONE).with_keep_alive(keep_alive);
    let mut q = Connection::new(cfg, NoOffload);
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    assert_eq!(out.len(), 128, "ICReq");
    assert_eq!(
        q.poll_timeout(),
        None,
        "no timer before the connection is up"
    );
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

/// The opcodes of the command capsules `q` sends now, with their CIDs.
fn capsules(q: &mut Connection<NoOffload>) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    q.transmit_all(&mut out);
    let mut found = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let (c, layout) = CapsuleCmdRepr::parse(&out[at..], Digests::NONE).expect("capsule");
        found.push((c.sqe[0], u16::from_le_bytes([c.sqe[2], c.sqe[3]])));
        at += layout.plen;
    }
    found
}

fn answer(q: &mut Connection<NoOffload>, cid: u16) {
    let mut out = Vec::new();
    CapsuleRespRepr {
        cqe: Cqe {
            cid,
            ..Cqe::default()
        },
    }
    .emit(&mut out, Digests::NONE)
    .expect("resp");
    q.handle_bytes(&out);
}

#[test]
fn keep_alive_is_a_timer_of_the_state_machine() {
    let mut q = connected(Some(INTERVAL));
    let t0 = Instant::now();
    // Started when the connection came up, before any time was known: due at once.
    assert_eq!(q.poll_timeout(), None, "no time learnt yet");
    q.handle_timeout(t0);
    assert_eq!(q.poll_timeout(), Some(t0 + INTERVAL));
    assert!(capsules(&mut q).is_empty(), "nothing before the interval");
    q.handle_timeout(t0 + INTERVAL - Duration::from_millis(1));
    assert!(capsules(&mut q).is_empty());
    q.handle_timeout(t0 + INTERVAL);
    let sent = capsules(&mut q);
    assert_eq!(sent.len(), 1, "one Keep Alive: {sent:?}");
    assert_eq!(sent[0].0, ulp_nvme_tcp::nvme::OPC_KEEP_ALIVE);
    assert_eq!(q.keep_alives(), 1);
    assert_eq!(q.poll_timeout(), Some(t0 + 2 * INTERVAL));
    // Still outstanding at the next interval: no second one on top of it.
    q.handle_timeout(t0 + 2 * INTERVAL);
    assert!(capsules(&mut q).is_empty());
    answer(&mut q, sent[0].1);
    assert!(
        q.poll_event().is_none(),
        "the host's own command completes silently"
    );
    q.handle_timeout(t0 + 3 * INTERVAL);
    let sent = capsules(&mut q);
    assert_eq!(
        sent.len(),
        1,
        "the next one goes once the previous completed"
    );
    assert_eq!(q.keep_alives(), 2);
}

#[test]
fn a_timer_started_from_input_is_due_at_the_time_last_learnt() {
    // The driver told the time before the connection came up: the keep-alive timer starts
    // from the next handle_timeout, which poll_timeout asks for at once.
    let cfg = ConnectionConfig::admin(QueueId(0), Digests::NONE).with_keep_alive(Some(INTERVAL));
    let mut q = Connection::new(cfg, NoOffload);
    let t0 = Instant::now();
    q.handle_timeout(t0);
    assert_eq!(q.poll_timeout(), None);
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
    assert_eq!(q.poll_timeout(), Some(t0), "due at once, to learn the time");
    let t1 = t0 + Duration::from_secs(7);
    q.handle_timeout(t1);
    assert_eq!(
        q.poll_timeout(),
        Some(t1 + INTERVAL),
        "armed from the time learnt"
    );
}

#[test]
fn without_keep_alive_there_is_no_timer() {
    let mut q = connected(None);
    q.handle_timeout(Instant::now());
    assert_eq!(q.poll_timeout(), None);
    q.close();
    assert!(q.is_closed());
    assert_eq!(q.poll_timeout(), None);
}
