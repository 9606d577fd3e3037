#!/usr/bin/env bash
# Builds the Linux NVMe/TCP-over-TLS target VM (kernel + initramfs) from Debian trixie packages:
# kernel 6.12 (nvmet-tcp with TLS 1.3 and a PSK, NVMe TP 8011; CONFIG_NVME_TARGET_TCP_TLS=y and
# the `.nvme` keyring built in) and tlshd (ktls-utils), which does the target's handshake.
# Nothing is installed and the machine's apt setup is untouched: a private apt state (trixie's
# package lists) under $VM_DIR/tls/apt, `apt-get download` + `dpkg-deb -x`.
# Writes $VM_DIR/tls/out/{vmlinuz,initramfs.cpio.gz,VERSIONS}; downloads are cached in
# $VM_DIR/tls/debs. Skips the work when the output is newer than this script, ./init,
# ./tlshd.conf and ../ctl (the control channel, shared with the plaintext VM). Safe to run from
# several processes at once (flock).
# Needs: apt-get, apt-cache, dpkg-deb, cpio, gzip, xz, and Debian's archive keyring
# (/usr/share/keyrings/debian-archive-keyring.gpg, package debian-archive-keyring).
# env: VM_DIR         cache and output directory (default <repo>/.vm, gitignored)
#      DEBIAN_MIRROR  (default http://deb.debian.org/debian)
#      SUITE          (default trixie)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VM_DIR=${VM_DIR:-$(cd "$HERE/../../.." && pwd)/.vm}
T=$VM_DIR/tls
OUT=$T/out
mkdir -p "$T"
exec 9>"$T/build.lock"
flock 9
fresh() { [ "$OUT/initramfs.cpio.gz" -nt "$1" ]; }
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initramfs.cpio.gz" ] && fresh "$HERE/build.sh" \
   && fresh "$HERE/init" && fresh "$HERE/tlshd.conf" && fresh "$HERE/../ctl"; then
  echo "up to date: $(cat "$OUT/VERSIONS" 2>/dev/null)"
  exit 0
fi
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || { echo "$KEYRING missing (install debian-archive-keyring)" >&2; exit 1; }
A=$T/apt
mkdir -p "$A"/etc "$A"/lists/partial "$A"/cache/archives/partial "$T/debs" "$OUT"
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
  "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" "${SUITE:-trixie}" "$KEYRING" > "$A/etc/vm.sources"
APT=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$A/etc" -o Dir::State::Lists="$A/lists"
     -o Dir::Cache="$A/cache" -o Dir::State::status=/dev/null -o Debug::NoLocking=1)
# As root, apt's sandbox user cannot write here; download as root instead.
[ "$(id -u)" = 0 ] && APT+=(-o APT::Sandbox::User=root)
update() { apt-get "${APT[@]}" update -qq; }
kpkg() { apt-cache "${APT[@]}" depends linux-image-cloud-amd64 2>/dev/null \
           | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
ls "$A"/lists/*Packages* >/dev/null 2>&1 || update
KPKG=$(kpkg)
[ -n "$KPKG" ] || { update; KPKG=$(kpkg); }
[ -n "$KPKG" ] || { echo "cannot resolve trixie's cloud kernel package" >&2; exit 1; }
# tlshd's shared libraries (and theirs), from the same suite.
LIBS="libc6 libgnutls30t64 libkeyutils1 libglib2.0-0t64 libnl-3-200 libnl-genl-3-200 libp11-kit0
      libidn2-0 libunistring5 libtasn1-6 libhogweed6t64 libnettle8t64 libgmp10 libatomic1
      libpcre2-8-0 libffi8 libzstd1 zlib1g"
PKGS="$KPKG busybox-static ktls-utils keyutils $LIBS"
download() { (cd "$T/debs" && apt-get "${APT[@]}" download -qq $PKGS >/dev/null); }
# A package the cached lists name may be gone from the mirror: refresh the lists once.
have_all() { local p; for p in $PKGS; do ls "$T/debs/${p}"_*.deb >/dev/null 2>&1 || return 1; done; }
have_all || download || { update; download; }
W=$T/work
rm -rf "$W"; mkdir -p "$W/root"
for p in $PKGS; do dpkg-deb -x "$(ls "$T/debs/${p}"_*.deb | tail -1)" "$W/root"; done

KD=$(ls -d "$W"/root/usr/lib/modules/*/ | head -1)
R=$W/initramfs
mkdir -p "$R"/{bin,dev,proc,sys,modules,tmp,etc,run,lib64,usr/lib/x86_64-linux-gnu,usr/sbin}
cp "$W/root/usr/bin/busybox" "$R/bin/busybox"
cp "$HERE/init" "$R/init"; chmod 755 "$R/init"
cp "$HERE/../ctl" "$R/bin/ctl"; chmod 755 "$R/bin/ctl"
cp "$HERE/tlshd.conf" "$R/etc/tlshd.conf"
cp "$W/root/usr/sbin/tlshd" "$W/root/usr/bin/keyctl" "$R/usr/sbin/"
L=$W/root/usr/lib/x86_64-linux-gnu
for l in libgnutls.so.30 libkeyutils.so.1 libglib-2.0.so.0 libnl-3.so.200 libnl-genl-3.so.200 \
         libc.so.6 libm.so.6 libp11-kit.so.0 libidn2.so.0 libunistring.so.5 libtasn1.so.6 \
         libhogweed.so.6 libnettle.so.8 libgmp.so.10 libatomic.so.1 libpcre2-8.so.0 libffi.so.8 \
         libzstd.so.1 libz.so.1; do
  cp -L "$L/$l" "$R/usr/lib/x86_64-linux-gnu/"
done
cp -L "$L/ld-linux-x86-64.so.2" "$R/lib64/"

# Modules are .ko.xz and the guest has no modprobe (nothing loads a module on demand): read
# `depends=` from each module and load dependencies first.
declare -A PATHS SEEN
while IFS= read -r f; do b=$(basename "$f" .ko.xz); PATHS[${b//-/_}]=$f; done \
  < <(find "$KD/kernel" -name '*.ko.xz')
ORDER=()
visit() {
  local n=$1 d
  [ -n "${SEEN[$n]:-}" ] && return 0
  SEEN[$n]=1
  for d in $(xz -dc "${PATHS[$n]}" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
    visit "${d//-/_}"
  done
  ORDER+=("$n")
}
# Every cipher suite tlshd may pick must be in the kernel for kTLS (AES-GCM, AES-CCM,
# ChaCha20-Poly1305), or the handshake succeeds and the socket set-up fails after it.
for n in configfs virtio_pci virtio_net null_blk nvmet nvmet_tcp tls crypto_null gcm ccm \
         ghash_generic ghash_clmulni_intel aesni_intel chacha20poly1305 chacha_generic \
         chacha_x86_64 poly1305_generic poly1305_x86_64 crc32c_generic crc32c_intel; do
  if [ -n "${PATHS[$n]:-}" ]; then visit "$n"; fi   # absent: built in
done
: > "$R/modules/order"
for n in "${ORDER[@]}"; do
  b=$(basename "${PATHS[$n]}" .xz)
  xz -dc "${PATHS[$n]}" > "$R/modules/$b"
  case $n in null_blk) args="nr_devices=0" ;; *) args="" ;; esac
  echo "$b $args" >> "$R/modules/order"
done
(cd "$R" && find . | cpio -o -H newc --quiet -R 0:0 | gzip -6 > "$OUT/initramfs.cpio.gz.tmp")
cp "$W"/root/boot/vmlinuz-* "$OUT/vmlinuz"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
ver() { dpkg-deb -f "$(ls "$T/debs/${1}"_*.deb | tail -1)" Version; }
echo "$KPKG $(ver "$KPKG"), ktls-utils $(ver ktls-utils); modules: ${ORDER[*]}" > "$OUT/VERSIONS"
rm -rf "$W"
cat "$OUT/VERSIONS"
