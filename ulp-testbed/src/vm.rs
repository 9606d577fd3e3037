//! The Rust side of the Linux target VM (nvmet-tcp and LIO in a qemu guest) for the protocol
//! crates' real-peer tests (`ulp-nvme-tcp/tests/linux_target.rs`, `ulp-iscsi/tests/lio.rs`).
//! It builds the VM with `scripts/vm/build.sh`, boots it with `scripts/vm/run-vm.sh` in a run
//! directory of its own, reads the ports file, and kills qemu when the guard drops (also when
//! the test fails).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A booted VM; dropping it kills qemu and removes the run directory.
#[derive(Debug)]
pub struct Vm {
    pid: String,
    run_dir: PathBuf,
    /// The ports file: `NVME_PORT`, `ISCSI_PORT`, `NQN`, `IQN`.
    values: HashMap<String, String>,
}

impl Vm {
    /// A value from the ports file.
    ///
    /// # Errors
    ///
    /// If the ports file lacks `key`.
    pub fn value(&self, key: &str) -> Result<&str, String> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{key} missing from the VM's ports file"))
    }

    /// A port from the ports file.
    ///
    /// # Errors
    ///
    /// If the ports file lacks `key` or it is not a port.
    pub fn port(&self, key: &str) -> Result<u16, String> {
        let v = self.value(key)?;
        v.parse().map_err(|e| format!("{key}={v:?}: {e}"))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.pid.is_empty() {
            let _ = Command::new("kill").arg(&self.pid).status();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

pub use crate::peers::{have as have_tool, unavailable};

/// The repository's root (where `scripts/vm/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
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

/// Builds (or reuses the cached build of) the VM and boots it; `tag` names the run directory.
/// `root` is the repository root ([`repo_root`]).
///
/// # Errors
///
/// A missing tool, or the build or boot failing, in words.
pub fn boot(root: &Path, tag: &str) -> Result<Vm, String> {
    for tool in [
        "qemu-system-x86_64",
        "cpio",
        "apt-get",
        "dpkg-deb",
        "timeout",
        "flock",
    ] {
        if !have_tool(tool) {
            return Err(format!("{tool} is not installed"));
        }
    }
    let vm_dir = root.join(".vm");
    let t = Instant::now();
    let built = run(&root.join("scripts/vm/build.sh"), &[("VM_DIR", &vm_dir)])?;
    println!(
        "VM build: {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        built.trim()
    );
    let run_dir = vm_dir.join(format!("run-{tag}-{}", std::process::id()));
    let t = Instant::now();
    let booted = run(
        &root.join("scripts/vm/run-vm.sh"),
        &[("VM_DIR", &vm_dir), ("RUN_DIR", &run_dir)],
    );
    let pid = std::fs::read_to_string(run_dir.join("qemu.pid")).unwrap_or_default();
    // The guard exists before anything can fail, so a half-booted VM is killed too.
    let mut vm = Vm {
        pid: pid.trim().to_string(),
        run_dir: run_dir.clone(),
        values: HashMap::new(),
    };
    let booted = booted?;
    println!(
        "VM boot: {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        booted.trim()
    );
    let ports = std::fs::read_to_string(run_dir.join("ports")).map_err(|e| e.to_string())?;
    for line in ports.lines() {
        if let Some((k, v)) = line.split_once('=') {
            vm.values.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    Ok(vm)
}
