//! The real peer: the Linux kernel NVMe/TCP target (nvmet-tcp) in a qemu (TCG) VM built from
//! Debian packages by `scripts/vm/build.sh` and booted by `scripts/vm/run-vm.sh`. One VM per test
//! binary, killed at the end by a guard (also on failure).
//!
//! The host connects, identifies, writes and reads back 4 KiB, 128 KiB and 1 MiB with digests
//! off and with header and data digests on, with zero CPU copies of C2HData payload; and it
//! reads the Discovery Log Page of Linux's discovery controller, which must list the VM's
//! subsystem.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{QueueId, SgBuffer};
use ulp_nvme_tcp::blocking::{Connection, Controller, Options};
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
}
