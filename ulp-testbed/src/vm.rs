//! The Rust side of the Linux target VM (nvmet-tcp and LIO in a qemu guest) for the protocol
//! crates' real-peer tests (`ulp-nvme-tcp/tests/linux_target.rs`, `ulp-iscsi/tests/lio.rs`).
//! It builds the VM with `scripts/vm/build.sh`, boots it with `scripts/vm/run-vm.sh` in a run
//! directory of its own, reads the ports file, and kills qemu when the guard drops (also when
//! the test fails).
//!
//! [`Vm::run`] runs a shell command in the guest over the control channel (the guest's second
//! serial port, a unix socket in the run directory), so that a test can change the target's
//! configfs while a host is connected: [`Vm::nvme_port_disable`] and [`Vm::nvme_port_enable`].
//! The protocol is in `scripts/vm/ctl` and `scripts/vm/README.md`.
//!
//! [`TlsVm`] is the NVMe/TCP-over-TLS flavour (`scripts/vm/tls/build.sh`, booted by the same
//! `run-vm.sh`): nvmet-tcp with `addr_tsas=tls1.3`, the PSK and host NQN given to
//! [`TlsVm::start`], tlshd logging each handshake to the console log.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::{Duration, Instant};

/// How long [`Vm::nvme_port_disable`] and [`Vm::nvme_port_enable`] wait for the guest.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

/// A booted VM; dropping it kills qemu and removes the run directory.
#[derive(Debug)]
pub struct Vm {
    pid: String,
    run_dir: PathBuf,
    /// The ports file: `NVME_PORT`, `ISCSI_PORT`, `NQN`, `IQN`, `CTL_SOCK`.
    values: HashMap<String, String>,
    /// The control channel's connection, kept between commands; `None` until the first one and
    /// after an error (the next command connects again).
    ctl: Mutex<Option<UnixStream>>,
}

/// Request ids, unique in this process (one VM per run directory per process).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the guest answered so far, for error messages.
fn so_far(lines: &[String]) -> String {
    if lines.is_empty() {
        "no output so far".to_string()
    } else {
        format!("output so far: {:?}", lines.join("\n"))
    }
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

    /// The guest's serial console (`$RUN_DIR/console.log`): the kernel's and the target's log.
    pub fn console_log(&self) -> PathBuf {
        self.run_dir.join("console.log")
    }

    /// The control channel's unix socket (`$RUN_DIR/ctl.sock`: the guest's `ttyS1`).
    pub fn control_socket(&self) -> PathBuf {
        self.values
            .get("CTL_SOCK")
            .map_or_else(|| self.run_dir.join("ctl.sock"), PathBuf::from)
    }

    /// Runs `command` (one line of busybox `sh`, which can call the helpers of
    /// `scripts/vm/ctl`) in the guest over the control channel, waiting at most `timeout`
    /// (the guest also kills the command after `timeout`, rounded up to whole seconds).
    /// Returns the exit status and the output (stdout and stderr merged, each line ended by
    /// `\n`). One command runs at a time; concurrent callers wait their turn within their own
    /// `timeout`. Timeouts above a day count as a day.
    ///
    /// # Errors
    ///
    /// `command` containing a line break, the socket failing, or no complete answer within
    /// `timeout`, in words saying what was waited for and for how long. A non-zero exit status
    /// is not an error.
    pub fn run(&self, command: &str, timeout: Duration) -> Result<(i32, String), String> {
        if command.contains(['\n', '\r']) {
            return Err(format!(
                "VM control channel: {command:?} is not one line (send one shell line; join commands with `;`)"
            ));
        }
        let timeout = timeout.min(Duration::from_secs(86_400));
        let start = Instant::now();
        let deadline = start + timeout;
        let mut guard = loop {
            match self.ctl.try_lock() {
                Ok(g) => break g,
                Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(format!(
                        "VM control channel: another command kept the channel busy for {timeout:?}, \
                         so {command:?} was not sent"
                    ));
                }
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let result = self.exchange(&mut guard, id, command, start, timeout);
        if result.is_err() {
            // A half-read answer or a dead socket: start afresh next time.
            *guard = None;
        }
        result
    }

    fn exchange(
        &self,
        ctl: &mut Option<UnixStream>,
        id: u64,
        command: &str,
        start: Instant,
        timeout: Duration,
    ) -> Result<(i32, String), String> {
        let path = self.control_socket();
        let deadline = start + timeout;
        let waited = |what: &str| {
            format!(
                "VM control channel {}: waited {:.1} s (limit {timeout:?}) for {what} to {command:?}",
                path.display(),
                start.elapsed().as_secs_f64()
            )
        };
        let remaining = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
        };
        if ctl.is_none() {
            *ctl = Some(
                UnixStream::connect(&path)
                    .map_err(|e| format!("VM control channel {}: connect: {e}", path.display()))?,
            );
        }
        let stream = ctl.as_mut().expect("connected above");
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let request = format!("CMD {id} {} {command}\n", secs.max(1));
        let left = remaining().ok_or_else(|| waited("the channel"))?;
        stream
            .set_write_timeout(Some(left))
            .and_then(|()| stream.write_all(request.as_bytes()))
            .map_err(|e| format!("{}: {e}", waited("sending the request")))?;
        let out_prefix = format!("OUT {id} ");
        let done_prefix = format!("DONE {id} ");
        let mut lines: Vec<String> = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = pending.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\n', '\r']);
                if let Some(text) = line.strip_prefix(&out_prefix) {
                    lines.push(text.to_string());
                } else if let Some(status) = line.strip_prefix(&done_prefix) {
                    let status = status.trim().parse::<i32>().map_err(|e| {
                        format!("VM control channel: {line:?} to {command:?}: bad status: {e}")
                    })?;
                    let mut output = lines.join("\n");
                    if !lines.is_empty() {
                        output.push('\n');
                    }
                    return Ok((status, output));
                } else if line == format!("OUT {id}") {
                    lines.push(String::new());
                } else if line.starts_with("BAD ") && line.contains(&format!("CMD {id} ")) {
                    return Err(format!(
                        "VM control channel: the guest rejected the request: {line:?}"
                    ));
                }
                // Anything else answers an earlier request that its sender gave up on.
            }
            let left = remaining()
                .ok_or_else(|| waited(&format!("`DONE {id} <status>` ({})", so_far(&lines))))?;
            stream
                .set_read_timeout(Some(left))
                .map_err(|e| format!("VM control channel: set_read_timeout: {e}"))?;
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "{}: the socket closed (qemu gone?; {})",
                        waited(&format!("`DONE {id} <status>`")),
                        so_far(&lines)
                    ));
                }
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!("{}: {e}", waited(&format!("`DONE {id} <status>`"))));
                }
            }
        }
    }

    /// Runs a helper of `scripts/vm/ctl` and requires exit status 0.
    fn helper(&self, command: &str) -> Result<String, String> {
        match self.run(command, HELPER_TIMEOUT)? {
            (0, output) => Ok(output),
            (status, output) => Err(format!(
                "VM: `{command}` exited with {status}: {}",
                output.trim_end()
            )),
        }
    }

    /// Unlinks the NVMe/TCP subsystem from nvmet port 1 (the one on guest port 4420): nvmet
    /// deletes the controllers on it, closing their connections, and stops listening, so new
    /// connections are refused (through qemu's port forwarding: accepted, then reset) until
    /// [`nvme_port_enable`](Self::nvme_port_enable). Nothing to do if already unlinked.
    /// Returns the helper's output.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run) (waiting [`HELPER_TIMEOUT`]), or the helper failing.
    pub fn nvme_port_disable(&self) -> Result<String, String> {
        self.helper("nvme_port_disable")
    }

    /// Links the NVMe/TCP subsystem to nvmet port 1 again: the port listens again. Nothing to
    /// do if already linked. Returns the helper's output.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run) (waiting [`HELPER_TIMEOUT`]), or the helper failing.
    pub fn nvme_port_enable(&self) -> Result<String, String> {
        self.helper("nvme_port_enable")
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

fn run(script: &Path, envs: &[(&str, &OsStr)]) -> Result<String, String> {
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

/// Which VM to build and boot, and how.
struct Flavour<'a> {
    /// The build script, relative to the repository root.
    build: &'a str,
    /// Where it puts `vmlinuz` and `initramfs.cpio.gz`, relative to `.vm`.
    out: &'a str,
    /// Extra kernel command line (`APPEND` of `run-vm.sh`).
    append: &'a str,
    /// Tools the build needs beyond the plaintext VM's.
    tools: &'a [&'a str],
}

/// Builds (or reuses the cached build of) the VM and boots it; `tag` names the run directory.
/// `root` is the repository root ([`repo_root`]).
///
/// # Errors
///
/// A missing tool, or the build or boot failing, in words.
pub fn boot(root: &Path, tag: &str) -> Result<Vm, String> {
    boot_flavour(
        root,
        tag,
        &Flavour {
            build: "scripts/vm/build.sh",
            out: "out",
            append: "",
            tools: &[],
        },
    )
}

fn boot_flavour(root: &Path, tag: &str, flavour: &Flavour<'_>) -> Result<Vm, String> {
    for tool in [
        "qemu-system-x86_64",
        "cpio",
        "apt-get",
        "dpkg-deb",
        "timeout",
        "flock",
    ]
    .iter()
    .chain(flavour.tools)
    {
        if !have_tool(tool) {
            return Err(format!("{tool} is not installed"));
        }
    }
    let vm_dir = root.join(".vm");
    let t = Instant::now();
    let built = run(&root.join(flavour.build), &[("VM_DIR", vm_dir.as_os_str())])?;
    println!(
        "VM build: {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        built.trim()
    );
    let run_dir = vm_dir.join(format!("run-{tag}-{}", std::process::id()));
    let vm_out = vm_dir.join(flavour.out);
    let t = Instant::now();
    let booted = run(
        &root.join("scripts/vm/run-vm.sh"),
        &[
            ("VM_DIR", vm_dir.as_os_str()),
            ("VM_OUT", vm_out.as_os_str()),
            ("RUN_DIR", run_dir.as_os_str()),
            ("APPEND", OsStr::new(flavour.append)),
        ],
    );
    let pid = std::fs::read_to_string(run_dir.join("qemu.pid")).unwrap_or_default();
    // The guard exists before anything can fail, so a half-booted VM is killed too.
    let mut vm = Vm {
        pid: pid.trim().to_string(),
        run_dir: run_dir.clone(),
        values: HashMap::new(),
        ctl: Mutex::new(None),
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

/// The `addr_treq` of the TLS VM's port: whether the secure channel is required (TP 8011).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Treq {
    /// `required`: the port talks NVMe/TCP only after a TLS handshake.
    Required,
    /// `not required`: TLS and plaintext hosts are both accepted.
    NotRequired,
    /// `not specified`.
    NotSpecified,
}

impl Treq {
    /// The kernel command line value `scripts/vm/tls/init` takes (`_` for the space).
    fn arg(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::NotRequired => "not_required",
            Self::NotSpecified => "not_specified",
        }
    }
}

/// The Linux NVMe/TCP-over-TLS target VM (`scripts/vm/tls/`: Debian trixie's kernel with
/// nvmet-tcp's TLS 1.3 PSK support and tlshd), booted for one PSK and host NQN; dropping it
/// kills qemu. Its port has `addr_tsas=tls1.3`; the PSK is in the target's `.nvme` keyring
/// under the version 0 identity [`identity`](Self::identity) (the configured key used as the
/// retained PSK, SHA-256). The control channel works as in the plaintext VM ([`TlsVm::vm`]).
#[derive(Debug)]
pub struct TlsVm {
    vm: Vm,
    /// The NVMe/TCP port on 127.0.0.1.
    pub port: u16,
    /// The subsystem's NQN.
    pub subnqn: String,
    /// The host NQN the PSK is for.
    pub hostnqn: String,
}

impl TlsVm {
    /// Builds (cached under `<repo>/.vm/tls`) and boots the TLS target VM: `psk_hex` is the
    /// 32-byte retained PSK in hex (64 digits), `hostnqn` the host it is for, `treq` the port's
    /// `addr_treq`. The kernel command line carries the key: a test key only.
    ///
    /// # Errors
    ///
    /// A malformed key or NQN, a missing tool, or the build or boot failing, in words.
    pub fn start(psk_hex: &str, hostnqn: &str, treq: Treq) -> Result<Self, String> {
        if psk_hex.len() != 64 || !psk_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "TLS VM: the PSK must be 64 hex digits (32 bytes), got {} characters",
                psk_hex.len()
            ));
        }
        if hostnqn.is_empty() || hostnqn.contains(char::is_whitespace) || hostnqn.contains('"') {
            return Err(format!(
                "TLS VM: the host NQN {hostnqn:?} cannot go on the kernel command line"
            ));
        }
        let append = format!("psk={psk_hex} hostnqn={hostnqn} treq={}", treq.arg());
        let vm = boot_flavour(
            &repo_root(),
            "tls",
            &Flavour {
                build: "scripts/vm/tls/build.sh",
                out: "tls/out",
                append: &append,
                tools: &["xz"],
            },
        )?;
        Ok(Self {
            port: vm.port("NVME_PORT")?,
            subnqn: vm.value("NQN")?.to_string(),
            hostnqn: hostnqn.to_string(),
            vm,
        })
    }

    /// The TLS PSK identity the target knows the key by: `NVMe0R01 <hostnqn> <subnqn>`.
    pub fn identity(&self) -> String {
        format!("NVMe0R01 {} {}", self.hostnqn, self.subnqn)
    }

    /// The guest's serial console: nvmet's and tlshd's log (a failed handshake says why here).
    pub fn console_log(&self) -> PathBuf {
        self.vm.console_log()
    }

    /// The underlying VM (ports file, control channel).
    pub fn vm(&self) -> &Vm {
        &self.vm
    }
}
