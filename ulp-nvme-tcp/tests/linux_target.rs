//! The real peer: the Linux kernel NVMe/TCP target (nvmet-tcp) in a qemu (TCG) VM built from
//! Debian packages by `scripts/vm/build.sh` and booted by `scripts/vm/run-vm.sh`. One VM per test
//! binary, killed at the end by a guard (also on failure).
//!
//! The host connects, identifies, writes and reads back 4 KiB, 128 KiB and 1 MiB with digests
//! off and with header and data digests on, with zero CPU copies of C2HData payload.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

use std::time::{Duration, Instant};

use ulp_backend_sw::SwBackend;
use ulp_ddp_core::SgBuffer;
use ulp_nvme_tcp::blocking::{Controller, Options};
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

#[test]
fn linux_nvmet_tcp() {
    let vm = match vm::boot(&vm::repo_root(), "nvme") {
        Ok(vm) => vm,
        Err(why) => return vm::unavailable("Linux NVMe/TCP target VM", &why),
    };
    scenario(&vm, Digests::NONE);
    scenario(&vm, Digests::BOTH);
}
