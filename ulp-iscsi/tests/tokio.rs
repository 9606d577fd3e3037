//! The tokio driver against the embedded target: 4 MiB with digests, 64 commands in flight from
//! 64 tasks, the target going away under outstanding commands, NOP-Out pings while idle.

mod common;

use std::time::{Duration, Instant};

use common::{config, pattern};
use ulp_iscsi::SgBuffer;
use ulp_iscsi::blocking::{Error, Options};
use ulp_iscsi::tokio::Session;
use ulp_iscsi::wire::Lun;
use ulp_testbed::iscsi::{Target, TargetConfig};
use ulp_testbed::proxy::Proxy;

const LUN: Lun = Lun([0; 8]);

fn options() -> Options {
    let mut o = Options::default();
    o.timeout = Duration::from_secs(10);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_then_reads_back_4_mib_with_header_and_data_digests() {
    let t = Target::start(TargetConfig::default()).expect("start embedded target");
    let s = Session::connect(t.addr(), config(t.iqn(), true), options())
        .await
        .expect("connect");
    assert!(s.params().header_digest && s.params().data_digest);
    let cap = s.read_capacity(LUN).await.expect("READ CAPACITY");
    assert!(cap.bytes() >= 4 << 20, "{cap:?}");
    let data = pattern(4 << 20, 9);
    let started = Instant::now();
    let back = s
        .write(LUN, 0, SgBuffer::from_vec(data.clone()))
        .await
        .expect("write 4 MiB");
    let written = started.elapsed();
    assert_eq!(back.len(), 4 << 20, "the write buffer comes back whole");
    assert!(
        t.contents(0, 4 << 20) == data,
        "the target holds what was written"
    );
    let before = s.stats().await.expect("stats");
    let started = Instant::now();
    let read = s
        .read(LUN, 0, SgBuffer::zeroed(4 << 20))
        .await
        .expect("read 4 MiB")
        .into_vec();
    let took = started.elapsed();
    assert!(
        read == data,
        "the 4 MiB read back differs from what was written"
    );
    let after = s.stats().await.expect("stats");
    let in_place = after.bytes_read_in_place - before.bytes_read_in_place;
    assert!(in_place >= 4 << 20, "{after:?}");
    assert_eq!(
        after.bytes_copied, 0,
        "payload went through the receive buffer"
    );
    assert!(after.digests_computed > before.digests_computed && after.digests_failed == 0);
    println!(
        "tokio driver, embedded iSCSI target, header+data digests: wrote 4 MiB in {:.1} ms, \
         read 4 MiB back in {:.1} ms ({:.0} MiB/s), {in_place} payload bytes read in place, \
         {} copied, {} digest failures",
        written.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3,
        4.0 / took.as_secs_f64(),
        after.bytes_copied,
        after.digests_failed,
    );
    s.logout().await.expect("logout");
    let e = s
        .read(LUN, 0, SgBuffer::zeroed(4096))
        .await
        .expect_err("the session logged out");
    assert_eq!(
        e.to_string(),
        "refused: the session's connection is over: the session logged out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_commands_in_flight_from_sixty_four_tasks() {
    let t = Target::start(TargetConfig::default()).expect("start embedded target");
    let s = Session::connect(t.addr(), config(t.iqn(), false), options())
        .await
        .expect("connect");
    let bl = u64::from(s.block_len(LUN).await.expect("block length"));
    const SIZE: usize = 64 * 1024;
    let mut tasks = Vec::new();
    for i in 0..64u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let lba = u64::from(i) * SIZE as u64 / bl;
            let data = pattern(SIZE, i);
            s.write(LUN, lba, SgBuffer::from_vec(data.clone())).await?;
            let back = s.read(LUN, lba, SgBuffer::zeroed(SIZE)).await?;
            Ok::<bool, Error>(back.into_vec() == data)
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let same = task.await.expect("task").expect("write and read");
        assert!(same, "task {i}: read back differs");
    }
    for i in 0..64u8 {
        let at = usize::from(i) * SIZE;
        assert!(t.contents(at, SIZE) == pattern(SIZE, i), "block {i}");
    }
    s.logout().await.expect("logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_going_away_hands_every_buffer_back_with_the_cause_in_words() {
    // The target holds every READ; the proxy between then closes the connection.
    let t = Target::start(TargetConfig {
        stall_reads: 64,
        ..TargetConfig::default()
    })
    .expect("start embedded target");
    let proxy = Proxy::start(t.addr()).expect("proxy");
    let s = Session::connect(proxy.addr(), config(t.iqn(), true), options())
        .await
        .expect("connect");
    s.read_capacity(LUN).await.expect("READ CAPACITY");
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.read(LUN, i * 128, SgBuffer::zeroed(64 * 1024)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    for task in tasks {
        let e = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a read outlived the connection")
            .expect("task")
            .expect_err("the target went away");
        assert_eq!(
            e.to_string(),
            "command: connection lost: the target closed the connection"
        );
        let b = e.into_buffer().expect("the buffer comes back");
        assert_eq!(b.len(), 64 * 1024);
    }
    // Later commands are refused, their buffers back.
    let e = s
        .write(LUN, 0, SgBuffer::from_vec(vec![1; 4096]))
        .await
        .expect_err("the connection is over");
    assert!(e.to_string().starts_with("refused: "), "{e}");
    assert_eq!(e.into_buffer().map(|b| b.len()), Some(4096));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nop_out_pings_keep_an_idle_session_and_find_a_silent_target() {
    let t = Target::start(TargetConfig::default()).expect("start embedded target");
    let proxy = Proxy::start(t.addr()).expect("proxy");
    let mut cfg = config(t.iqn(), false);
    cfg.noop_interval = Some(Duration::from_millis(100));
    cfg.noop_timeout = Duration::from_millis(400);
    let s = Session::connect(proxy.addr(), cfg, options())
        .await
        .expect("connect");
    assert_eq!(s.ping(b"hello".to_vec()).await.expect("ping"), b"hello");
    // Idle for ten ping intervals: the pings are answered, the session stays.
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.read(LUN, 0, SgBuffer::zeroed(4096))
        .await
        .expect("read after an idle second");
    // A target that stops answering: the connection's own ping finds it, with no command
    // outstanding (the driver sleeps until the connection's timer).
    proxy.stall();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let e = s
        .read(LUN, 0, SgBuffer::zeroed(4096))
        .await
        .expect_err("the ping went unanswered");
    assert!(
        e.to_string()
            .contains("the target did not answer a NOP-Out ping within 0.4 s"),
        "{e}"
    );
    assert_eq!(e.into_buffer().map(|b| b.len()), Some(4096));
}
