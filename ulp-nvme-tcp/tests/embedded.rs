//! The host against the embedded target over loopback TCP: bring-up, reads and writes of
//! several sizes with and without digests, pipelining, SUCCESS completions, keep-alive, and the
//! placement counters of the reader path.

use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{SgBuffer, TagRange};
use ulp_nvme_tcp::blocking::{Controller, Options};
use ulp_nvme_tcp::wire::{Digests, Pda};
use ulp_nvme_tcp::{Data, Status};
use ulp_testbed::nvme::{Target, TargetConfig};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 12) as u8)
        })
        .collect()
}

fn connect(target: &Target, digests: Digests) -> Controller<SwBackend> {
    let mut o = Options::new(target.subnqn());
    o.digests = digests;
    o.timeout = Duration::from_secs(10);
    Controller::connect_with(target.addr(), &o, |_| SwBackend::new()).expect("connect")
}

fn round_trips(config: TargetConfig, digests: Digests) {
    let target = Target::start(config).expect("target");
    let mut c = connect(&target, digests);
    assert_eq!(c.info().model, "ulp-ddp embedded target");
    assert_eq!(c.namespace().block_size, 512);
    let mut payload = 0u64;
    for (i, len) in [4096usize, 128 * 1024, 1 << 20].into_iter().enumerate() {
        let data = pattern(len, i as u8);
        let slba = (i as u64) * 4096;
        let w = c
            .write(slba, SgBuffer::from_vec(data.clone()))
            .expect("write");
        assert_eq!(w.into_vec(), data, "the write buffer comes back as given");
        assert_eq!(
            target.contents(slba as usize * 512, len),
            data,
            "target holds the write"
        );
        // A status other than success is an error of `read`.
        let r = c.read(slba, SgBuffer::zeroed(len)).expect("read");
        assert!(r.into_vec() == data, "read back {len}");
        payload += len as u64;
    }
    c.flush().expect("flush");
    let stats = c.io().connection().stats();
    assert_eq!(
        stats.bytes_copied, 0,
        "no payload through an intermediate buffer"
    );
    assert_eq!(stats.bytes_read_in_place, payload);
    if digests.data {
        assert!(stats.digests_computed > 0);
        assert_eq!(stats.digests_failed, 0);
    }
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

#[test]
fn read_write_digests_off() {
    round_trips(TargetConfig::default(), Digests::NONE);
}

#[test]
fn read_write_digests_on_split_pdus_and_alignment() {
    let config = TargetConfig {
        max_c2h: 32 * 1024,
        maxh2cdata: 16 * 1024,
        max_r2t: 256 * 1024,
        cpda: Pda::new(7).expect("pda"),
        ..TargetConfig::default()
    };
    round_trips(config, Digests::BOTH);
}

#[test]
fn success_flag_completions() {
    let config = TargetConfig {
        success_flag: true,
        ..TargetConfig::default()
    };
    let target = Target::start(config).expect("target");
    let mut c = connect(&target, Digests::BOTH);
    let data = pattern(64 * 1024, 9);
    c.write(10, SgBuffer::from_vec(data.clone()))
        .expect("write");
    // The completion itself, to see how it came: the command-level API.
    let sqe = c.read_cmd(10, data.len() as u64).expect("cmd");
    let cid = c
        .io()
        .submit(sqe, Data::Read(SgBuffer::zeroed(data.len())))
        .expect("submit");
    let r = c.wait_io(Some(cid)).expect("read");
    assert_eq!(r.status, Status::SUCCESS);
    assert!(r.by_success_flag);
    assert_eq!(r.buffer.expect("buffer").into_vec(), data);
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

#[test]
fn pipelined_commands() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut o = Options::new(target.subnqn());
    o.queue_depth = 8;
    let mut c = Controller::connect_with(target.addr(), &o, |_| {
        let mut limits = ulp_ddp_core::Limits::unlimited(ulp_nvme_tcp::NVME_TCP);
        limits.tag_range = TagRange::BelowQueueDepth;
        SwBackend::with_limits(limits)
    })
    .expect("connect");
    let len = 32 * 1024;
    // 16 writes then 16 reads, at most 8 outstanding.
    let mut cids = Vec::new();
    for i in 0..16u64 {
        let sqe = c.write_cmd(i * 64, len as u64).expect("cmd");
        while c.io().connection().free_slots() == 0 {
            let done = c.wait_io(None).expect("completion");
            assert_eq!(done.status, Status::SUCCESS);
        }
        cids.push(
            c.io()
                .submit(sqe, Data::Write(SgBuffer::from_vec(pattern(len, i as u8))))
                .expect("submit"),
        );
        assert!(
            cids.iter().all(|&cid| cid < 8),
            "CIDs below the queue depth"
        );
    }
    while c.io().connection().outstanding() > 0 {
        assert_eq!(c.wait_io(None).expect("completion").status, Status::SUCCESS);
    }
    let mut reads = std::collections::HashMap::new();
    for i in 0..16u64 {
        let sqe = c.read_cmd(i * 64, len as u64).expect("cmd");
        while c.io().connection().free_slots() == 0 {
            let done = c.wait_io(None).expect("completion");
            let seed = reads.remove(&done.cid).expect("known cid");
            assert_eq!(done.buffer.expect("buffer").into_vec(), pattern(len, seed));
        }
        let cid = c
            .io()
            .submit(sqe, Data::Read(SgBuffer::zeroed(len)))
            .expect("submit");
        assert!(cid < 8);
        reads.insert(cid, i as u8);
    }
    while let Some(_) = reads.keys().next() {
        let done = c.wait_io(None).expect("completion");
        assert!(done.offloaded, "BelowQueueDepth CIDs are all mapped");
        let seed = reads.remove(&done.cid).expect("known cid");
        assert_eq!(done.buffer.expect("buffer").into_vec(), pattern(len, seed));
    }
    let stats = c.io().connection().stats();
    assert_eq!(stats.bytes_copied, 0);
    assert_eq!(stats.setups, 16);
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

#[test]
fn keep_alive_is_sent() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut o = Options::new(target.subnqn());
    o.kato = Duration::from_millis(100);
    let mut c = Controller::connect_with(target.addr(), &o, |_| SwBackend::new()).expect("connect");
    let start = Instant::now();
    while c.admin().connection().keep_alives() < 2 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(60));
        // Any admin command runs the timers.
        let r = c.admin().run(
            ulp_nvme_tcp::nvme::property_get(ulp_nvme_tcp::nvme::REG_CSTS, false),
            Data::None,
        );
        assert_eq!(r.expect("property get").result & 1, 1);
    }
    assert!(c.admin().connection().keep_alives() >= 2);
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

/// Only I/O, no admin command: the admin queue's Keep Alive still goes out, and its
/// completions are taken (a new one is sent only once the previous one completed).
#[test]
fn keep_alive_is_sent_while_only_doing_io() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut o = Options::new(target.subnqn());
    o.kato = Duration::from_millis(100);
    let mut c = Controller::connect_with(target.addr(), &o, |_| SwBackend::new()).expect("connect");
    let bs = c.namespace().block_size as usize;
    let start = Instant::now();
    while c.admin().connection().keep_alives() < 3 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(60));
        // A status other than success is an error of `read`.
        c.read(0, SgBuffer::zeroed(bs)).expect("read");
    }
    assert!(
        c.admin().connection().keep_alives() >= 3,
        "keep-alives completed and repeated"
    );
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

#[test]
fn out_of_range_read_fails_cleanly() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut c = connect(&target, Digests::NONE);
    let blocks = c.namespace().nsze;
    let e = c
        .read(blocks, SgBuffer::zeroed(4096))
        .expect_err("out of range");
    let msg = e.to_string();
    assert!(
        msg.starts_with("Read (CID ") && msg.contains("failed: LBA Out of Range"),
        "{msg}"
    );
    assert_eq!(
        e.into_buffer().map(|b| b.len()),
        Some(4096),
        "the buffer comes back with the error"
    );
    // The queue still works.
    c.write(0, SgBuffer::from_vec(vec![7; 512]))
        .expect("write after error");
}

/// A host that stops reading with many reads outstanding: the target's reader thread, which
/// writes small answers itself, gives up on the full socket after a few milliseconds and
/// leaves the rest to its writer thread, so it never blocks on the host, and every answer
/// still arrives whole and in order.
#[test]
fn slow_host_gets_every_answer_in_order() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut o = Options::new(target.subnqn());
    o.queue_depth = 128;
    o.timeout = Duration::from_secs(10);
    let mut c = Controller::connect_with(target.addr(), &o, |_| SwBackend::new()).expect("connect");
    let ns_len = 16 << 20;
    for (i, at) in (0..ns_len).step_by(1 << 20).enumerate() {
        let sqe = c.write_cmd(at as u64 / 512, 1 << 20).expect("cmd");
        let done = c
            .io()
            .run(
                sqe,
                Data::Write(SgBuffer::from_vec(pattern(1 << 20, i as u8))),
            )
            .expect("write");
        assert_eq!(done.status, Status::SUCCESS);
    }
    // 120 reads of 60 KiB (each answer below the inline limit), sent at once; then the host
    // sleeps while the answers (7 MiB) fill the socket buffers.
    let len = 60 * 1024;
    let mut reads = std::collections::HashMap::new();
    for i in 0..120u64 {
        let at = i * 131_072 + 512 * (i % 7);
        let sqe = c.read_cmd(at / 512, len as u64).expect("cmd");
        let cid = c
            .io()
            .submit(sqe, Data::Read(SgBuffer::zeroed(len)))
            .expect("submit");
        reads.insert(cid, at as usize);
    }
    c.io().flush().expect("flush");
    std::thread::sleep(Duration::from_millis(300));
    while !reads.is_empty() {
        let done = c.wait_io(None).expect("completion");
        assert_eq!(done.status, Status::SUCCESS);
        let at = reads.remove(&done.cid).expect("known cid");
        assert!(
            done.buffer.expect("buffer").into_vec() == target.contents(at, len),
            "read at {at} differs"
        );
    }
    assert!(
        target.handed_off() > 0,
        "the full socket made the reader hand off"
    );
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

/// With `copy_small_payloads`, 4 KiB reads at queue depth 8 come through the receive buffer
/// (copied, many PDUs per socket read) and a 256 KiB read is still read in place; the data is
/// right either way, digests on.
#[test]
fn small_payload_policy_copies_only_small_reads() {
    let config = TargetConfig {
        size: 4 << 20,
        ..TargetConfig::default()
    };
    let target = Target::start(config).expect("target");
    let mut o = Options::new(target.subnqn());
    o.queue_depth = 8;
    o.digests = Digests::BOTH;
    let mut c = Controller::connect_with(target.addr(), &o, |_| SwBackend::new()).expect("connect");
    let whole = pattern(1 << 20, 3);
    let sqe = c.write_cmd(0, 1 << 20).expect("cmd");
    let done = c
        .io()
        .run(sqe, Data::Write(SgBuffer::from_vec(whole.clone())))
        .expect("write");
    assert_eq!(done.status, Status::SUCCESS);
    c.io().copy_small_payloads(16 * 1024);
    let before = c.io().connection().stats();
    let mut reads = std::collections::HashMap::new();
    for i in 0..64usize {
        let sqe = c.read_cmd(i as u64 * 8, 4096).expect("cmd");
        while c.io().connection().free_slots() == 0 {
            let done = c.wait_io(None).expect("completion");
            let at: usize = reads.remove(&done.cid).expect("known cid");
            assert!(done.buffer.expect("buffer").into_vec() == whole[at..at + 4096]);
        }
        let cid = c
            .io()
            .submit(sqe, Data::Read(SgBuffer::zeroed(4096)))
            .expect("submit");
        assert!(
            reads.insert(cid, i * 4096).is_none(),
            "CID {cid} reused unclaimed"
        );
    }
    while !reads.is_empty() {
        let done = c.wait_io(None).expect("completion");
        let at = reads.remove(&done.cid).expect("known cid");
        assert!(done.buffer.expect("buffer").into_vec() == whole[at..at + 4096]);
    }
    let mid = c.io().connection().stats();
    assert_eq!(mid.bytes_copied - before.bytes_copied, 64 * 4096);
    assert_eq!(mid.bytes_read_in_place, before.bytes_read_in_place);
    let sqe = c.read_cmd(0, 256 * 1024).expect("cmd");
    let done = c
        .io()
        .run(sqe, Data::Read(SgBuffer::zeroed(256 * 1024)))
        .expect("read");
    assert!(done.buffer.expect("buffer").into_vec() == whole[..256 * 1024]);
    let end = c.io().connection().stats();
    assert_eq!(end.bytes_copied, mid.bytes_copied);
    assert_eq!(
        end.bytes_read_in_place - mid.bytes_read_in_place,
        256 * 1024
    );
    assert_eq!(end.digests_failed, 0);
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

/// The controller keeps an Asynchronous Event Request outstanding and reports what completes
/// it: a namespace change is seen, its log page read (which re-arms the notice), and a new
/// request sent, so a second change is seen too.
#[test]
fn asynchronous_events_reach_the_caller() {
    use ulp_nvme_tcp::blocking::ControllerEvent;
    use ulp_nvme_tcp::nvme::AsyncEvent;
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut c = connect(&target, Digests::NONE);
    let held = |t: &Target| {
        let start = Instant::now();
        while t.async_event_requests() != 1 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        t.async_event_requests()
    };
    assert_eq!(held(&target), 1, "one request outstanding after bring-up");
    for round in 1..=2 {
        assert_eq!(target.notify_namespace_changed(), 1, "round {round}");
        let start = Instant::now();
        let mut seen = Vec::new();
        while seen.is_empty() && start.elapsed() < Duration::from_secs(5) {
            c.keep_alive().expect("poll the admin queue");
            seen.extend(
                c.take_events()
                    .into_iter()
                    .filter(|e| matches!(e, ControllerEvent::AsyncEvent(_))),
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            seen,
            vec![ControllerEvent::AsyncEvent(
                AsyncEvent::NAMESPACE_ATTRIBUTE_CHANGED
            )],
            "round {round}"
        );
        assert_eq!(
            seen[0].to_string(),
            "asynchronous event: Notice: Namespace Attribute Changed (log page 04h)"
        );
        assert_eq!(held(&target), 1, "asked again after round {round}");
    }
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}
