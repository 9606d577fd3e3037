#!/usr/bin/env bash
# Boots the target VM under qemu (TCG) in the background and waits for TARGET-READY.
# Host ports on 127.0.0.1 are forwarded to the guest's NVMe/TCP (4420) and iSCSI (3260) ports.
# Also boots the TLS target VM (scripts/vm/tls/build.sh): VM_OUT=$VM_DIR/tls/out.
# env: VM_DIR    where build.sh put out/ (default <repo>/.vm)
#      VM_OUT    the kernel and initramfs to boot (default $VM_DIR/out)
#      RUN_DIR   this instance's files (default $VM_DIR/run); one directory per running VM
#      NVME_PORT, ISCSI_PORT  host ports (default: free ones picked here)
#      WAIT_S    boot timeout in seconds (default 120); MEM (512M); APPEND (extra kernel args)
# writes $RUN_DIR/ports (NVME_PORT=, ISCSI_PORT=, NQN=, IQN=, CTL_SOCK=), $RUN_DIR/qemu.pid,
#        $RUN_DIR/console.log, and $RUN_DIR/ctl.sock: the control channel (the guest's ttyS1; see
#        ./ctl for the protocol). Stop it with: kill "$(cat "$RUN_DIR/qemu.pid")"
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VM_DIR=${VM_DIR:-$(cd "$HERE/../.." && pwd)/.vm}
OUT=${VM_OUT:-$VM_DIR/out}
RUN_DIR=${RUN_DIR:-$VM_DIR/run}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
LOG=$RUN_DIR/console.log; PIDF=$RUN_DIR/qemu.pid; CTL=$RUN_DIR/ctl.sock
rm -f "$LOG" "$PIDF" "$RUN_DIR/ports" "$CTL"
# sun_path holds 107 bytes and a NUL.
(( ${#CTL} <= 107 )) || { echo "$CTL: too long for a unix socket path (max 107 bytes)" >&2; exit 1; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
}
start=$(ms)
for attempt in 1 2 3 4 5; do
  NP=${NVME_PORT:-$(free_port)}; IP=${ISCSI_PORT:-$(free_port)}
  if qemu-system-x86_64 -accel tcg -cpu max -m "${MEM:-512M}" -smp 1 \
      -kernel "$OUT/vmlinuz" -initrd "$OUT/initramfs.cpio.gz" \
      -append "console=ttyS0 quiet panic=-1 ${APPEND:-}" \
      -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$NP-:4420,hostfwd=tcp:127.0.0.1:$IP-:3260" \
      -device virtio-net-pci,netdev=n0 \
      -chardev socket,id=ctl,path="$CTL",server=on,wait=off \
      -display none -serial file:"$LOG" -serial chardev:ctl -no-reboot \
      -daemonize -pidfile "$PIDF" 2>"$RUN_DIR/qemu.err"; then
    break
  fi
  cat "$RUN_DIR/qemu.err" >&2
  [ -z "${NVME_PORT:-}${ISCSI_PORT:-}" ] && [ "$attempt" -lt 5 ] || exit 1
done
NQN=nqn.2024-01.io.ulp-ddp:vm; IQN=iqn.2024-01.io.ulp-ddp:vm
for a in ${APPEND:-}; do case $a in nqn=*) NQN=${a#nqn=} ;; iqn=*) IQN=${a#iqn=} ;; esac; done
while :; do
  grep -q TARGET-READY "$LOG" 2>/dev/null && break
  if grep -q -e TARGET-FAILED -e "Kernel panic" "$LOG" 2>/dev/null; then
    cat "$LOG" >&2; kill "$(cat "$PIDF")" 2>/dev/null || true; exit 1
  fi
  kill -0 "$(cat "$PIDF" 2>/dev/null)" 2>/dev/null || { echo "qemu died" >&2; cat "$LOG" >&2; exit 1; }
  if (( $(ms) - start > ${WAIT_S:-120} * 1000 )); then
    echo "boot timeout" >&2; cat "$LOG" >&2; kill "$(cat "$PIDF")" 2>/dev/null || true; exit 1
  fi
  sleep 0.1
done
printf 'NVME_PORT=%s\nISCSI_PORT=%s\nNQN=%s\nIQN=%s\nCTL_SOCK=%s\n' "$NP" "$IP" "$NQN" "$IQN" "$CTL" \
  > "$RUN_DIR/ports"
echo "qemu pid $(cat "$PIDF"); boot-to-READY $(( $(ms) - start )) ms; NVME_PORT=$NP ISCSI_PORT=$IP"
