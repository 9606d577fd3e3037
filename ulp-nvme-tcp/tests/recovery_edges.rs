//! Edge cases of the recovery ladder and the lifecycle, found in review; each failed before
//! its fix: two commands timing out together, a completion received just before the end of
//! the stream, a completion already in the socket when its deadline passes, an idle queue's
//! stale clock, a buffer handed back when the controller is lost, a backend whose teardown
//! completes later, a shared backend across a reconnect, and a split that stays linear.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::backend::{BackendEvent, DdpIo};
use ulp_ddp_core::digest::Crc32c;
use ulp_ddp_core::{
    BackendError, DdpBackend, Limits, ProtocolId, QueueConfig, QueueId, SgBuffer, Shared, Stats,
    Tag, TcpSeq,
};
use ulp_nvme_tcp::blocking::{Controller, Error, Io};
use ulp_testbed::proxy::Proxy;

mod fixtures;
use fixtures::{options, target};

const IO: usize = 4096;

/// Runs `f` on a thread; panics if it does not finish within `limit` (a hang).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("did not finish within {limit:?}: hang"),
    }
}

/// F1. Two reads time out at the same moment: the second one's TimedOut is taken (and dropped)
/// by on_timeout's wait for the first one's aborted completion, so it is never aborted and
/// `wait` blocks forever (Keep Alive keeps the association alive).
#[test]
fn two_reads_timing_out_together_both_recover() {
    let (ok, events) = within(Duration::from_secs(8), || {
        let target = target();
        let o = options(&target);
        let mut c = Controller::connect(target.addr(), &o).expect("connect");
        c.write(0, SgBuffer::zeroed(2 * IO)).expect("fill");
        target.hold_reads(2);
        let a = c
            .submit(Io::Read {
                slba: 0,
                buffer: SgBuffer::zeroed(IO),
            })
            .expect("a");
        let b = c
            .submit(Io::Read {
                slba: 8,
                buffer: SgBuffer::zeroed(IO),
            })
            .expect("b");
        let da = c.wait(Some(a)).expect("a done");
        let db = c.wait(Some(b)).expect("b done");
        let events: Vec<String> = c.take_events().iter().map(ToString::to_string).collect();
        (da.is_success() && db.is_success(), events)
    });
    assert!(ok, "{events:?}");
}

/// F2. Several I/O queues: a queue left idle longer than io_timeout (here: since bring-up)
/// stamps the next command's deadline with the stale time it last learnt (mark_sent uses
/// `self.now`; the multi-queue loop flushes without handle_timeout first), so the command
/// "times out" as soon as it is sent, is aborted, and, not being held, the Abort answers
/// "not aborted" and the whole controller is reset.
#[test]
fn idle_queue_does_not_time_out_a_fresh_command() {
    let target = target();
    let mut o = options(&target);
    o.queues = 2;
    o.kato = Duration::from_secs(10); // nothing else expires during the idle time
    let mut c = Controller::connect(target.addr(), &o).expect("connect");
    assert_eq!(c.io_queues().len(), 2);
    std::thread::sleep(Duration::from_secs(1));
    // The controller holds the read (until aborted): the host must not abort it before
    // io_timeout has passed since it was sent.
    target.hold_reads(1);
    let t = Instant::now();
    let done = c
        .read(0, SgBuffer::zeroed(IO))
        .map(|b| b.len())
        .map_err(|e| e.to_string());
    let elapsed = t.elapsed();
    let events: Vec<String> = c.take_events().iter().map(ToString::to_string).collect();
    println!("read after idle: {done:?} in {elapsed:?}; events {events:?}");
    assert!(
        elapsed >= o.io_timeout,
        "aborted {elapsed:?} after it was sent (io_timeout {:?}): {events:?}",
        o.io_timeout
    );
}

/// A proxy whose second connection (the first I/O queue of the first association) can hold
/// what the target sends, then deliver it followed at once by the end of the stream.
struct FinProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    held: Arc<AtomicUsize>,
}

const FORWARD: u8 = 0;
const HOLD: u8 = 1;
const RELEASE_AND_CLOSE: u8 = 2;

impl FinProxy {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let held = Arc::new(AtomicUsize::new(0));
        let (m, h) = (Arc::clone(&mode), Arc::clone(&held));
        std::thread::spawn(move || {
            for (n, host) in listener.incoming().enumerate() {
                let Ok(host) = host else { continue };
                let up = TcpStream::connect(upstream).expect("upstream");
                host.set_nodelay(true).ok();
                up.set_nodelay(true).ok();
                let (mut hr, mut uw) = (host.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(k) = hr.read(&mut buf) {
                        if k == 0 || uw.write_all(&buf[..k]).is_err() {
                            break;
                        }
                    }
                    let _ = uw.shutdown(Shutdown::Both);
                });
                let (mut ur, mut hw) = (up, host);
                let controlled = n == 1;
                let (m, h) = (Arc::clone(&m), Arc::clone(&h));
                std::thread::spawn(move || {
                    ur.set_read_timeout(Some(Duration::from_millis(5))).ok();
                    let mut buf = vec![0u8; 65536];
                    let mut stash = Vec::new();
                    loop {
                        if controlled && m.load(Ordering::SeqCst) == RELEASE_AND_CLOSE {
                            let _ = hw.write_all(&stash);
                            let _ = hw.shutdown(Shutdown::Both);
                            let _ = ur.shutdown(Shutdown::Both);
                            return;
                        }
                        match ur.read(&mut buf) {
                            Ok(0) => break,
                            Ok(k) => {
                                if controlled && m.load(Ordering::SeqCst) != FORWARD {
                                    stash.extend_from_slice(&buf[..k]);
                                    h.store(stash.len(), Ordering::SeqCst);
                                } else if hw.write_all(&buf[..k]).is_err() {
                                    break;
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => break,
                        }
                    }
                    let _ = hw.shutdown(Shutdown::Both);
                });
            }
        });
        Self { addr, mode, held }
    }
}

/// F3. Several I/O queues: a queue's poll reads a command's data and CapsuleResp (SUCCESS)
/// and then the end of the stream in the same poll; `io.poll()?` returns the connection's
/// error with the success completion still queued, and `collect_aborted` takes it for an
/// aborted command: it is issued again (executed twice), or, with no retries left, reported as
/// failed with its data already in the buffer.
#[test]
fn completion_received_before_the_end_of_stream_is_not_discarded() {
    let target = target();
    let proxy = FinProxy::start(target.addr());
    let mut o = options(&target);
    o.queues = 2;
    o.max_retries = 0;
    o.io_timeout = Duration::from_secs(5);
    o.kato = Duration::from_secs(10);
    let mut c = Controller::connect(proxy.addr, &o).expect("connect");
    assert_eq!(c.io_queues().len(), 2);
    let data: Vec<u8> = (0..IO).map(|i| (i * 7) as u8).collect();
    c.write(0, SgBuffer::from_vec(data)).expect("fill");
    proxy.mode.store(HOLD, Ordering::SeqCst);
    // A goes to queue 0 (most free CIDs, lowest index), B to queue 1.
    let a = c
        .submit(Io::Read {
            slba: 0,
            buffer: SgBuffer::zeroed(IO),
        })
        .expect("a");
    let b = c
        .submit(Io::Read {
            slba: 0,
            buffer: SgBuffer::zeroed(IO),
        })
        .expect("b");
    let first = c.wait(None).expect("b");
    assert_eq!(first.id, b, "B (queue 1) is not held");
    // A's C2HData and CapsuleResp reach the proxy, then the host gets them and the FIN.
    let t = Instant::now();
    while proxy.held.load(Ordering::SeqCst) < IO + 24 + 24 {
        assert!(t.elapsed() < Duration::from_secs(3), "A's answer held");
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.mode.store(RELEASE_AND_CLOSE, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    let done = c.wait(Some(a)).expect("a");
    let events: Vec<String> = c.take_events().iter().map(ToString::to_string).collect();
    println!("A: {:?}; events {events:?}", done.error_message());
    assert!(
        done.is_success(),
        "A's data and SUCCESS arrived before the end of the stream, yet: {:?}",
        done.error_message()
    );
}

/// F4. `Controller::read` (and `write`) drop the buffer when the controller is lost during
/// the call: the IoCompletion carries it, `finish` turns IoError::Lost into Error::Lost, which
/// has no buffer.
#[test]
fn read_hands_the_buffer_back_when_the_controller_is_lost() {
    let target = target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let mut o = options(&target);
    o.ctrl_loss_tmo = Duration::from_millis(300);
    let mut c = Controller::connect(proxy.addr(), &o).expect("connect");
    proxy.cut();
    let err = c.read(0, SgBuffer::zeroed(IO)).expect_err("lost");
    assert!(matches!(err, Error::Lost { .. }), "{err}");
    assert!(err.into_buffer().is_some(), "the read's buffer is dropped");
}

/// F5. A backend shared by the queues (ulp_ddp_core::Shared, "one device, many connections"):
/// on reset the new association's queues are added to the backend while the old engines
/// still hold the same QueueIds (QueueExists: the new queue runs in software), and dropping
/// the old engines then deletes the ids: offload is gone for good after one reconnect.
#[test]
fn shared_backend_still_offloads_after_a_reconnect() {
    let target = target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let o = options(&target);
    let shared = Shared::new(SwBackend::new());
    let s = shared;
    let mut c = Controller::connect_with(proxy.addr(), &o, move |_| s.clone()).expect("connect");
    assert!(c.io_queues()[0].connection().engine().is_offloaded());
    proxy.cut();
    std::thread::scope(|sc| {
        let p = &proxy;
        sc.spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            p.restore();
        });
        c.read(0, SgBuffer::zeroed(IO))
            .expect("read across the reconnect");
    });
    assert_eq!(c.reconnects(), 1);
    assert!(
        c.io_queues()[0].connection().engine().is_offloaded(),
        "offload lost after the reconnect"
    );
}

/// A backend whose teardowns complete a little later, as the contract allows (and as a NIC's
/// invalidation completion does): `TeardownDone` is reported 50 ms after the teardown.
struct Deferred {
    inner: SwBackend,
    later: VecDeque<(Instant, QueueId, BackendEvent)>,
}

impl DdpBackend for Deferred {
    fn limits(&self, p: ProtocolId) -> Option<Limits> {
        self.inner.limits(p)
    }
    fn queue_add(&mut self, c: &QueueConfig) -> Result<(), BackendError> {
        self.inner.queue_add(c)
    }
    fn queue_del(&mut self, q: QueueId) {
        self.inner.queue_del(q);
    }
    fn setup(&mut self, q: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError> {
        self.inner.setup(q, io)
    }
    fn teardown(&mut self, q: QueueId, tag: Tag) -> Result<(), BackendError> {
        self.inner.teardown(q, tag)
    }
    fn resync_response(&mut self, q: QueueId, seq: TcpSeq, here: bool) {
        self.inner.resync_response(q, seq, here);
    }
    fn poll_event(&mut self, q: QueueId) -> Option<BackendEvent> {
        while let Some(e) = self.inner.poll_event(q) {
            match e {
                BackendEvent::TeardownDone { .. } => {
                    self.later
                        .push_back((Instant::now() + Duration::from_millis(50), q, e));
                }
                other => return Some(other),
            }
        }
        let i = self
            .later
            .iter()
            .position(|(at, qq, _)| *qq == q && *at <= Instant::now())?;
        self.later.remove(i).map(|(_, _, e)| e)
    }
    fn stats(&self) -> Stats {
        self.inner.stats()
    }
    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        <SwBackend as DdpBackend>::copy_with_crc(dst, src, crc);
    }
}

/// F6. With a backend whose teardown completes asynchronously, a read outstanding when the
/// connection breaks has no completion yet when `collect_aborted` looks ("cannot happen"):
/// it fails with "no completion" and no buffer, instead of being issued again.
#[test]
fn reset_with_async_teardown_keeps_the_read_and_its_buffer() {
    let target = target();
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let o = options(&target);
    let mut c = Controller::connect_with(proxy.addr(), &o, |_| Deferred {
        inner: SwBackend::new(),
        later: VecDeque::new(),
    })
    .expect("connect");
    c.write(0, SgBuffer::zeroed(IO)).expect("fill");
    proxy.stall();
    let a = c
        .submit(Io::Read {
            slba: 0,
            buffer: SgBuffer::zeroed(IO),
        })
        .expect("a");
    std::thread::scope(|sc| {
        let p = &proxy;
        sc.spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            p.cut();
            p.unstall();
            std::thread::sleep(Duration::from_millis(150));
            p.restore();
        });
        let done = c.wait(Some(a)).expect("a");
        let events: Vec<String> = c.take_events().iter().map(ToString::to_string).collect();
        println!("A: {:?}; events {events:?}", done.error_message());
        assert!(done.buffer.is_some(), "the read's buffer is lost");
        assert!(done.is_success(), "{:?}", done.error_message());
    });
}

/// F7. SgBuffer::split copies the whole remaining tail at every cut of a single-segment
/// buffer: a 64 MiB write at MDTS 128 KiB copies ~16 GiB (quadratic), and a read split
/// reserves the remainder again at every cut (the parts keep the capacities).
#[test]
fn split_is_linear() {
    let len = 64 << 20;
    let chunk = 128 << 10;
    let buf = SgBuffer::from_vec(vec![1u8; len]);
    let t = Instant::now();
    let parts = buf.split(chunk as u64, true);
    let write_split = t.elapsed();
    assert_eq!(parts.len(), len / chunk);
    drop(parts);
    let t = Instant::now();
    let n = SgBuffer::from_vec(vec![1u8; len])
        .split(1 << 20, true)
        .len();
    println!(
        "split 64 MiB at 1 MiB (write, the transport cap): {:?} ({n} parts)",
        t.elapsed()
    );
    let t = Instant::now();
    let parts = SgBuffer::zeroed(16 << 20).split(chunk as u64, false);
    let read_split = t.elapsed();
    let reserved: usize = parts
        .into_iter()
        .flat_map(SgBuffer::into_segments)
        .map(|s| s.capacity())
        .sum();
    println!(
        "split 64 MiB at 128 KiB (write): {write_split:?}; 16 MiB read split: {read_split:?}, \
         {} MiB reserved for 16 MiB",
        reserved >> 20
    );
    assert!(
        reserved <= 2 * (16 << 20),
        "{} MiB reserved",
        reserved >> 20
    );
    assert!(write_split < Duration::from_millis(300), "{write_split:?}");
}

/// F8. A command whose completion is already in the socket when its deadline passes (the
/// caller did not wait for a while): the turn runs the timer (TimedOut queued) before it
/// reads the completion, the completion is delivered, and the stale TimedOut is delivered at
/// the next wait: on_timeout sends Abort for a finished command, the controller answers "not
/// aborted", and the whole controller is reset.
#[test]
fn completed_command_is_not_aborted_later() {
    let target = target();
    let o = options(&target);
    let mut c = Controller::connect(target.addr(), &o).expect("connect");
    c.write(0, SgBuffer::zeroed(IO)).expect("fill");
    let a = c
        .submit(Io::Read {
            slba: 0,
            buffer: SgBuffer::zeroed(IO),
        })
        .expect("a");
    // Sent; answered at once; the caller is busy elsewhere past io_timeout (a GC pause, other
    // work); keep the association alive meanwhile.
    let until = Instant::now() + o.io_timeout + Duration::from_millis(150);
    c.io().flush().expect("send A");
    while Instant::now() < until {
        c.keep_alive().expect("keep alive");
        std::thread::sleep(Duration::from_millis(20));
    }
    let da = c.wait(Some(a)).expect("a");
    assert!(da.is_success());
    let b = c
        .submit(Io::Read {
            slba: 0,
            buffer: SgBuffer::zeroed(IO),
        })
        .expect("b");
    let db = c.wait(Some(b)).expect("b");
    assert!(db.is_success());
    let events: Vec<String> = c.take_events().iter().map(ToString::to_string).collect();
    assert!(
        events.is_empty(),
        "A completed successfully, yet: {events:?}"
    );
    assert_eq!(c.reconnects(), 0);
}
