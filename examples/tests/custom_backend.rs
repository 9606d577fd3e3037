//! The custom backend example passes the conformance kit.

mod common;

#[test]
fn custom_backend_passes_the_conformance_kit() {
    let out = common::run("custom_backend", &[]);
    assert_eq!(
        out,
        "MappingTable passed the conformance kit with NVMe/TCP framing\n"
    );
}
