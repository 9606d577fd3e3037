#!/usr/bin/env bash
# The whole test suite, with every set-up it needs on a fresh Debian machine (run as root there):
# peers from Debian's packages, then format, lint, tests, docs and the fuzz targets' build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Peers the tests start themselves (iSCSI target, dissector, the Linux target VMs' tools; the
# TLS VM, scripts/vm/tls, also needs xz for its modules and Debian's archive keyring for its
# private apt state of trixie; openssl for s_server/s_client; nvme-cli as the TLS PSK oracle),
# and OpenSSL's headers for ulp-tls.
PACKAGES="tgt tshark qemu-system-x86 cpio busybox-static libiscsi-bin xz-utils debian-archive-keyring openssl libssl-dev pkg-config nvme-cli"
missing=""
for p in $PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing:$missing"
        apt-get update -qq
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "warning: missing packages:$missing (peer tests will fail)" >&2
    fi
fi
# Peer tests fail, rather than skip, when their peer cannot run.
export ULP_REQUIRE_PEERS=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
cargo test --workspace --locked
# Every library crate packages and its package builds on its own (verification). One invocation:
# cargo packages the workspace path dependencies into a local registry overlay, so ulp-nvme-tcp
# verifies against the packaged ulp-ddp-core (alone, `cargo package -p ulp-nvme-tcp` fails until
# the core is on crates.io). About 25 s. --allow-dirty only matters for local runs.
cargo package --locked --allow-dirty \
    -p ulp-ddp-core -p ulp-backend-sw -p ulp-backend-mlx5 -p ulp-nvme-tcp -p ulp-iscsi -p ulp-tls
# No packaged test, bench or example reaches outside its crate: the test bed (a path-only
# dev-dependency) is stripped from the packages, and #[path] into another crate is not packaged.
for crate in ulp-ddp-core ulp-backend-sw ulp-backend-mlx5 ulp-nvme-tcp ulp-iscsi ulp-tls; do
    files=$(cargo package --list --locked --allow-dirty -p "$crate" | grep -E '^(tests|benches|examples)/.*\.rs$' || true)
    outside=$(cd "$crate" && for f in $files; do grep -lE 'ulp_testbed|#\[path' "$f" || true; done)
    if [ -n "$outside" ]; then
        echo "$crate packages files that reach outside the crate (add them to its exclude list):" $outside >&2
        exit 1
    fi
done
# The fuzz targets build on stable (they run under nightly with cargo fuzz; see fuzz/README.md).
cargo check --manifest-path fuzz/Cargo.toml --quiet
