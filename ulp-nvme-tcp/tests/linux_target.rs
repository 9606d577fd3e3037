//! The real peer: the Linux kernel NVMe/TCP target (nvmet-tcp) in a qemu (TCG) VM built from
//! Debian packages by `scripts/vm/build.sh` and booted by `scripts/vm/run-vm.sh`. One VM per test
//! binary, killed at the end by a guard (also on failure).
//!
//! The host connects, identifies, writes and reads back 4 KiB, 128 KiB and 1 MiB with digests
//! off and with header and data digests on, with zero CPU copies of C2HData payload; it reads
//! the Discovery Log Page of Linux's discovery controller, which must list the VM's subsystem.
//! Then, through the VM's control channel, it unlinks the subsystem from the nvmet port while a
//! controller is connected (the connected controller's I/O fails, a new connection is refused),
//! links it again, and connects and reads again.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{QueueId, SgBuffer};
use ulp_nvme_tcp::blocking::{Connection, Controller, Error, Io, Options};
use ulp_nvme_tcp::discovery::{LogReader, ReadStep, SubsystemType, TransportType};
use ulp_nvme_tcp::nvme::{self, ControllerInfo};
use ulp_nvme_tcp::wire::Digests;
use ulp_nvme_tcp::{ConnectionConfig, Data, NoOffload};

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
    o.reconnect_delay = Duration::from_millis(500);
    o.ctrl_loss_tmo = Duration::from_secs(2);
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
    // connections. The host resets and tries to reconnect every reconnect_delay; the port
    // stays unlinked past ctrl_loss_tmo, so every outstanding command fails with the reason
    // and its buffer comes back.
    let t = Instant::now();
    let ids: Vec<_> = (0..32u64)
        .map(|i| {
            c.submit(Io::Read {
                slba: slba + i * 8,
                buffer: SgBuffer::zeroed(4096),
            })
            .expect("submit")
        })
        .collect();
    let mut failed = 0;
    for _ in &ids {
        let done = c.wait(None).expect("a completion");
        let msg = done.error_message().expect("failed");
        assert!(msg.contains("ctrl_loss_tmo"), "{msg}");
        assert_eq!(done.buffer.map(|b| b.len()), Some(4096), "buffer back");
        failed += 1;
    }
    let events: Vec<String> = c.take_events().iter().map(ToString::to_string).collect();
    println!(
        "  32 reads on the controller connected before: {failed} failed after {:.0} ms; recovery: {}",
        ms(t),
        events.join("; ")
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("resetting the controller")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("controller lost")),
        "{events:?}"
    );
    assert!(
        c.submit(Io::Flush).is_err(),
        "a lost controller takes no new command"
    );
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

/// Linux's discovery controller on the same port: Connect to the discovery NQN, enable,
/// Identify, and the log read header / page / header; the VM's subsystem is listed.
fn discovery(vm: &Vm) {
    let nqn = vm.value("NQN").expect("NQN").to_string();
    let port = vm.port("NVME_PORT").expect("NVME_PORT");
    let timeout = Duration::from_secs(30);
    let config = ConnectionConfig::admin(QueueId(0), Digests::NONE);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = Connection::connect(addr, NoOffload, config, timeout).expect("ICReq");
    let hostnqn = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000d1";
    let data = nvme::connect_data([0xD1; 16], 0xFFFF, nvme::DISCOVERY_NQN, hostnqn);
    let done = c
        .run(
            nvme::connect(0, 32, 0, 0),
            Data::Write(SgBuffer::from_vec(data)),
        )
        .expect("Connect");
    assert!(
        done.status.is_success(),
        "discovery Connect: {}",
        done.status
    );
    let done = c
        .run(
            nvme::property_set(nvme::REG_CC, nvme::CC_ENABLE),
            Data::None,
        )
        .expect("Property Set CC");
    assert!(done.status.is_success());
    let deadline = Instant::now() + timeout;
    loop {
        let done = c
            .run(nvme::property_get(nvme::REG_CSTS, false), Data::None)
            .expect("Property Get CSTS");
        if done.result & 1 != 0 {
            break;
        }
        assert!(Instant::now() < deadline, "CSTS.RDY");
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = c
        .run(
            nvme::identify(nvme::CNS_CONTROLLER, 0),
            Data::Read(SgBuffer::zeroed(nvme::IDENTIFY_LEN)),
        )
        .expect("Identify");
    let info = ControllerInfo::parse(&done.buffer.expect("data").into_vec());
    assert_eq!(info.subnqn, nvme::DISCOVERY_NQN);
    // CNTRLTYPE is reported by kernels since 5.18; 0 before.
    assert!(
        matches!(info.cntrltype, 0 | nvme::CNTRLTYPE_DISCOVERY),
        "CNTRLTYPE {}",
        info.cntrltype
    );
    let mut reader = LogReader::new(256);
    let mut step = reader.start();
    let log = loop {
        match step {
            ReadStep::Read { len, .. } => {
                let sqe = step.command().expect("command");
                let done = c
                    .run(sqe, Data::Read(SgBuffer::zeroed(len as usize)))
                    .expect("Get Log Page");
                assert!(done.status.is_success(), "Get Log Page: {}", done.status);
                step = reader
                    .feed(&done.buffer.expect("data").into_vec())
                    .expect("Linux's discovery log parses");
            }
            ReadStep::Done(log) => break log,
        }
    };
    print!("Linux's discovery log, as nvme discover shows it:{log}");
    let e = log
        .entries
        .iter()
        .find(|e| e.subtype == SubsystemType::Nvm && e.subnqn == nqn)
        .expect("the VM's subsystem is listed");
    assert_eq!((e.trtype, e.trsvcid.as_str()), (TransportType::Tcp, "4420"));
}

#[test]
fn linux_nvmet_tcp() {
    let vm = match vm::boot(&vm::repo_root(), "nvme") {
        Ok(vm) => vm,
        Err(why) => return vm::unavailable("Linux NVMe/TCP target VM", &why),
    };
    scenario(&vm, Digests::NONE);
    scenario(&vm, Digests::BOTH);
    discovery(&vm);
    port_disable_enable(&vm);
}
