#!/usr/bin/env bash
# Builds the Linux target VM (kernel + initramfs) from Debian packages, into $VM_DIR/out
# (default: <repo>/.vm/out, gitignored). Nothing is installed: `apt-get download` + `dpkg-deb -x`.
# Skips the work when the output is newer than this script, ./init and ./ctl. Safe to run from several
# processes at once (flock). Needs: apt-get, dpkg-deb, cpio, gzip (and busybox-static's .deb,
# downloaded here).
# env: VM_DIR  cache and output directory
#      KPKG    versioned kernel package (default: what linux-image-cloud-amd64 depends on)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VM_DIR=${VM_DIR:-$(cd "$HERE/../.." && pwd)/.vm}
OUT=$VM_DIR/out
mkdir -p "$VM_DIR"
exec 9>"$VM_DIR/build.lock"
flock 9
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initramfs.cpio.gz" ] \
   && [ "$OUT/initramfs.cpio.gz" -nt "$HERE/init" ] && [ "$OUT/initramfs.cpio.gz" -nt "$HERE/ctl" ] \
   && [ "$OUT/initramfs.cpio.gz" -nt "$HERE/build.sh" ]; then
  echo "up to date: $(cat "$OUT/VERSIONS" 2>/dev/null)"
  exit 0
fi
kpkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
KPKG=${KPKG:-$(kpkg)}
if [ -z "$KPKG" ]; then
  apt-get update -qq
  KPKG=$(kpkg)
fi
[ -n "$KPKG" ] || { echo "cannot resolve the kernel package" >&2; exit 1; }
W=$VM_DIR/work
DEBS=$VM_DIR/debs
rm -rf "$W"; mkdir -p "$W" "$DEBS" "$OUT"
cd "$DEBS"
# As root, apt's sandbox user cannot write here; download as root instead.
SANDBOX=(); [ "$(id -u)" = 0 ] && SANDBOX=(-o APT::Sandbox::User=root)
ls "$KPKG"_*.deb >/dev/null 2>&1 || apt-get "${SANDBOX[@]}" download "$KPKG" >/dev/null
ls busybox-static_*.deb >/dev/null 2>&1 || apt-get "${SANDBOX[@]}" download busybox-static >/dev/null
dpkg-deb -x "$DEBS/$(ls "$KPKG"_*.deb | tail -1)" "$W/kroot"
dpkg-deb -x "$DEBS/$(ls busybox-static_*.deb | tail -1)" "$W/bb"
KVER=$(ls "$W/kroot/lib/modules")
MD=$W/kroot/lib/modules/$KVER
R=$W/initramfs
mkdir -p "$R"/bin "$R"/dev "$R"/etc "$R"/proc "$R"/sys "$R"/modules "$R"/tmp
cp "$W/bb/bin/busybox" "$R/bin/busybox"
cp "$HERE/init" "$R/init"; chmod 755 "$R/init"
cp "$HERE/ctl" "$R/bin/ctl"; chmod 755 "$R/bin/ctl"

# Modules and their dependencies (the .deb has no modules.dep: read `depends=` from each .ko),
# dependencies first.
declare -A PATHS SEEN
while IFS= read -r f; do
  b=$(basename "$f" .ko); PATHS[${b//-/_}]=$f
done < <(find "$MD/kernel" -name '*.ko')
ORDER=()
visit() {
  local n=$1 d
  [ -n "${SEEN[$n]:-}" ] && return 0
  SEEN[$n]=1
  for d in $(tr '\0' '\n' < "${PATHS[$n]}" | sed -n 's/^depends=//p' | tr ',' ' '); do
    visit "${d//-/_}"
  done
  ORDER+=("$n")
}
for n in configfs virtio_pci virtio_net null_blk brd nvmet nvmet_tcp target_core_mod \
         target_core_iblock iscsi_target_mod crc32c_generic crc32c_intel; do
  if [ -n "${PATHS[$n]:-}" ]; then visit "$n"; else echo "note: $n is built in or absent"; fi
done
: > "$R/modules/order"
for n in "${ORDER[@]}"; do
  cp "${PATHS[$n]}" "$R/modules/"
  case $n in
    null_blk) args="nr_devices=0" ;;
    brd) args="rd_nr=2 rd_size=65536" ;;
    *) args="" ;;
  esac
  echo "$(basename "${PATHS[$n]}") $args" >> "$R/modules/order"
done
(cd "$R" && find . | cpio -o -H newc --quiet -R 0:0 | gzip -6 > "$OUT/initramfs.cpio.gz.tmp")
cp "$W/kroot/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
echo "$KPKG $(dpkg-deb -f "$DEBS/$(ls "$KPKG"_*.deb | tail -1)" Version); modules: ${ORDER[*]}" > "$OUT/VERSIONS"
rm -rf "$W"
cat "$OUT/VERSIONS"
