//! The real peer: the Linux kernel NVMe/TCP target (nvmet-tcp) in a qemu (TCG) VM built from
//! Debian packages by `scripts/vm/build.sh` and booted by `scripts/vm/run-vm.sh`. One VM per test
//! binary, killed at the end by a guard (also on failure).
//!
//! The host connects, identifies, writes and reads back 4 KiB, 128 KiB and 1 MiB with digests
//! off and with header and data digests on, with zero CPU copies of C2HData payload. Then,
//! through the VM's control channel, it unlinks the subsystem from the nvmet port while a
//! controller is connected (the connected controller's I/O fails, a new connection is refused),
//! links it again, and connects and reads again.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SgBuffer;
use ulp_nvme_tcp::blocking::{Controller, Error, Options};
use ulp_nvme_tcp::wire::Digests;

use ulp_testbed::vm::{self, Vm};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ seed ^ ((i >> 9) as u8))
        .collect()
}

fn scenario(vm: &Vm, digests: Digests) {
    let t = Instant::now();
    let nqn = vm.value("NQN").expect("NQN").to_string();
    let port = vm.port("NVME_PORT").expect("NVME_PORT");
    let mut o = Options::new(&nqn);
    o.digests = digests;
    o.timeout = Duration::from_secs(30);
    let mut c = Controller::connect_with(("127.0.0.1", port), &o, |_| SwBackend::new())
        .expect("connect to nvmet");
    assert_eq!(c.info().model, "Linux");
    assert_eq!(c.info().subnqn, nqn);
    let ns = c.namespace();
    assert!(ns.nsze > 0 && ns.block_size >= 512, "{ns:?}");
    println!(
        "digests {digests:?}: connected in {:.0} ms: MN {:?} FR {:?} cntlid {} IOCCSZ {} ns1 {} x {} B",
        t.elapsed().as_secs_f64() * 1e3,
        c.info().model,
        c.info().firmware,
        c.cntlid(),
        c.info().ioccsz,
        ns.nsze,
        ns.block_size
    );
    let bs = u64::from(ns.block_size);
    let mut payload = 0;
    for (i, len) in [4096usize, 128 * 1024, 1 << 20].into_iter().enumerate() {
        let data = pattern(len, i as u8 + if digests.data { 100 } else { 0 });
        let slba = (i as u64) * (2 << 20) / bs;
        let t = Instant::now();
        c.write(slba, SgBuffer::from_vec(data.clone()))
            .expect("write");
        let tw = t.elapsed();
        let t = Instant::now();
        let r = c.read(slba, SgBuffer::zeroed(len)).expect("read");
        let tr = t.elapsed();
        assert!(r.into_vec() == data, "{len} bytes read back");
        payload += len as u64;
        println!(
            "  {:>7} B: write {:>7.2} ms, read {:>7.2} ms, match",
            len,
            tw.as_secs_f64() * 1e3,
            tr.as_secs_f64() * 1e3
        );
    }
    c.flush().expect("flush");
    let s = c.io().connection().stats();
    println!(
        "  I/O queue: bytes_read_in_place {} bytes_copied {} digests computed {} failed {}",
        s.bytes_read_in_place, s.bytes_copied, s.digests_computed, s.digests_failed
    );
    assert_eq!(s.bytes_copied, 0);
    assert_eq!(s.bytes_read_in_place, payload);
    assert_eq!(s.digests_failed, 0);
    if digests.data {
        assert!(s.digests_computed >= 3);
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The control channel runs commands; disabling the nvmet port ends the connected controller
/// and refuses new ones; enabling it lets a host connect and read again.
fn port_disable_enable(vm: &Vm) {
    let t = Instant::now();
    let (status, out) = vm.run("echo hi", Duration::from_secs(10)).expect("echo hi");
    assert_eq!((status, out.as_str()), (0, "hi\n"));
    println!("control channel: `echo hi` in {:.0} ms", ms(t));
    let (status, out) = vm
        .run(
            "printf 'a\\nb'; echo err >&2; exit 3",
            Duration::from_secs(10),
        )
        .expect("exit 3");
    assert_eq!((status, out.as_str()), (3, "a\nberr\n"));
    assert!(vm.run("one\ntwo", Duration::from_secs(1)).is_err());
    let t = Instant::now();
    let err = vm
        .run("sleep 30", Duration::from_secs(1))
        .expect_err("sleep 30 within 1 s");
    println!(
        "  `sleep 30` with a 1 s limit: error after {:.0} ms: {err}",
        ms(t)
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The guest killed it; the channel answers the next command (the stale answer is skipped).
    let (status, out) = vm
        .run("nvme_port_state", Duration::from_secs(10))
        .expect("state");
    assert_eq!((status, out.as_str()), (0, "enabled\n"));

    let nqn = vm.value("NQN").expect("NQN").to_string();
    let port = vm.port("NVME_PORT").expect("NVME_PORT");
    let addr = ("127.0.0.1", port);
    let mut o = Options::new(&nqn);
    o.timeout = Duration::from_secs(3);
    let data = pattern(4096, 0x5a);
    let mut c = Controller::connect(addr, &o).expect("connect before disabling");
    let slba = (16u64 << 20) / u64::from(c.namespace().block_size);
    c.write(slba, SgBuffer::from_vec(data.clone()))
        .expect("write before disabling");

    let sockets = "netstat -tn | grep ':4420 ' || true";
    let (_, before) = vm.run(sockets, Duration::from_secs(10)).expect("netstat");
    print!("  guest TCP on 4420 before disabling:\n{before}");
    let t = Instant::now();
    let said = vm.nvme_port_disable().expect("nvme_port_disable");
    println!("nvme_port_disable in {:.0} ms: {}", ms(t), said.trim());
    let (_, after) = vm
        .run(
            &format!("nvme_port_disable; {sockets}"),
            Duration::from_secs(10),
        )
        .expect("netstat");
    print!("  guest TCP on 4420 right after (and disabling again):\n{after}");
    assert!(after.contains("already unlinked"), "{after}");
    assert!(!after.contains("ESTABLISHED"), "{after}");
    assert_eq!(
        vm.run("nvme_port_state", Duration::from_secs(10))
            .expect("state"),
        (0, "disabled\n".to_string())
    );
    // The controller connected before: nvmet deleted it with the link and reset its
    // connections, so the read fails at once (the status this crate gives commands outstanding
    // when the connection ends).
    let t = Instant::now();
    let r = c.read(slba, SgBuffer::zeroed(4096));
    println!(
        "  read on the controller connected before: {} after {:.0} ms",
        match &r {
            Ok(_) => "succeeded".to_string(),
            Err(e) => format!("failed: {e}"),
        },
        ms(t)
    );
    assert!(r.is_err(), "I/O on a controller of an unlinked port");
    drop(c);
    // A new host: accepted by qemu's forwarding, then reset (nvmet no longer listens).
    let t = Instant::now();
    let r = Controller::connect(addr, &o);
    let e = r.as_ref().err().map(Error::to_string);
    println!(
        "  connect while disabled: {} after {:.0} ms",
        e.as_deref().unwrap_or("succeeded"),
        ms(t)
    );
    assert!(r.is_err(), "connect while the port is unlinked");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let t = Instant::now();
    let said = vm.nvme_port_enable().expect("nvme_port_enable");
    println!("nvme_port_enable in {:.0} ms: {}", ms(t), said.trim());
    let t = Instant::now();
    let mut c = Controller::connect(addr, &o).expect("connect after enabling");
    let back = c
        .read(slba, SgBuffer::zeroed(4096))
        .expect("read after enabling");
    assert!(back.into_vec() == data, "4 KiB read back after enabling");
    println!(
        "  connect + 4 KiB read after enabling: {:.0} ms, data as written before",
        ms(t)
    );
}

#[test]
fn linux_nvmet_tcp() {
    let vm = match vm::boot(&vm::repo_root(), "nvme") {
        Ok(vm) => vm,
        Err(why) => return vm::unavailable("Linux NVMe/TCP target VM", &why),
    };
    scenario(&vm, Digests::NONE);
    scenario(&vm, Digests::BOTH);
    port_disable_enable(&vm);
}
