//! The tokio driver inside TLS 1.3 with a PSK (NVMe TP 8011) against the embedded TLS target of
//! the test bed: 4 MiB written and read back with header and data digests over two I/O queues
//! (each its own TLS session) from several tasks, payload decrypted into the commands' buffers;
//! a wrong PSK fails in the blocking driver's words; a connection cut mid-I/O reconnects over
//! TLS (handshake again on every queue) with every command done, its data right and every
//! buffer back.

use std::time::{Duration, Instant};

use ulp_nvme_tcp::SgBuffer;
use ulp_nvme_tcp::blocking::Error;
use ulp_nvme_tcp::psk::TlsPsk;
use ulp_nvme_tcp::tokio::{Controller, Options};
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{Target, TargetConfig, TargetTls};
use ulp_testbed::proxy::Proxy;

mod fixtures;

const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:5e3c7a4e-2b1d-4c6e-9a8f-0123456789ab";
const KEY: [u8; 32] = [0x5a; 32];

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29) ^ seed ^ (i >> 11) as u8)
        .collect()
}

fn identity(subnqn: &str) -> String {
    format!("NVMe0R01 {HOSTNQN} {subnqn}")
}

/// A TLS-only target (plaintext connections closed) holding [`KEY`].
fn tls_target() -> Target {
    let config = TargetConfig::default();
    let identity = identity(&config.subnqn);
    Target::start(TargetConfig {
        tls: Some(TargetTls {
            identity,
            key: KEY.to_vec(),
            required: true,
        }),
        ..config
    })
    .expect("target")
}

/// `base` with the host NQN, digests, two I/O queues and the PSK `key`.
fn with_tls(mut o: Options, target: &Target, key: &[u8]) -> Options {
    o.hostnqn = HOSTNQN.to_string();
    o.digests = Digests::BOTH;
    o.queues = 2;
    o.tls = Some(TlsPsk::new(&identity(target.subnqn()), key).expect("a 32-byte key"));
    o
}

fn options(target: &Target, key: &[u8]) -> Options {
    let mut o = Options::new(target.subnqn());
    o.timeout = Duration::from_secs(10);
    with_tls(o, target, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mib_over_tls_on_two_queues_from_several_tasks() {
    let target = tls_target();
    let ctrl = Controller::connect(target.addr(), &options(&target, &KEY))
        .await
        .expect("connect over TLS");
    assert_eq!(
        ctrl.io_queues(),
        2,
        "two I/O queues, each its own TLS session"
    );
    const LEN: usize = 4 << 20;
    const TASKS: usize = 8;
    const PIECE: usize = LEN / TASKS;
    let blocks = |i: usize| (i * PIECE / 512) as u64;
    // Eight tasks write 512 KiB each at once (split over both queues), then read it back.
    let writes: Vec<_> = (0..TASKS)
        .map(|i| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move {
                let data = pattern(PIECE, i as u8);
                let back = ctrl
                    .write(blocks(i), SgBuffer::from_vec(data.clone()))
                    .await?;
                assert!(back.into_vec() == data, "write {i}: its buffer as given");
                Ok::<_, Error>(())
            })
        })
        .collect();
    for w in writes {
        w.await.expect("task").expect("write over TLS");
    }
    for i in 0..TASKS {
        assert!(
            target.contents(i * PIECE, PIECE) == pattern(PIECE, i as u8),
            "piece {i} reached the target's namespace"
        );
    }
    let start = Instant::now();
    let reads: Vec<_> = (0..TASKS)
        .map(|i| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move { ctrl.read(blocks(i), SgBuffer::zeroed(PIECE)).await })
        })
        .collect();
    for (i, r) in reads.into_iter().enumerate() {
        let buffer = r.await.expect("task").expect("read over TLS");
        assert!(
            buffer.into_vec() == pattern(PIECE, i as u8),
            "read {i}: decrypted into its buffer, digest checked"
        );
    }
    println!(
        "tokio driver over TLS: 4 MiB read back by {TASKS} tasks in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    // One 4 MiB read across both queues (split by max_transfer) into one buffer.
    let all = ctrl
        .read(0, SgBuffer::zeroed(LEN))
        .await
        .expect("4 MiB read");
    let want: Vec<u8> = (0..TASKS).flat_map(|i| pattern(PIECE, i as u8)).collect();
    assert!(all.into_vec() == want, "the whole 4 MiB");
    assert_eq!(fixtures::violations(&target), Vec::<String>::new());
    assert!(
        target.tls_refusals().is_empty(),
        "{:?}",
        target.tls_refusals()
    );
    ctrl.close().await.expect("clean shutdown over TLS");
    assert_eq!(target.shutdowns(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_psk_fails_in_words() {
    let target = tls_target();
    let mut wrong = KEY;
    wrong[31] ^= 1;
    let Err(err) = Controller::connect(target.addr(), &options(&target, &wrong)).await else {
        panic!("connected with a wrong PSK");
    };
    let msg = err.to_string();
    println!("tokio driver, wrong PSK: {msg}");
    assert!(matches!(err, Error::Tls(_)), "{msg}");
    assert!(msg.contains("the admin queue to "), "{msg}");
    assert!(msg.contains("the key differs from the server's"), "{msg}");
    // The target records its side once its handshake has ended, maybe after the host's.
    let deadline = Instant::now() + Duration::from_secs(2);
    while target.tls_refusals().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = target.tls_refusals();
    assert!(
        refused.iter().any(|r| r.contains("did not verify")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_target_fails_in_words() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let Err(err) = Controller::connect(target.addr(), &options(&target, &KEY)).await else {
        panic!("a TLS host connected to a plaintext-only target");
    };
    let msg = err.to_string();
    println!("tokio driver, TLS to a plaintext port: {msg}");
    assert!(matches!(err, Error::Tls(_)), "{msg}");
    assert!(msg.contains("the admin queue to "), "{msg}");
    assert!(msg.contains("TLS on this port"), "{msg}");
}

/// A connection cut with 16 reads held by the target and 8 tasks writing, back 300 ms later:
/// every queue reconnects with a new TLS handshake, what was in flight is issued again, every
/// read comes back with its data in its own buffer, every write's buffer as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_io_reconnects_over_tls_and_data_is_right() {
    const IO: usize = 64 * 1024;
    const OUTAGE: Duration = Duration::from_millis(300);
    let target = tls_target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let mut o = with_tls(fixtures::options(&target), &target, &KEY);
    o.io_timeout = Duration::from_secs(5);
    let ctrl = Controller::connect(proxy.addr(), &o)
        .await
        .expect("connect");
    assert_eq!(proxy.connections(), 3, "admin and two I/O queues");
    let slot = |i: u8| u64::from(i) * (IO as u64 / 512);
    for i in 0..16u8 {
        ctrl.write(slot(i), SgBuffer::from_vec(pattern(IO, i)))
            .await
            .expect("fill");
    }
    target.hold_reads(u32::MAX);
    let reads: Vec<_> = (0..16u8)
        .map(|i| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move { ctrl.read(slot(i), SgBuffer::zeroed(IO)).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while target.held_reads() < 16 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(target.held_reads(), 16, "every read reached the target");
    target.hold_reads(0);
    let writes: Vec<_> = (0..8u8)
        .map(|i| {
            let ctrl = ctrl.clone();
            tokio::spawn(async move {
                let slba = slot(32 + i);
                for _ in 0..10 {
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
        assert_eq!(buffer.len(), IO as u64, "read {i}: its buffer back");
        assert!(
            buffer.into_vec() == pattern(IO, i as u8),
            "read {i}: its data"
        );
    }
    for w in writes {
        w.await.expect("task").expect("writes across the reconnect");
    }
    let since_cut = cut_at.elapsed();
    let events: Vec<String> = ctrl.take_events().iter().map(ToString::to_string).collect();
    println!(
        "tokio driver over TLS: cut with 16 reads held, {} ms outage: all done {:.0} ms after \
         the cut; events: {}",
        OUTAGE.as_millis(),
        since_cut.as_secs_f64() * 1e3,
        events.join("; ")
    );
    assert_eq!(ctrl.reconnects(), 1, "{events:?}");
    assert!(
        events.iter().any(|e| e.contains("reconnected")),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e.contains("os error")), "{events:?}");
    for i in 0..8u8 {
        let at = slot(32 + i) as usize * 512;
        assert!(target.contents(at, IO) == pattern(IO, 0x80 + i), "slot {i}");
    }
    assert_eq!(
        proxy.connections(),
        3,
        "the new association's queues, over TLS"
    );
    assert_eq!(fixtures::violations(&target), Vec::<String>::new());
    ctrl.close()
        .await
        .expect("clean shutdown after the reconnect");
}
