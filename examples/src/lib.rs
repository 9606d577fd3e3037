//! Examples of using the ulp-ddp crates as a library: see the `[[example]]` targets; `tests/` builds and runs them against embedded targets.
