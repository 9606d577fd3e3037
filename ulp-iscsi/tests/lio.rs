//! The real kernel peer: LIO in the Linux target VM (`scripts/vm`, qemu TCG), booted once for
//! this test binary and killed by a guard at the end (also on failure). LIO proposes session
//! keys with T=0, so the login takes several rounds.
//!
//! If the VM cannot be built or booted (qemu, cpio or apt-get missing), the test prints why and
//! passes, unless `ULP_REQUIRE_PEERS=1`, when it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::peers::{have, tshark_check};
use common::*;
use ulp_iscsi::Client;
use ulp_iscsi::wire::{Digests, Lun};

struct Vm {
    pid: String,
    run_dir: PathBuf,
    port: u16,
    iqn: String,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.pid.is_empty() {
            let _ = Command::new("kill").arg(&self.pid).status();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn run(script: &Path, envs: &[(&str, &Path)]) -> Result<String, String> {
    let out = Command::new("timeout")
        .arg("600")
        .arg(script)
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{} failed: {text}{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn boot() -> Result<Vm, String> {
    for tool in [
        "qemu-system-x86_64",
        "cpio",
        "apt-get",
        "dpkg-deb",
        "timeout",
        "flock",
    ] {
        if !have(tool) {
            return Err(format!("{tool} is not installed"));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if !root.join("scripts/vm/run-vm.sh").exists() {
        return Err("scripts/vm is missing".into());
    }
    let vm_dir = root.join(".vm");
    run(&root.join("scripts/vm/build.sh"), &[("VM_DIR", &vm_dir)])?;
    let run_dir = vm_dir.join(format!("run-iscsi-{}", std::process::id()));
    let booted = run(
        &root.join("scripts/vm/run-vm.sh"),
        &[("VM_DIR", &vm_dir), ("RUN_DIR", &run_dir)],
    );
    let pid = std::fs::read_to_string(run_dir.join("qemu.pid")).unwrap_or_default();
    let mut vm = Vm {
        pid: pid.trim().to_string(),
        run_dir: run_dir.clone(),
        port: 0,
        iqn: String::new(),
    };
    booted?;
    let ports = std::fs::read_to_string(run_dir.join("ports")).map_err(|e| e.to_string())?;
    for line in ports.lines() {
        if let Some(p) = line.strip_prefix("ISCSI_PORT=") {
            vm.port = p.parse().map_err(|e| format!("port {p:?}: {e}"))?;
        }
        if let Some(n) = line.strip_prefix("IQN=") {
            vm.iqn = n.to_string();
        }
    }
    Ok(vm)
}

fn scenario(vm: &Vm, digests: bool) {
    let mut c = Client::connect(
        ("127.0.0.1", vm.port),
        config(&vm.iqn, digests),
        options(true),
    )
    .expect("login to LIO");
    let p = c.connection().params().clone();
    assert_eq!((p.header_digest, p.data_digest), (digests, digests));
    // LIO declares 262144 and proposed the session keys the initiator did not offer.
    assert_eq!(p.max_xmit_data_segment_len, 262_144);
    assert!(
        c.connection().login_rounds() >= 3,
        "{} login rounds",
        c.connection().login_rounds()
    );
    let lun = Lun::single_level(0);
    let inq = c.inquiry(lun).expect("INQUIRY");
    assert_eq!(inq.vendor, "LIO-ORG");
    write_read_sizes(&mut c, lun);
    let s = c.connection().engine().stats();
    assert_eq!(s.bytes_copied, 0, "{s:?}");
    let (client_port, port) = c.ports();
    c.logout().expect("logout");
    if have("tshark") {
        let capture = c.capture().expect("capture").to_vec();
        tshark_check(
            &capture,
            client_port,
            port,
            Digests {
                header: digests,
                data: digests,
            },
        );
    }
}

#[test]
fn linux_lio_target() {
    let vm = match boot() {
        Ok(vm) => vm,
        Err(why) => {
            if require_peers() {
                panic!("Linux target VM unavailable: {why}");
            }
            eprintln!("skipping the LIO test: {why}");
            return;
        }
    };
    scenario(&vm, false);
    scenario(&vm, true);
}
