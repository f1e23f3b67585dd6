#!/usr/bin/env bash
# Builds a bootable node image in $OUT: the kernel (out/vmlinuz), an initramfs whose /init is the
# static decos with the node's manifest, the NIC modules drivers/ lists and what the data disk needs
# (drivers/storage.modules; e2fsprogs' mke2fs with its libraries, to format a blank disk) (out/initrd.img),
# the kernel command line (out/cmdline), an iPXE script (out/boot.ipxe), the operator token and the
# cluster key (kept in out/ and reused by later builds).
#
#   boot/mkimage.sh MANIFEST [DECOS_BINARY]
#   env: OUT=out NICS="virtio e1000 rxe" KERNEL=/boot/vmlinuz-… CMDLINE= CLUSTER_KEY=FILE ZSTD_LEVEL=19
#        TLS=1 (the gateway serves HTTPS with a self-signed certificate made once in out/tls.crt,
#        its key in out/tls.key; boot/tls-cert.sh prints its fingerprint)
#        MKE2FS=/sbin/mke2fs (the mke2fs the image carries: the one on PATH by default)
#        TOOLS="/usr/bin/ib_read_bw …" (host programs to run beside decos as <Process>es, with the
#        shared libraries they need and libibverbs' providers: for benchmarks against them)
set -euo pipefail
manifest=${1:?usage: boot/mkimage.sh MANIFEST [DECOS_BINARY]}
decos=${2:-.build-static/release/decos}
out=${OUT:-out}
nics=${NICS:-virtio e1000 rxe}
step() { echo "image: [$1/6] $2"; }
die() { echo "image: $*" >&2; exit 1; }

[ -f "$manifest" ] || die "no manifest at $manifest"
[ -x "$decos" ] || die "no decos binary at $decos (make static builds it)"
file "$decos" | grep -q "statically linked" || die "$decos is not statically linked: an initramfs has no libraries"
# Checked as the appliance runs it: durable services keep their state on the data disk, /data.
"$decos" manifest check --data /data "$manifest" >/dev/null || die "the manifest does not check: run $decos manifest check --data /data $manifest"
mke2fs=${MKE2FS:-$(command -v mke2fs || echo /sbin/mke2fs)}
[ -x "$mke2fs" ] || die "no mke2fs (install e2fsprogs): the image formats a blank data disk with it"

kernel=${KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)}
# Nothing to do when every input is what the image in $out was built from.
inputs=$(cat "$0" "$decos" "$manifest" drivers/*.modules "$mke2fs" ${CLUSTER_KEY:+"$CLUSTER_KEY"} 2>/dev/null | sha256sum | cut -c1-64)
inputs="$inputs $kernel $nics ${CMDLINE:-} ${ZSTD_LEVEL:-19} ${TOOLS:-} tls=${TLS:-}"
if [ -f "$out/.inputs" ] && [ "$(cat "$out/.inputs")" = "$inputs" ] && [ -f "$out/initrd.img" ] && [ -f "$out/boot.ipxe" ] \
   && [ -s "$out/operator.token" ] && [ -s "${CLUSTER_KEY:-$out/cluster.key}" ]; then
  echo "image: $out/ is up to date ($(stat -c %s "$out/initrd.img") bytes of initramfs)"
  exit 0
fi

step 1 "kernel"
[ -n "$kernel" ] && [ -r "$kernel" ] || die "no readable kernel in /boot (install linux-image-amd64: make deps)"
release=${kernel##*/vmlinuz-}
moddir=/lib/modules/$release
[ -f "$moddir/modules.dep" ] || die "no modules for $release in $moddir"
mkdir -p "$out"
cp "$kernel" "$out/vmlinuz"
echo "       $kernel ($release)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
step 2 "modules for NICs: $nics; for the data disk: storage"
want=()
for family in $nics storage; do
  list=drivers/$family.modules
  [ -f "$list" ] || die "no module list $list (families: $(ls drivers/*.modules | xargs -n1 basename | sed 's/.modules//' | tr '\n' ' '))"
  while read -r m; do want+=("$m"); done < <(sed 's/#.*//' "$list" | tr -s ' \t' '\n' | grep -v '^$')
done
declare -A chosen=()
add() {  # a module by name, its soft pre-dependencies and its modules.dep dependencies
  local name=${1//-/_} line path dep pre
  [ -n "${chosen[$name]:-}" ] && return
  local file=${name//_/[-_]}  # a module's file may spell it with dashes (crc32c-intel.ko)
  line=$(grep -E "(^|/)${file}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" || true)
  if [ -z "$line" ]; then
    grep -qE "/${file}\.ko" "$moddir/modules.builtin" && { chosen[$name]=builtin; return; }
    # An alias (a soft dependency may name one: ext4 wants crypto-crc32c): every module providing it.
    local aliased
    aliased=$(awk -v a="$1" '$1=="alias" && $2==a { print $3 }' "$moddir/modules.alias")
    [ -n "$aliased" ] || die "module $name is neither in $moddir/modules.dep nor built in nor an alias"
    chosen[$name]=alias
    for dep in $aliased; do add "$dep"; done
    return
  fi
  path=${line%%:*}
  chosen[$name]=$path
  for pre in $(awk -v m="$name" '$1=="softdep" && $2==m { p=0; for (i=3;i<=NF;i++) { if ($i=="pre:") p=1; else if ($i=="post:") p=0; else if (p) print $i } }' "$moddir/modules.softdep"); do add "$pre"; done
  for dep in ${line#*:}; do dep=${dep##*/}; add "${dep%%.ko*}"; done
}
for m in "${want[@]}"; do add "$m"; done
mkdir -p "$stage/lib/modules/$release"
: > "$stage/lib/modules/$release/modules.dep"
for name in "${!chosen[@]}"; do
  path=${chosen[$name]}
  [ "$path" = builtin ] || [ "$path" = alias ] && continue
  mkdir -p "$stage/lib/modules/$release/$(dirname "$path")"
  cp "$moddir/$path" "$stage/lib/modules/$release/$path"
  grep -E "^$path:" "$moddir/modules.dep" >> "$stage/lib/modules/$release/modules.dep"
done
names=$(printf '%s\n' "${!chosen[@]}" | sort | tr '\n' '|'); names=${names%|}
grep -E " ($names)\$" "$moddir/modules.alias" > "$stage/lib/modules/$release/modules.alias" || true
grep -E "^softdep ($names) " "$moddir/modules.softdep" > "$stage/lib/modules/$release/modules.softdep" || true
cp "$moddir/modules.builtin" "$stage/lib/modules/$release/"
modules=$(for n in "${!chosen[@]}"; do [ "${chosen[$n]}" = alias ] || echo "$n"; done | sort)
echo "       $(echo "$modules" | wc -l) modules: $(echo "$modules" | tr '\n' ' ')"

step 3 "/init, manifest and secrets"
install -m 0755 "$decos" "$stage/init"
mkdir -p "$stage/etc/decos" "$stage/proc" "$stage/sys" "$stage/dev" "$stage/run" "$stage/tmp" "$stage/sbin"
ln -s /init "$stage/sbin/modprobe"   # the kernel's request_module runs it; decos answers as modprobe
install -m 0644 "$manifest" "$stage/etc/decos/node.xml"
if [ ! -s "$out/operator.token" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$out/operator.token")
  echo "       new operator token in $out/operator.token"
fi
install -m 0600 "$out/operator.token" "$stage/etc/decos/operator.token"
# The cluster key every node of this image's clusters shares (used when decos.listen/decos.seed ask for a cluster).
key=${CLUSTER_KEY:-$out/cluster.key}
if [ ! -s "$key" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$key")
  echo "       new cluster key in $key"
fi
install -m 0600 "$key" "$stage/etc/decos/cluster.key"
if [ -n "${TLS:-}" ]; then
  # The node's name where the manifest gives one; QEMU's user network puts the guest at 10.0.2.15.
  name=$(grep -o '<Manifest[^>]*node="[^"]*"' "$manifest" | sed 's/.*node="//; s/"$//' || true)
  boot/tls-cert.sh "${name:-decos}" "$out/tls.crt" "$out/tls.key" 10.0.2.15 | sed 's/^/       /'
  install -m 0644 "$out/tls.crt" "$stage/etc/decos/tls.crt"
  install -m 0600 "$out/tls.key" "$stage/etc/decos/tls.key"
fi

# mke2fs formats a blank data disk (Sources/DeviceDrivers/DataDisk.swift): the program, the shared
# libraries ldd names and the dynamic loader, each at its own path, and its configuration (the
# features ext4 gets, as on this machine).
for f in "$mke2fs" $(ldd "$mke2fs" | grep -o '/[^ ]*') /etc/mke2fs.conf; do
  [ -e "$f" ] || continue
  mkdir -p "$stage$(dirname "$f")"
  cp -aL "$f" "$stage$(dirname "$f")/"
done
[ "$(dirname "$mke2fs")" = /sbin ] || ln -sf "$mke2fs" "$stage/sbin/mke2fs"
echo "       mke2fs: $mke2fs ($("$mke2fs" -V 2>&1 | head -1 | cut -d' ' -f2)) with $(ldd "$mke2fs" | grep -c '/') libraries"

if [ -n "${TOOLS:-}" ]; then
  # Each tool at its own path, every library ldd names at its path, and the loader's cache so the
  # multiarch directories are searched; libibverbs finds its providers through /etc/libibverbs.d.
  files=(/etc/ld.so.cache /etc/libibverbs.d /usr/lib/x86_64-linux-gnu/libibverbs)
  for tool in $TOOLS; do
    [ -x "$tool" ] || die "no tool at $tool (TOOLS=)"
    files+=("$tool")
    files+=($(ldd "$tool" | grep -o '/[^ ]*' || true))
  done
  for f in /usr/lib/x86_64-linux-gnu/libibverbs/*.so; do files+=($(ldd "$f" | grep -o '/[^ ]*' || true)); done
  for f in "${files[@]}"; do
    [ -e "$f" ] || continue
    mkdir -p "$stage$(dirname "$f")"
    cp -aL "$f" "$stage$(dirname "$f")/"
  done
  echo "       tools: $TOOLS"
fi

step 4 "initramfs (cpio, zstd)"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | zstd -q -"${ZSTD_LEVEL:-19}" -T0 -f -o "$out/initrd.img"

step 5 "kernel command line and iPXE script"
cmdline="console=ttyS0 quiet panic=5 ${CMDLINE:-}"
echo "$cmdline" > "$out/cmdline"
cat > "$out/boot.ipxe" <<IPXE
#!ipxe
# Boots the Decos node image: kernel and initramfs from where this script came from.
kernel vmlinuz $cmdline
initrd initrd.img
boot
IPXE

step 6 "sizes"
size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "       kernel    $(mib "$(size "$out/vmlinuz")")  $out/vmlinuz"
echo "       initramfs $(mib "$(size "$out/initrd.img")")  $out/initrd.img (decos $(mib "$(size "$decos")"), modules $(mib "$(du -sb "$stage/lib/modules" | cut -f1)") before compression)"
echo "$inputs" > "$out/.inputs"
echo "image: ready in $out/ — boot it with: make boot"
