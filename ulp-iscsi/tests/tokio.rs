//! The tokio driver against the embedded target: 4 MiB with digests, 64 commands in flight from
//! 64 tasks, the target going away under outstanding commands, NOP-Out pings while idle, and
//! session reinstatement (the connection cut mid-I/O, the target gone for good, a login that
//! cannot succeed).

mod common;

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{config, pattern};
use ulp_iscsi::CommandError;
use ulp_iscsi::SgBuffer;
use ulp_iscsi::blocking::{Error, Options, SessionEvent};
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

/// Options with session reinstatement off: the connection's end reaches the caller as it is.
fn without_reinstatement() -> Options {
    let mut o = options();
    o.reinstate = false;
    o
}

/// Reinstatement attempts every 50 ms, each within 2 s, until `replacement`.
fn quick(replacement: Duration) -> Options {
    let mut o = options();
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
    let s = Session::connect(proxy.addr(), config(t.iqn(), true), without_reinstatement())
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
    let s = Session::connect(proxy.addr(), cfg, without_reinstatement())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_io_is_reinstated_and_the_reads_reissued_with_the_right_data() {
    let t = Target::start(TargetConfig::default()).expect("start embedded target");
    let proxy = Proxy::start(t.addr()).expect("proxy");
    let s = Session::connect(
        proxy.addr(),
        config(t.iqn(), true),
        quick(Duration::from_secs(10)),
    )
    .await
    .expect("connect");
    const SIZE: usize = 64 * 1024;
    for i in 0..16u8 {
        s.write(
            LUN,
            u64::from(i) * 128,
            SgBuffer::from_vec(pattern(SIZE, i)),
        )
        .await
        .expect("write");
    }
    // The target's answers are held back, so every read is outstanding when the cut comes.
    proxy.stall();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.read(LUN, u64::from(i) * 128, SgBuffer::zeroed(SIZE))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    proxy.unstall();
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.restore();
    for (i, task) in tasks.into_iter().enumerate() {
        let back = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a read outlived the reinstatement")
            .expect("task")
            .expect("the read is reissued and completes");
        assert!(
            back.into_vec() == pattern(SIZE, i as u8),
            "read {i} differs"
        );
    }
    let events = s.take_events();
    print(&events);
    assert!(
        matches!(
            events.first(),
            Some(SessionEvent::ConnectionLost {
                to_reissue: 16,
                failed: 0,
                ..
            })
        ),
        "{events:?}"
    );
    assert_eq!(
        events[0].to_string(),
        "connection lost: the target closed the connection; reinstating the session (16 \
         commands to issue again)"
    );
    assert!(
        matches!(
            events.last(),
            Some(SessionEvent::Reinstated { reissued: 16, .. })
        ),
        "{events:?}"
    );
    assert_eq!(proxy.accepted(), 2, "one new connection");
    // The session goes on.
    s.write(LUN, 4096, SgBuffer::from_vec(pattern(4096, 77)))
        .await
        .expect("a write after the reinstatement");
    assert!(t.contents(4096 * 512, 4096) == pattern(4096, 77));
    s.logout().await.expect("logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_gone_for_good_fails_every_command_in_words_at_the_replacement_timeout() {
    let t = Target::start(TargetConfig::default()).expect("start embedded target");
    let s = Session::connect(
        t.addr(),
        config(t.iqn(), false),
        quick(Duration::from_millis(600)),
    )
    .await
    .expect("connect");
    s.write(LUN, 0, SgBuffer::from_vec(pattern(4096, 1)))
        .await
        .expect("write");
    drop(t);
    let lost_at = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.read(LUN, i * 8, SgBuffer::zeroed(4096)).await
        }));
    }
    for task in tasks {
        let e = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a read outlived the replacement timeout")
            .expect("task")
            .expect_err("the target is gone");
        let Error::Command {
            error: CommandError::SessionLost(why),
            ..
        } = &e
        else {
            panic!("{e}");
        };
        assert!(
            why.starts_with("session not reinstated within replacement_timeout 0.6 s (")
                && why.contains("; last: "),
            "{why}"
        );
        assert_eq!(
            e.into_buffer().map(|b| b.len()),
            Some(4096),
            "the buffer comes back"
        );
    }
    let waited = lost_at.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let events = s.take_events();
    print(&events);
    assert!(
        matches!(events.last(), Some(SessionEvent::Lost { failed: 4, .. })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::AttemptFailed { .. })),
        "{events:?}"
    );
    let e = s
        .write(LUN, 0, SgBuffer::from_vec(vec![1; 4096]))
        .await
        .expect_err("the session was lost");
    assert!(
        e.to_string()
            .starts_with("refused: the session was lost: session not reinstated within"),
        "{e}"
    );
    assert_eq!(e.into_buffer().map(|b| b.len()), Some(4096));
}

/// A TCP forwarder whose upstream can change: the reinstatement's login reaches another
/// target than the first login did.
struct Switch {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Switch {
    fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let s = Self {
            addr: listener.local_addr()?,
            upstream: Arc::new(Mutex::new(upstream)),
            live: Arc::default(),
            stop: Arc::default(),
        };
        let (up, live, stop) = (s.upstream.clone(), s.live.clone(), s.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((host, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let to = *up.lock().unwrap();
                let (Ok(()), Ok(far)) = (host.set_nonblocking(false), TcpStream::connect(to))
                else {
                    continue;
                };
                for (mut from, mut into) in [
                    (host.try_clone().unwrap(), far.try_clone().unwrap()),
                    (far.try_clone().unwrap(), host.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Both);
                    });
                }
                live.lock().unwrap().extend([host, far]);
            }
        });
        Ok(s)
    }

    /// New connections go to `upstream`; the current ones are closed.
    fn switch_and_cut(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.switch_and_cut(self.addr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_cannot_succeed_ends_the_reinstatement_at_once() {
    // The read is held, so it is outstanding when the connection is cut.
    let open = Target::start(TargetConfig {
        stall_reads: 1,
        ..TargetConfig::default()
    })
    .expect("start embedded target");
    // The same target name, now requiring CHAP the initiator does not offer.
    let guarded = Target::start(TargetConfig {
        iqn: open.iqn().to_string(),
        chap: Some(("initiator".into(), b"secret-of-12-bytes".to_vec())),
        ..TargetConfig::default()
    })
    .expect("start the CHAP target");
    let switch = Switch::start(open.addr()).expect("switch");
    let s = Session::connect(
        switch.addr,
        config(open.iqn(), false),
        quick(Duration::from_secs(30)),
    )
    .await
    .expect("connect");
    s.read_capacity(LUN).await.expect("READ CAPACITY");
    let read = {
        let s = s.clone();
        tokio::spawn(async move { s.read(LUN, 0, SgBuffer::zeroed(4096)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    switch.switch_and_cut(guarded.addr());
    let e = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the read outlived the failed login")
        .expect("task")
        .expect_err("the login cannot succeed");
    let took = started.elapsed();
    println!("{e} (after {took:?})");
    assert!(
        e.to_string()
            .starts_with("command: session not reinstated: login: "),
        "{e}"
    );
    assert_eq!(e.into_buffer().map(|b| b.len()), Some(4096));
    assert!(
        took < Duration::from_secs(5),
        "gave up at once, not at the replacement timeout: {took:?}"
    );
    let events = s.take_events();
    print(&events);
    let attempts = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Reinstating { .. }))
        .count();
    assert_eq!(attempts, 1, "{events:?}");
    assert!(
        matches!(events.last(), Some(SessionEvent::Lost { .. })),
        "{events:?}"
    );
}
