//! NVMe/TCP inside TLS 1.3 with a PSK (NVMe TP 8011) against the embedded target of the test
//! bed: data verified with header and data digests at 4 KiB, 128 KiB and 1 MiB over two I/O
//! queues (each queue its own TLS session), the payload read in place (decrypted straight into
//! the command's buffer), and each way a connection can fail named in words: a wrong PSK, a
//! plaintext host on a TLS-only port, a TLS host on a plaintext port; a connection cut in the
//! middle of transfers hands every buffer back.

use std::collections::HashMap;
use std::time::Duration;

use ulp_backend_sw::SwBackend;
use ulp_nvme_tcp::ConnectionError;
use ulp_nvme_tcp::SgBuffer;
use ulp_nvme_tcp::blocking::{CommandId, Controller, Error, Io, IoError, Options};
use ulp_nvme_tcp::psk::TlsPsk;
use ulp_nvme_tcp::wire::Digests;
use ulp_testbed::nvme::{Target, TargetConfig, TargetTls};
use ulp_testbed::proxy::Proxy;

const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:5e3c7a4e-2b1d-4c6e-9a8f-0123456789ab";
const KEY: [u8; 32] = [0x5a; 32];

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(29)
                .wrapping_add(seed ^ (i >> 11) as u8)
        })
        .collect()
}

fn identity(subnqn: &str) -> String {
    format!("NVMe0R01 {HOSTNQN} {subnqn}")
}

/// A target speaking TLS with [`KEY`] (`required`: plaintext connections are closed).
fn tls_target(required: bool) -> Target {
    let config = TargetConfig::default();
    let identity = identity(&config.subnqn);
    Target::start(TargetConfig {
        tls: Some(TargetTls {
            identity,
            key: KEY.to_vec(),
            required,
        }),
        ..config
    })
    .expect("target")
}

fn options(target: &Target, key: Option<&[u8]>) -> Options {
    let mut o = Options::new(target.subnqn());
    o.hostnqn = HOSTNQN.to_string();
    o.digests = Digests::BOTH;
    o.timeout = Duration::from_secs(10);
    o.tls = key.map(|k| TlsPsk::new(&identity(target.subnqn()), k).expect("a 32-byte key"));
    o
}

#[test]
fn verify_over_tls_on_two_queues_with_digests() {
    let target = tls_target(true);
    let mut o = options(&target, Some(&KEY));
    o.queues = 2;
    let mut c = Controller::connect_with(target.addr(), &o, |_| SwBackend::new()).expect("connect");
    assert_eq!(
        c.io_queues().len(),
        2,
        "two I/O queues, each its own TLS session"
    );
    let sizes = [4096usize, 128 * 1024, 1 << 20];
    // One at a time (the queue a command goes to, then its data checked at the target).
    for (i, &len) in sizes.iter().enumerate() {
        let data = pattern(len, i as u8);
        let slba = (i as u64) * 4096;
        let w = c
            .write(slba, SgBuffer::from_vec(data.clone()))
            .expect("write");
        assert_eq!(w.into_vec(), data, "the write buffer comes back as given");
        assert!(
            target.contents(slba as usize * 512, len) == data,
            "target holds {len}"
        );
        let r = c.read(slba, SgBuffer::zeroed(len)).expect("read");
        assert!(r.into_vec() == data, "read back {len} over TLS");
    }
    // All at once: the queues complete in any order (the multi-queue wait over both TLS
    // sessions, with decrypted bytes OpenSSL may already hold).
    let mut reads: HashMap<CommandId, usize> = HashMap::new();
    for _round in 0..4 {
        for (i, &len) in sizes.iter().enumerate() {
            let id = c
                .submit(Io::Read {
                    slba: (i as u64) * 4096,
                    buffer: SgBuffer::zeroed(len),
                })
                .expect("submit");
            reads.insert(id, i);
        }
    }
    while !reads.is_empty() {
        let done = c.wait(None).expect("a completion");
        let i = reads.remove(&done.id).expect("a read of the run");
        assert!(done.result.is_ok(), "{:?}", done.error_message());
        let got = done.buffer.expect("the buffer comes back").into_vec();
        assert!(
            got == pattern(sizes[i], i as u8),
            "read back {} over TLS",
            sizes[i]
        );
    }
    let stats = c.io().connection().stats();
    assert_eq!(
        stats.bytes_copied, 0,
        "payload decrypted straight into the command buffers"
    );
    assert!(stats.bytes_read_in_place > 0);
    assert_eq!(target.violations(), Vec::<String>::new());
    assert_eq!(target.tls_refusals(), Vec::<String>::new());
    c.close().expect("close");
    assert_eq!(target.shutdowns(), 1);
}

#[test]
fn wrong_psk_fails_clearly() {
    let target = tls_target(true);
    let mut wrong = KEY;
    wrong[31] ^= 1;
    let o = options(&target, Some(&wrong));
    let Err(err) = Controller::connect(target.addr(), &o) else {
        panic!("connected with a wrong PSK");
    };
    let msg = err.to_string();
    println!("wrong PSK: {msg}");
    assert!(matches!(err, Error::Tls(_)), "{msg}");
    assert!(msg.contains("admin queue"), "{msg}");
    assert!(msg.contains("the key differs from the server's"), "{msg}");
    let refused = target.tls_refusals();
    assert!(
        refused.iter().any(|r| r.contains("did not verify")),
        "{refused:?}"
    );
}

#[test]
fn plaintext_host_to_a_tls_only_target_fails_clearly() {
    let target = tls_target(true);
    let o = options(&target, None);
    let Err(err) = Controller::connect(target.addr(), &o) else {
        panic!("a plaintext host connected to a TLS-only port");
    };
    let msg = err.to_string();
    println!("plaintext host, TLS-only target: {msg}");
    assert!(
        matches!(
            err,
            Error::Connection(ConnectionError::PeerClosedBeforeIcResp)
        ),
        "{msg}"
    );
    assert!(msg.contains("may require TLS"), "{msg}");
    let refused = target.tls_refusals();
    assert!(
        refused.iter().any(|r| r.contains("plaintext")),
        "{refused:?}"
    );
}

#[test]
fn tls_host_to_a_plaintext_target_fails_clearly() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let o = options(&target, Some(&KEY));
    let Err(err) = Controller::connect(target.addr(), &o) else {
        panic!("a TLS host connected to a plaintext port");
    };
    let msg = err.to_string();
    println!("TLS host, plaintext target: {msg}");
    assert!(matches!(err, Error::Tls(_)), "{msg}");
    assert!(msg.contains("TLS on this port"), "{msg}");
}

#[test]
fn treq_not_required_serves_both() {
    let target = tls_target(false);
    for key in [Some(&KEY[..]), None] {
        let o = options(&target, key);
        let mut c = Controller::connect(target.addr(), &o).expect("connect");
        let data = pattern(128 * 1024, u8::from(key.is_some()));
        c.write(8, SgBuffer::from_vec(data.clone())).expect("write");
        let r = c.read(8, SgBuffer::zeroed(data.len())).expect("read");
        assert!(r.into_vec() == data, "read back (TLS: {})", key.is_some());
        c.close().expect("close");
    }
    assert_eq!(target.violations(), Vec::<String>::new());
    assert_eq!(target.tls_refusals(), Vec::<String>::new());
}

/// The TLS connections cut (TCP) in the middle of transfers and never back: every command fails
/// after ctrl_loss_tmo with its buffer as given.
#[test]
fn mid_transfer_close_hands_every_buffer_back() {
    let target = tls_target(true);
    let proxy = Proxy::start(target.addr()).expect("proxy");
    let mut o = options(&target, Some(&KEY));
    o.ctrl_loss_tmo = Duration::from_secs(1);
    o.reconnect_delay = Duration::from_millis(200);
    let mut c = Controller::connect(proxy.addr(), &o).expect("connect");
    // The answers stop, so that the commands are in flight when the cut comes.
    proxy.stall();
    let len = 256 * 1024;
    let mut ops: HashMap<CommandId, Option<Vec<u8>>> = HashMap::new();
    for i in 0..8u8 {
        let (io, data) = if i % 2 == 0 {
            let data = pattern(len, i);
            let io = Io::Write {
                slba: u64::from(i) * 1024,
                data: SgBuffer::from_vec(data.clone()),
            };
            (io, Some(data))
        } else {
            let buffer = SgBuffer::zeroed(len);
            (
                Io::Read {
                    slba: u64::from(i) * 1024,
                    buffer,
                },
                None,
            )
        };
        ops.insert(c.submit(io).expect("submit"), data);
    }
    std::thread::sleep(Duration::from_millis(50));
    proxy.cut();
    let (mut back, mut lost) = (0, 0);
    while !ops.is_empty() {
        let done = c.wait(None).expect("a completion");
        let data = ops.remove(&done.id).expect("a command of the run");
        let buffer = done.buffer.expect("the buffer comes back").into_vec();
        assert_eq!(buffer.len(), len);
        match &done.result {
            // Some may have completed before the cut took effect.
            Ok(_) => {}
            Err(IoError::Lost(reason)) => {
                assert!(reason.contains("ctrl_loss_tmo"), "{reason}");
                lost += 1;
                if let Some(data) = data {
                    assert!(buffer == data, "a write's buffer as given");
                }
            }
            Err(e) => panic!("{e:?}"),
        }
        back += 1;
    }
    assert_eq!(back, 8);
    assert!(lost > 0, "the cut came with commands in flight");
    assert_eq!(c.outstanding(), 0);
    c.close().expect("closing a lost controller");
}

/// Where the payload bytes go under TLS, counted by the engine: with the default reader every
/// C2HData payload byte is decrypted by `SSL_read` straight into the command's buffer
/// (`bytes_read_in_place`, exactly the bytes read) and none passes through the reader's receive
/// buffer (`bytes_copied` 0); with `copy_small_payloads` a small read is taken out of OpenSSL
/// into the receive buffer and copied from there (one more copy, counted as `bytes_copied`).
#[test]
fn tls_payload_bytes_are_counted_in_place_and_copied_only_by_the_small_io_policy() {
    let target = tls_target(true);
    let o = options(&target, Some(&KEY));
    let mut c = Controller::connect_with(target.addr(), &o, |_| SwBackend::new()).expect("connect");
    let sizes = [4096usize, 128 * 1024, 1 << 20];
    for (i, &len) in sizes.iter().enumerate() {
        c.write((i as u64) * 4096, SgBuffer::from_vec(pattern(len, i as u8)))
            .expect("write");
    }
    let before = c.stats();
    for (i, &len) in sizes.iter().enumerate() {
        let r = c
            .read((i as u64) * 4096, SgBuffer::zeroed(len))
            .expect("read");
        assert!(r.into_vec() == pattern(len, i as u8), "read back {len}");
    }
    let after = c.stats();
    let total: usize = sizes.iter().sum();
    assert_eq!(
        after.bytes_read_in_place - before.bytes_read_in_place,
        total as u64,
        "every payload byte decrypted straight into its command's buffer"
    );
    assert_eq!(
        after.bytes_copied - before.bytes_copied,
        0,
        "no payload byte through the reader's receive buffer"
    );
    // SPDK's small-I/O policy: reads below 16 KiB go through the 64 KiB receive buffer.
    c.copy_small_payloads(16 * 1024);
    let before = c.stats();
    let r = c.read(0, SgBuffer::zeroed(4096)).expect("small read");
    assert!(r.into_vec() == pattern(4096, 0), "read back 4096");
    let after = c.stats();
    assert_eq!(after.bytes_copied - before.bytes_copied, 4096);
    assert_eq!(after.bytes_read_in_place - before.bytes_read_in_place, 0);
    assert_eq!(target.violations(), Vec::<String>::new());
    c.close().expect("close");
}
