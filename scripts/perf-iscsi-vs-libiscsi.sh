#!/usr/bin/env bash
# Our iSCSI initiator (`ulp-ddp iscsi perf`) against libiscsi's `iscsi-perf`, same tgtd target,
# same block size and queue depth, one after the other; prints both and the ratio.
#
# usage: scripts/perf-iscsi-vs-libiscsi.sh [BS_BYTES [QD [SECONDS [ROUNDS]]]]
#   defaults: 131072 bytes, QD 8, 3 seconds per run, 3 rounds (medians reported)
# env: ULP_DDP=path to the ulp-ddp binary (default: target/release/ulp-ddp, built if missing)
#      LUN_KIND=file|null (default file: a 64 MiB file LUN in a temp dir; null: tgtd's null LUN)
#      COPY_BELOW=BYTES gives ours --copy-below (small reads through the receive buffer)
#      DIGESTS=1 asks both for header digests (libiscsi never does data digests; ours then
#      negotiates header+data, so this is only informative)
# needs: tgtd/tgtadm (Debian tgt), iscsi-perf (Debian libiscsi-bin). Bounded: every step has a
# timeout; tgtd is stopped on exit.
set -euo pipefail

BS=${1:-131072}
QD=${2:-8}
SECS=${3:-3}
ROUNDS=${4:-3}
LUN_KIND=${LUN_KIND:-file}
BLOCK=512
(( BS % BLOCK == 0 )) || { echo "block size must be a multiple of $BLOCK" >&2; exit 2; }
for t in tgtd tgtadm iscsi-perf; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install tgt libiscsi-bin)" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ULP_DDP:-$ROOT/target/release/ulp-ddp}
if [[ ! -x $BIN ]]; then
    (cd "$ROOT" && timeout 600 cargo build --release -q -p ulp-ddp-cli)
fi

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CTL=$(( (PORT % 200) + 20 ))   # tgtd control socket number, away from 0 (the default)
IQN=iqn.2024-01.io.ulp-ddp:perf
TGTD_PID=

cleanup() {
    if [[ -n $TGTD_PID ]]; then
        timeout 5 tgtadm -C "$CTL" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
        timeout 5 tgtadm -C "$CTL" --op delete --mode system >/dev/null 2>&1 || true
        sleep 0.3
        kill "$TGTD_PID" 2>/dev/null || true
        sleep 0.2
        kill -9 "$TGTD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

tgtd -f --iscsi portal=127.0.0.1:"$PORT" -C "$CTL" >"$WORK/tgtd.log" 2>&1 &
TGTD_PID=$!
for _ in $(seq 50); do
    timeout 2 tgtadm -C "$CTL" --lld iscsi --mode target --op show >/dev/null 2>&1 && break
    sleep 0.1
done
tgtadm -C "$CTL" --lld iscsi --mode target --op new --tid 1 --targetname "$IQN"
if [[ $LUN_KIND == null ]]; then
    tgtadm -C "$CTL" --lld iscsi --mode logicalunit --op new --tid 1 --lun 1 --bstype null --backing-store /dev/null
else
    # A file LUN, written once so that reads return data (from the page cache).
    dd if=/dev/urandom of="$WORK/lun.img" bs=1M count=64 status=none
    tgtadm -C "$CTL" --lld iscsi --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$WORK/lun.img"
fi
if [[ ${DIGESTS:-0} == 1 ]]; then
    tgtadm -C "$CTL" --lld iscsi --mode target --op update --tid 1 --name HeaderDigest --value CRC32C,None
    tgtadm -C "$CTL" --lld iscsi --mode target --op update --tid 1 --name DataDigest --value CRC32C,None
fi
tgtadm -C "$CTL" --lld iscsi --mode target --op bind --tid 1 --initiator-address ALL
URL="iscsi://127.0.0.1:$PORT/$IQN/1"
BLOCKS=$(( BS / BLOCK ))
OURS_FLAGS=()
[[ ${DIGESTS:-0} == 1 ]] && OURS_FLAGS+=(--digests)
[[ -n ${COPY_BELOW:-} ]] && OURS_FLAGS+=(--copy-below "$COPY_BELOW")

echo "tgtd on 127.0.0.1:$PORT ($LUN_KIND LUN), $BS-byte sequential reads, QD $QD, $SECS s per run, $ROUNDS rounds"
theirs=()
ours=()
cpu_theirs=()
cpu_ours=()
TICK=$(getconf CLK_TCK)
# CPU seconds used so far by a process and its threads (utime + stime from /proc).
proc_cpu() { awk -v t="$TICK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$1/stat"; }
# client CPU seconds per GB moved: (user + sys) / (GB/s * seconds)
per_gb() { awk -v c="$1" -v g="$2" -v s="$SECS" 'BEGIN{printf "%.3f", c / (g * s)}'; }
for r in $(seq "$ROUNDS"); do
    # iscsi-perf prints "iops average N (M MB/s)" at the end; MB = 2^20 bytes in its source.
    t0=$(proc_cpu "$TGTD_PID")
    out=$(timeout $(( SECS + 15 )) /usr/bin/time -f '%U %S' -o "$WORK/time.theirs" iscsi-perf -i "iqn.2024-01.io.ulp-ddp:libiscsi-$r" -t "$SECS" -b "$BLOCKS" -m "$QD" "$URL" 2>&1 | tr '\r' '\n' || true)
    iops=$(grep -o 'iops average [0-9]*' <<<"$out" | tail -1 | awk '{print $3}')
    [[ -n $iops ]] || { echo "iscsi-perf failed:"; echo "$out" | tail -5; exit 1; }
    gbps_theirs=$(awk -v i="$iops" -v b="$BS" 'BEGIN{printf "%.3f", i*b/1e9}')
    t1=$(proc_cpu "$TGTD_PID")
    json=$(timeout $(( SECS + 30 )) /usr/bin/time -f '%U %S' -o "$WORK/time.ours" "$BIN" iscsi perf "$URL" --bs "$BS" --qd "$QD" --seconds "$SECS" \
        --json --no-progress --initiator "iqn.2024-01.io.ulp-ddp:ours-$r" "${OURS_FLAGS[@]}")
    gbps_ours=$(grep -o '"gbps":[0-9.]*' <<<"$json" | cut -d: -f2)
    p99=$(grep -o '"lat_p99_us":[0-9.]*' <<<"$json" | cut -d: -f2)
    copied=$(grep -o '"bytes_copied":[0-9]*' <<<"$json" | cut -d: -f2)
    t2=$(proc_cpu "$TGTD_PID")
    ct=$(per_gb "$(awk '{print $1 + $2}' "$WORK/time.theirs")" "$gbps_theirs")
    co=$(per_gb "$(awk '{print $1 + $2}' "$WORK/time.ours")" "$gbps_ours")
    printf 'round %d: iscsi-perf %8s IOPS %7s GB/s %s cpu-s/GB (tgtd %s s) | ulp-ddp %7s GB/s %s cpu-s/GB (tgtd %s s; p99 %s us, %s B copied) | ratio %s\n' \
        "$r" "$iops" "$gbps_theirs" "$ct" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" \
        "$gbps_ours" "$co" "$(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.2f", b-a}')" "$p99" "$copied" \
        "$(awk -v a="$gbps_ours" -v b="$gbps_theirs" 'BEGIN{printf "%.2f", a/b}')"
    theirs+=("$gbps_theirs")
    ours+=("$gbps_ours")
    cpu_theirs+=("$ct")
    cpu_ours+=("$co")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mt=$(median "${theirs[@]}")
mo=$(median "${ours[@]}")
echo "median: iscsi-perf $mt GB/s, ulp-ddp iscsi perf $mo GB/s, ratio $(awk -v a="$mo" -v b="$mt" 'BEGIN{printf "%.2f", a/b}')x"
ct=$(median "${cpu_theirs[@]}")
co=$(median "${cpu_ours[@]}")
echo "median client CPU: iscsi-perf $ct s/GB, ulp-ddp $co s/GB, ratio $(awk -v a="$ct" -v b="$co" 'BEGIN{printf "%.2f", a/b}')x less CPU per byte"
