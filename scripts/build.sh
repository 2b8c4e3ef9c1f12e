#!/usr/bin/env bash
# Build steps: modules | tools | initramfs.  Outputs land in build/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
OUT=$VD_OUT
mkdir -p "$OUT"
TARGET=x86_64-unknown-linux-gnu
TOOLS=(vdctl vdd vd-testvmm vd-itest vd-ivshmem)
# The binaries they make (package vd-ivshmem builds vd-ivshmem-server and vd-libvirt-hook).
BINS=(vdctl vdd vd-testvmm vd-itest vd-ivshmem-server vd-libvirt-hook)

# VD_KERNEL_TREE overrides the cached tree (a developer's own build of the same source).
kernel_tree() { if [ -n "${VD_KERNEL_TREE:-}" ]; then echo "$VD_KERNEL_TREE"; else VARIANT=${VARIANT:-base} bash "$VD_ROOT/scripts/kernel.sh"; fi; }

build_modules() {
    local tree; tree=$(kernel_tree)
    log "modules: building against $tree"
    # Kbuild tracks every source file of a Rust crate (rustc's dep-info, `#[path]` includes too),
    # so make rebuilds what changed; its exit status is the verdict. The old modules are removed
    # first so that a failed build can never leave a stale .ko to be tested.
    local mods=(drivers/vd_evtchn/vd_evtchn drivers/vd_sriov_mgr/vd_sriov_mgr drivers/vd_input_irq/vd_input_irq drivers/vd_front/vd_front tests-kunit/vd_kunit)
    local m
    for m in "${mods[@]}"; do rm -f "$VD_ROOT/$m.ko"; done
    rm -rf "$OUT/modules"
    local rc=0
    make -s -C "$tree" M="$VD_ROOT" "${KMAKE_ARGS[@]}" -j"$(nproc)" modules > "$OUT/modules-build.log" 2>&1 || rc=$?
    grep -v "^  \(LD\|CC\|RUSTC\)" "$OUT/modules-build.log" >&2 || true
    [ $rc = 0 ] || die "modules: make failed (exit $rc; log $OUT/modules-build.log)"
    for m in "${mods[@]}"; do
        [ -f "$VD_ROOT/$m.ko" ] || die "modules: make succeeded but $m.ko is missing"
    done
    mkdir -p "$OUT/modules"
    for m in "${mods[@]}"; do cp "$VD_ROOT/$m.ko" "$OUT/modules/"; done
    cp "$tree"/arch/x86/kvm/kvm.ko "$tree"/arch/x86/kvm/kvm-amd.ko "$OUT/modules/"
    cp "$tree/arch/x86/boot/bzImage" "$OUT/bzImage"
    echo "$tree" > "$OUT/kernel-tree"
    log "modules: $(cd "$OUT/modules" && echo *.ko)"
}

build_tools() {
    log "tools: cargo build (static) ${TOOLS[*]}"
    (cd "$VD_ROOT/userspace-tools" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --quiet --release --locked --target $TARGET $(printf -- '-p %s ' "${TOOLS[@]}")) \
        || die "tools: cargo build failed"
    mkdir -p "$OUT/bin"
    for t in "${BINS[@]}"; do cp "$VD_ROOT/userspace-tools/target/$TARGET/release/$t" "$OUT/bin/"; done
}

# --- Real guests in the test VM (issue 12) -------------------------------------------------------
# The test VM's initramfs is several cpio archives concatenated (the kernel unpacks each in turn):
# the test VM's own files (gzip, rebuilt every time), QEMU with its libraries and firmware (gzip,
# cached by content under $VD_CACHE), and an uncompressed archive with the nested guest's kernel,
# initramfs and tools disk (cheap to write).
# Bump when a recipe below changes what goes into a cached archive.
QEMU_RECIPE=1
GUEST_RECIPE=2
QEMU_BIN=/usr/bin/qemu-system-x86_64
# What `-M q35 -nic none -vga none -nodefaults` with -kernel needs (checked with strace on a run):
# SeaBIOS, the kvmvapic option ROM, the -kernel loader ROM.
QEMU_FIRMWARE=(/usr/share/seabios/bios-256k.bin /usr/share/qemu/kvmvapic.bin
               /usr/share/qemu/linuxboot_dma.bin)

# elf_closure FILE...: the files and every library ldd resolves for them (and the loader), at the
# paths ldd prints.
elf_closure() {
    local f
    for f in "$@"; do
        echo "$f"
        ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' \
            || die "ldd $f failed"
    done | sort -u
}
# stage ROOT FILE...: copies each file (following symlinks) to the same path under ROOT.
stage() {
    local root=$1 f; shift
    for f in "$@"; do
        [ -f "$f" ] || die "initramfs: $f missing"
        mkdir -p "$root$(dirname "$f")"
        cp -L "$f" "$root$f"
    done
}
# content_key RECIPE FILE...: a key over the recipe and the files' names, sizes and mtimes (package
# upgrades change them); cheap, so it can run on every build.
content_key() {
    local r=$1; shift
    { echo "$r"; stat -L -c '%n %s %Y' "$@"; } | sha256sum | cut -c1-16
}
# cached_cpio NAME RECIPE FILE...: $VD_CACHE/initramfs/NAME-<key>.cpio.gz holding FILEs at their
# paths; built once per key. Prints its path.
cached_cpio() {
    local name=$1 recipe=$2; shift 2
    local key; key=$(content_key "$recipe" "$@")
    local dir=$VD_CACHE/initramfs out
    out=$dir/$name-$key.cpio.gz
    mkdir -p "$dir"
    if [ ! -f "$out" ]; then
        log "initramfs: building the cached $name archive ($# files)"
        local root; root=$(mktemp -d "$dir/.$name.XXXX")
        stage "$root" "$@"
        (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -6) \
            > "$out.new" || die "initramfs: $name archive failed"
        rm -rf "$root"
        mv "$out.new" "$out"
        # Older keys of this archive are dead weight.
        find "$dir" -maxdepth 1 -name "$name-*.cpio.gz" ! -path "$out" -delete
    fi
    echo "$out"
}
# pad4 FILE: zero bytes up to a multiple of 4 (the kernel finds the next archive's header there).
pad4() { head -c $(( (4 - $(stat -c %s "$1") % 4) % 4 )) /dev/zero; }

# cached_tools_image RECIPE FILE...: $VD_CACHE/initramfs/guest-tools-<key>.ext4, an ext4 image
# (label vdtools, no journal) holding FILEs at their paths; built once per key. Prints its path.
cached_tools_image() {
    local recipe=$1; shift
    local key; key=$(content_key "$recipe" "$@")
    local dir=$VD_CACHE/initramfs out
    out=$dir/guest-tools-$key.ext4
    mkdir -p "$dir"
    if [ ! -f "$out" ]; then
        log "initramfs: building the cached guest tools disk ($# files)"
        local root; root=$(mktemp -d "$dir/.guest-tools.XXXX")
        stage "$root" "$@"
        # As small as it goes (it is copied into every test VM): no journal, no reserved blocks,
        # few inodes, 1/32 + 4 MiB over the files.
        local mib; mib=$(du -sm "$root" | cut -f1); mib=$(( mib + mib / 32 + 4 ))
        rm -f "$out.new"
        mkfs.ext4 -q -F -L vdtools -O ^has_journal,^resize_inode -m 0 -N 256 -E root_owner=0:0 \
            -d "$root" "$out.new" "${mib}M" > /dev/null \
            || die "initramfs: mkfs.ext4 -d of the guest tools disk failed"
        rm -rf "$root"
        mv "$out.new" "$out"
        find "$dir" -maxdepth 1 -name "guest-tools-*.ext4" ! -path "$out" -delete
    fi
    echo "$out"
}

# The nested guest: its initramfs is small (busybox, /init = scripts/guest-init.sh, vd_front.ko):
# a guest boots in a few seconds. Its tools (fio and mkfs.ext4 with their libraries: about 85 MB,
# as Debian's fio links its ceph/gluster/rdma engines) are on a read-only virtio-blk disk (an ext4
# image, serial vdtools) that the guest mounts when a scenario needs them: unpacking them from
# the initramfs cost ~25 s per guest boot under nested TCG, and twice their size in guest memory.
build_guest() {
    local gdir=$OUT/guest
    rm -rf "$gdir"; mkdir -p "$gdir"
    local tools mk
    command -v fio >/dev/null || die "initramfs: fio missing (scripts/deps.sh installs it)"
    mk=$(command -v mkfs.ext4) || die "initramfs: mkfs.ext4 missing (e2fsprogs)"
    # vd-itest too, for make bench's input latency reader (`vd-itest input-echo`, 96-bench-guest-input).
    mapfile -t tools < <(elf_closure "$(command -v fio)" "$mk" "$OUT/bin/vd-itest")
    local img; img=$(cached_tools_image $GUEST_RECIPE "${tools[@]}")
    ln -f "$img" "$gdir/tools.img" 2>/dev/null || cp "$img" "$gdir/tools.img"
    local root=$gdir/root
    mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,mnt,tools,lib/modules}
    cp /bin/busybox "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
    cp "$VD_ROOT/scripts/guest-init.sh" "$root/init"; chmod +x "$root/init"
    cp "$VD_ROOT/scripts/guest-bench.sh" "$root/guest-bench.sh" # bench-blk scenario (94-bench)
    cp "$VD_ROOT/scripts/guest-bench-place.sh" "$root/guest-bench-place.sh" # bench-place (98-bench)
    cp "$VD_ROOT/scripts/guest-input.sh" "$root/guest-input.sh" # input-evdev scenario (82-guest-input)
    # vd_front.ko once the guest driver is built (the guest tests fail clearly without it).
    [ ! -f "$OUT/modules/vd_front.ko" ] || cp "$OUT/modules/vd_front.ko" "$root/lib/modules/"
    (set -o pipefail; cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) > "$gdir/initramfs.gz" \
        || die "initramfs: the guest's archive failed"
    rm -rf "$root"
    cp "$OUT/bzImage" "$gdir/bzImage"
}

build_initramfs() {
    local root=$OUT/initramfs
    rm -rf "$root"; mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,lib/modules,vd/tests,etc}
    cp /bin/busybox "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
    cp "$OUT"/modules/*.ko "$root/lib/modules/"
    cp "$OUT"/bin/* "$root/bin/"
    cp "$VD_ROOT"/scripts/vmtests/*.sh "$root/vd/tests/"
    # socat: QMP from a shell script (vf-move-qmp.sh, the comparison of make bench's VF move).
    local s; mapfile -t s < <(elf_closure /usr/bin/socat); stage "$root" "${s[@]}"
    # Configuration examples that tests use as they are (24-libvirt-hook).
    mkdir -p "$root/vd/examples"
    cp "$VD_ROOT/userspace-tools/vd-ivshmem/libvirt-domain.example.xml" "$root/vd/examples/"
    cp "$VD_ROOT/scripts/vm-init.sh" "$root/init"
    chmod +x "$root/init" "$root"/vd/tests/*.sh
    # QEMU for nested guests (cached), the guest's kernel, initramfs and tools disk (/vd/guest).
    local q; mapfile -t q < <(elf_closure "$QEMU_BIN")
    local qemu_cpio; qemu_cpio=$(cached_cpio qemu $QEMU_RECIPE "${q[@]}" "${QEMU_FIRMWARE[@]}")
    build_guest
    (set -o pipefail; cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT/initramfs-main.cpio.gz" \
        || die "initramfs: the test VM's archive failed"
    # The guest's files: an uncompressed archive (the kernel and initramfs are compressed already;
    # copying the tools disk costs the test VM less at boot than inflating it would).
    local groot=$OUT/guest-cpio
    rm -rf "$groot"; mkdir -p "$groot/vd"
    ln -s "$OUT/guest" "$groot/vd/guest"
    # Written aside and renamed: a VM booting meanwhile reads the old image or the new, whole.
    { cat "$OUT/initramfs-main.cpio.gz"; pad4 "$OUT/initramfs-main.cpio.gz"
      cat "$qemu_cpio"; pad4 "$qemu_cpio"
      (cd "$groot" && find -L vd | cpio -o -H newc --quiet -L); } > "$OUT/initramfs.gz.new" \
        || { rm -f "$OUT/initramfs.gz" "$OUT/initramfs.gz.new"; die "initramfs: writing $OUT/initramfs.gz failed"; }
    mv "$OUT/initramfs.gz.new" "$OUT/initramfs.gz"
    rm -rf "$groot" "$OUT/initramfs-main.cpio.gz"
    log "initramfs: $(du -h "$OUT/initramfs.gz" | cut -f1) (QEMU $(du -h "$qemu_cpio" | cut -f1), guest initramfs $(du -h "$OUT/guest/initramfs.gz" | cut -f1), tools disk $(du -h "$OUT/guest/tools.img" | cut -f1), bzImage)"
}

case "${1:-}" in
    modules) phase modules build_modules ;;
    tools) phase tools build_tools ;;
    initramfs) phase initramfs build_initramfs ;;
    *) die "usage: build.sh modules|tools|initramfs" ;;
esac
