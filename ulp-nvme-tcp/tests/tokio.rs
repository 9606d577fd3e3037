//! The tokio driver against the embedded target over loopback TCP: 4 MiB written and read
//! back with digests over several queues, 64 commands from 64 tasks at once, a peer that
//! closes (every buffer back, the error in words), Keep Alive while idle, a clean close.

use std::time::{Duration, Instant};

use ulp_nvme_tcp::SgBuffer;
use ulp_nvme_tcp::blocking::Error;
use ulp_nvme_tcp::tokio::{Controller, Options};
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{Target, TargetConfig};
use ulp_testbed::proxy::Proxy;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_hands_every_buffer_back_with_the_reason() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let ctrl = Controller::connect(proxy.addr(), &options(&target, 2))
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while target.held_reads() < 16 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(target.held_reads(), 16, "every read reached the target");
    proxy.cut();
    for (i, r) in reads.into_iter().enumerate() {
        let e = r.await.expect("task").expect_err("the connection was cut");
        let text = e.to_string();
        assert!(matches!(e, Error::Lost { .. }), "{text}");
        assert!(
            text.contains("Read of") && text.contains("closed the connection"),
            "in words: {text}"
        );
        let buffer = e.into_buffer().expect("the buffer comes back");
        assert_eq!(buffer.len(), 4096 + 512 * i as u64, "its own buffer");
    }
    let e = ctrl
        .write(0, SgBuffer::zeroed(4096))
        .await
        .expect_err("the controller ended");
    assert!(e.to_string().contains("closed the connection"), "{e}");
    assert_eq!(e.into_buffer().map(|b| b.len()), Some(4096));
    assert!(ctrl.ended().is_some());
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
