//! Runnable examples of the ulp-ddp crates, one file each beside this package's manifest
//! (`cargo run -p ulp-ddp-examples --example NAME -- ARGS`):
//!
//! - `nvme_read`, `iscsi_read`: connect (blocking) and read 1 MiB into a buffer of your own.
//! - `nvme_tokio`, `iscsi_tokio`: the tokio drivers: write then read back 4 MiB from several
//!   tasks, with the throughput.
//! - `custom_backend`: a DDP backend of your own, run through the conformance kit.
//!
//! `tests/` runs each against the embedded targets of `ulp-testbed`; the library itself is
//! empty.

// The README's Rust snippets are compiled as doc tests of this package.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
