//! Runnable examples of the ulp-ddp crates, one file each beside this package's manifest
//! (`cargo run -p ulp-ddp-examples --example NAME -- ARGS`):
//!
//! - `nvme_read`, `iscsi_read`: connect (blocking) and read 1 MiB into a buffer of your own.
//! - `nvme_tokio`, `iscsi_tokio`: the tokio drivers: write then read back 4 MiB from several
//!   tasks, with the throughput.
//! - `custom_backend`: a DDP backend of your own, run through the conformance kit.
//!
//! `tests/` runs each against the embedded targets of `ulp-testbed`. The library holds only
//! what the NVMe/TCP examples share: reading the controller's address from the command line.

/// The NVMe/TCP controller named on the command line, as `(HOST:PORT, NQN)`: either
/// `nvme-tcp://HOST:PORT/NQN` or `HOST:PORT NQN`.
///
/// # Errors
///
/// The usage, in words, for anything else.
pub fn nvme_args() -> Result<(String, String), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [url] => url
            .strip_prefix("nvme-tcp://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(addr, nqn)| (addr.to_string(), nqn.to_string()))
            .ok_or_else(|| format!("{url}: the URL is nvme-tcp://HOST:PORT/NQN")),
        [addr, nqn] => Ok((addr.clone(), nqn.clone())),
        _ => Err("usage: nvme-tcp://HOST:PORT/NQN or HOST:PORT NQN".into()),
    }
}

// The README's Rust snippets are compiled as doc tests of this package.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
