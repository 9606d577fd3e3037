//! The tokio driver against the embedded target over loopback TCP: 4 MiB written and read
//! back with digests over several queues, 64 commands from 64 tasks at once, recovery through
//! the test bed's proxy (a cut mid-I/O: reconnected, every command done, data verified; a cut
//! for good: every command fails after ctrl_loss_tmo, every buffer back, the error in words),
//! Keep Alive while idle, a clean close.

use std::time::{Duration, Instant};

use ulp_nvme_tcp::SgBuffer;
use ulp_nvme_tcp::blocking::Error;
use ulp_nvme_tcp::tokio::{Controller, Options};
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{Target, TargetConfig};
use ulp_testbed::proxy::Proxy;

mod fixtures;
use fixtures::violations;

/// The recovery tests' options (`fixtures::options`), over two I/O queues, with io_timeout long
/// enough that the cut, not a held read's deadline, starts the recovery.
fn recovery_options(target: &Target) -> Options {
    let mut o = fixtures::options(target);
    o.queues = 2;
    o.io_timeout = Duration::from_secs(5);
    o
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 11) as u8)
        .collect()
}

fn options(target: &Target, queues: u16) -> Options {
    let mut o = Options::new(target.subnqn());
    o.digests = Digests::BOTH;
    o.queues = queues;
    o.timeout = Duration::from_secs(10);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mib_written_and_read_back_with_digests_over_four_queues() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let ctrl = Controller::connect(target.addr(), &options(&target, 4))
        .await
        .expect("connect");
    assert_eq!(ctrl.io_queues(), 4);
    assert_eq!(ctrl.info().model, "ulp-ddp embedded target");
    const LEN: usize = 4 << 20;
    let data = pattern(LEN, 7);
    let start = Instant::now();
    let w = ctrl
        .write(0, SgBuffer::from_vec(data.clone()))
        .await
        .expect("write");
    let wrote = start.elapsed();
    assert_eq!(w.len(), LEN as u64, "the write buffer comes back");
    assert!(
        target.contents(0, LEN) == data,
        "the target holds the write"
    );
    let start = Instant::now();
    let r = ctrl.read(0, SgBuffer::zeroed(LEN)).await.expect("read");
    let read = start.elapsed();
    assert!(r.into_vec() == data, "4 MiB read back as written");
    println!(
        "tokio driver, 4 queues, digests on: wrote 4 MiB in {:.1} ms, read 4 MiB back in {:.1} ms \
         ({} commands of at most {} KiB), data identical",
        wrote.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
        (LEN as u64).div_ceil(ctrl.max_transfer()),
        ctrl.max_transfer() / 1024
    );
    ctrl.close().await.expect("close");
    assert_eq!(target.shutdowns(), 1, "CC.SHN reached the target");
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_commands_from_sixty_four_tasks_at_once() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut o = options(&target, 2);
    o.queue_depth = 8; // 64 commands over 2 x 8 CIDs: most wait in the queues' backlogs
    let ctrl = Controller::connect(target.addr(), &o)
        .await
        .expect("connect");
    const LEN: usize = 16 * 1024;
    let tasks: Vec<_> = (0..64u8)
        .map(|i| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move {
                let slba = u64::from(i) * (LEN as u64 / 512);
                let data = pattern(LEN, i);
                ctrl.write(slba, SgBuffer::from_vec(data.clone()))
                    .await
                    .expect("write");
                let r = ctrl.read(slba, SgBuffer::zeroed(LEN)).await.expect("read");
                assert!(r.into_vec() == data, "command {i} read back");
            })
        })
        .collect();
    // Well below io_timeout (30 s): a queue that stopped issuing its backlog until a timer
    // woke it would fail here, not pass slowly.
    let all = async {
        for t in tasks {
            t.await.expect("task");
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("64 commands done without waiting for a timer");
    for i in 0..64u8 {
        let at = usize::from(i) * LEN;
        assert!(target.contents(at, LEN) == pattern(LEN, i), "block {i}");
    }
    ctrl.close().await.expect("close");
}

/// Waits (at most 5 s) for 16 reads held by the target.
async fn sixteen_held(target: &Target) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while target.held_reads() < 16 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(target.held_reads(), 16, "every read reached the target");
}

/// A connection cut with 16 reads held by the target and 16 tasks writing, back 300 ms later:
/// the controller resets, reconnects (refused while cut, every reconnect_delay) on both
/// queues, issues again what was in flight, and every command completes with its data, every
/// buffer back; the events say so in the blocking driver's words; the new association shuts
/// down cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_io_reconnects_and_every_command_completes() {
    const IO: usize = 4096;
    const OUTAGE: Duration = Duration::from_millis(300);
    let target = fixtures::target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let o = recovery_options(&target);
    let ctrl = Controller::connect(proxy.addr(), &o)
        .await
        .expect("connect");
    assert_eq!(proxy.connections(), 3, "admin and two I/O queues");
    for i in 0..16u8 {
        ctrl.write(u64::from(i) * 8, SgBuffer::from_vec(pattern(IO, i)))
            .await
            .expect("fill");
    }
    target.hold_reads(u32::MAX);
    let reads: Vec<_> = (0..16u8)
        .map(|i| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move { ctrl.read(u64::from(i) * 8, SgBuffer::zeroed(IO)).await })
        })
        .collect();
    sixteen_held(&target).await;
    target.hold_reads(0); // issued again after the reconnect, they are answered
    let writes: Vec<_> = (0..16u8)
        .map(|i| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move {
                let slba = 1024 + u64::from(i) * 8;
                for _ in 0..20 {
                    let data = pattern(IO, 0x80 + i);
                    let back = ctrl.write(slba, SgBuffer::from_vec(data.clone())).await?;
                    assert!(back.into_vec() == data, "the write's buffer as given");
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    proxy.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();
    for (i, r) in reads.into_iter().enumerate() {
        let buffer = r.await.expect("task").expect("read after the reconnect");
        assert!(
            buffer.into_vec() == pattern(IO, i as u8),
            "read {i}: its data"
        );
    }
    for w in writes {
        w.await.expect("task").expect("writes across the reconnect");
    }
    let since_cut = cut_at.elapsed();
    let events = ctrl.take_events();
    let text: Vec<String> = events.iter().map(ToString::to_string).collect();
    println!(
        "tokio driver: 16 reads held and 16 writers at the cut, {} ms outage: all done {:.0} ms \
         after the cut; {} refused reconnects; events: {}",
        OUTAGE.as_millis(),
        since_cut.as_secs_f64() * 1e3,
        proxy.refused(),
        text.join("; ")
    );
    assert_eq!(ctrl.reconnects(), 1, "{text:?}");
    let reissued = fixtures::reset_then_reconnected(&events, proxy.refused(), OUTAGE, &o);
    assert!(reissued >= 16, "the held reads at least: {reissued}");
    assert!(since_cut < OUTAGE + Duration::from_secs(1), "{since_cut:?}");
    for i in 0..16u8 {
        let at = (1024 + usize::from(i) * 8) * 512;
        assert!(target.contents(at, IO) == pattern(IO, 0x80 + i), "slot {i}");
    }
    assert_eq!(proxy.connections(), 3, "the new association's queues");
    assert_eq!(violations(&target), Vec::<String>::new());
    ctrl.close()
        .await
        .expect("clean shutdown after the reconnect");
    assert_eq!(target.shutdowns(), 1);
}

/// A connection cut for good with 16 reads held: reconnect attempts every reconnect_delay
/// until ctrl_loss_tmo, then every read fails with `Error::Lost` naming ctrl_loss_tmo, each
/// with its own buffer; later commands are refused (buffer back); the events say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_for_good_fails_every_command_after_ctrl_loss_tmo() {
    let target = fixtures::target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let mut o = recovery_options(&target);
    o.ctrl_loss_tmo = Duration::from_secs(1);
    let ctrl = Controller::connect(proxy.addr(), &o)
        .await
        .expect("connect");
    target.hold_reads(u32::MAX);
    let reads: Vec<_> = (0..16u64)
        .map(|i| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move {
                ctrl.read(i * 8, SgBuffer::zeroed(4096 + 512 * i as usize))
                    .await
            })
        })
        .collect();
    sixteen_held(&target).await;
    proxy.cut();
    let cut_at = Instant::now();
    for (i, r) in reads.into_iter().enumerate() {
        let e = r
            .await
            .expect("task")
            .expect_err("the connection was cut for good");
        let text = e.to_string();
        assert!(matches!(e, Error::Lost { .. }), "{text}");
        assert!(
            text.contains("Read of")
                && text.contains("not reachable again within ctrl_loss_tmo 1.0 s"),
            "in words: {text}"
        );
        let buffer = e.into_buffer().expect("the buffer comes back");
        assert_eq!(buffer.len(), 4096 + 512 * i as u64, "its own buffer");
    }
    let elapsed = cut_at.elapsed();
    let events = ctrl.take_events();
    let text: Vec<String> = events.iter().map(ToString::to_string).collect();
    println!(
        "tokio driver: 16 reads failed {:.0} ms after the cut (ctrl_loss_tmo {} ms, {} refused \
         reconnects): {}",
        elapsed.as_secs_f64() * 1e3,
        o.ctrl_loss_tmo.as_millis(),
        proxy.refused(),
        text.join("; ")
    );
    fixtures::given_up_after_ctrl_loss_tmo(&text, elapsed, proxy.refused(), &o);
    assert_eq!(ctrl.reconnects(), 0);
    let e = ctrl
        .write(0, SgBuffer::zeroed(4096))
        .await
        .expect_err("a lost controller takes no command");
    assert!(matches!(e, Error::Refused { .. }), "{e}");
    assert!(e.to_string().contains("ctrl_loss_tmo"), "{e}");
    assert_eq!(e.into_buffer().map(|b| b.len()), Some(4096));
    assert!(ctrl.ended().is_some());
    assert_eq!(violations(&target), Vec::<String>::new());
    ctrl.close().await.expect("closing a lost controller");
    assert_eq!(target.shutdowns(), 0);
}

/// A read the controller holds once, past io_timeout (300 ms): the controller resets (as
/// Linux's nvme-tcp, no Abort), reconnects, issues the read again, and it completes with its
/// data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_read_past_io_timeout_resets_and_is_issued_again() {
    let target = fixtures::target();
    let o = fixtures::options(&target);
    let ctrl = Controller::connect(target.addr(), &o)
        .await
        .expect("connect");
    let data = pattern(4096, 3);
    ctrl.write(24, SgBuffer::from_vec(data.clone()))
        .await
        .expect("write");
    target.hold_reads(1);
    let t = Instant::now();
    let r = ctrl.read(24, SgBuffer::zeroed(4096)).await.expect("read");
    let elapsed = t.elapsed();
    assert!(r.into_vec() == data, "its data after the reset");
    let text: Vec<String> = ctrl.take_events().iter().map(ToString::to_string).collect();
    println!(
        "tokio driver: read held past io_timeout, done after {:.0} ms: {}",
        elapsed.as_secs_f64() * 1e3,
        text.join("; ")
    );
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(
        text[0].starts_with("resetting the controller: Read (CID ")
            && text[0].ends_with("on I/O queue 1 timed out after 0.3 s"),
        "{text:?}"
    );
    assert!(
        text[1].starts_with("reconnected after ")
            && text[1].ends_with("(1 attempt); 1 command issued again"),
        "{text:?}"
    );
    assert_eq!(ctrl.reconnects(), 1);
    assert!(
        elapsed >= o.io_timeout + o.reconnect_delay
            && elapsed < o.io_timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );
    ctrl.close().await.expect("close");
}

/// A read the controller holds every time: reset and issued again max_retries (2) times, then
/// it fails with `Error::Lost` in words, its buffer back; the controller goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_read_fails_after_max_retries() {
    let target = fixtures::target();
    let mut o = fixtures::options(&target);
    o.max_retries = 2;
    let ctrl = Controller::connect(target.addr(), &o)
        .await
        .expect("connect");
    target.hold_reads(u32::MAX);
    let t = Instant::now();
    let e = ctrl
        .read(40, SgBuffer::zeroed(4096))
        .await
        .expect_err("held every time");
    let elapsed = t.elapsed();
    let text = e.to_string();
    assert!(matches!(e, Error::Lost { .. }), "{text}");
    assert!(
        text.contains(
            "Read of 4096 bytes at LBA 40: failed 3 times, each time the connection was lost"
        ),
        "{text}"
    );
    assert_eq!(e.into_buffer().map(|b| b.len()), Some(4096), "buffer back");
    // Failed at the third reset, before its reconnect: the next read waits for it.
    target.hold_reads(0);
    let r = ctrl
        .read(40, SgBuffer::zeroed(4096))
        .await
        .expect("the controller goes on working");
    assert_eq!(r.len(), 4096);
    let events: Vec<String> = ctrl.take_events().iter().map(ToString::to_string).collect();
    println!(
        "tokio driver: read held every time: {text} after {:.0} ms; events: {}",
        elapsed.as_secs_f64() * 1e3,
        events.join("; ")
    );
    // Issued 1 + max_retries times, each timed out and reset; the last reset reissues nothing
    // (the next read, sent during the outage or after it, is new, not issued again).
    assert_eq!(events.len(), 6, "{events:?}");
    for pair in events.chunks(2) {
        assert!(
            pair[0].starts_with("resetting the controller: Read (CID "),
            "{events:?}"
        );
        assert!(pair[1].starts_with("reconnected after "), "{events:?}");
    }
    assert!(events[5].ends_with("0 commands issued again"), "{events:?}");
    assert!(elapsed >= o.io_timeout * 3, "{elapsed:?}");
    assert_eq!(ctrl.reconnects(), 3);
    ctrl.close().await.expect("close");
}

/// Waits (at most 5 s) for `f`.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The admin queue keeps an Asynchronous Event Request outstanding, as the blocking driver:
/// a namespace change is reported as an event in words, its log page read (re-arming the
/// notice) and a new request sent, so a second change is reported too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_events_are_reported_and_asked_for_again() {
    let target = fixtures::target();
    let ctrl = Controller::connect(target.addr(), &fixtures::options(&target))
        .await
        .expect("connect");
    eventually("an AER outstanding", || target.async_event_requests() == 1).await;
    let mut seen = Vec::new();
    for n in 1..=2 {
        assert_eq!(target.notify_namespace_changed(), 1, "change {n} reported");
        eventually("the event", || {
            seen.extend(ctrl.take_events());
            seen.len() == n
        })
        .await;
        eventually("asked again", || target.async_event_requests() == 1).await;
    }
    let text: Vec<String> = seen.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec!["asynchronous event: Notice: Namespace Attribute Changed (log page 04h)"; 2]
    );
    ctrl.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_goes_out_while_idle() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let mut o = options(&target, 1);
    o.kato = Duration::from_millis(100); // Keep Alive every 50 ms
    let ctrl = Controller::connect(target.addr(), &o)
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ctrl.keep_alives() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ctrl.keep_alives() >= 4, "{} sent", ctrl.keep_alives());
    assert!(ctrl.ended().is_none(), "{:?}", ctrl.ended());
    let r = ctrl
        .read(0, SgBuffer::zeroed(4096))
        .await
        .expect("still up");
    assert_eq!(r.len(), 4096);
    ctrl.close().await.expect("close");
}
