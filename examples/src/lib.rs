//! Examples of using the ulp-ddp crates as a library: see the `[[example]]` targets; `tests/` builds and runs them against embedded targets.

// The README's Rust snippets are compiled as doc tests of this package.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
