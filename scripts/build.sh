#!/usr/bin/env bash
# Build steps: modules | tools | initramfs.  Outputs land in build/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
OUT=$VD_OUT
mkdir -p "$OUT"
TARGET=x86_64-unknown-linux-gnu
TOOLS=(vdctl vdd vd-testvmm vd-itest)

# VD_KERNEL_TREE overrides the cached tree (a developer's own build of the same source).
kernel_tree() { if [ -n "${VD_KERNEL_TREE:-}" ]; then echo "$VD_KERNEL_TREE"; else VARIANT=${VARIANT:-base} bash "$VD_ROOT/scripts/kernel.sh"; fi; }

build_modules() {
    local tree; tree=$(kernel_tree)
    log "modules: building against $tree"
    # Kbuild tracks every source file of a Rust crate (rustc's dep-info, `#[path]` includes too),
    # so make rebuilds what changed; its exit status is the verdict. The old modules are removed
    # first so that a failed build can never leave a stale .ko to be tested.
    local mods=(drivers/vd_evtchn/vd_evtchn drivers/vd_sriov_mgr/vd_sriov_mgr drivers/vd_input_irq/vd_input_irq tests-kunit/vd_kunit)
    # The guest driver (issue 12), once its sources are in the tree.
    [ ! -d "$VD_ROOT/drivers/vd_front" ] || mods+=(drivers/vd_front/vd_front)
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
    for t in "${TOOLS[@]}"; do cp "$VD_ROOT/userspace-tools/target/$TARGET/release/$t" "$OUT/bin/"; done
}

# --- Real guests in the test VM (issue 12) -------------------------------------------------------
# The test VM's initramfs is several gzip'd cpio archives concatenated (the kernel unpacks each in
# turn): the test VM's own files (rebuilt every time), QEMU with its libraries and firmware
# (cached by content under $VD_CACHE), and an uncompressed archive with the nested guest's kernel
# and initramfs (already compressed; cheap to write).
# Bump when a recipe below changes what goes into a cached archive.
QEMU_RECIPE=1
GUEST_RECIPE=1
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

# The nested guest's initramfs: the tools (busybox, fio and mkfs.ext4 with their libraries: about
# 85 MB, fio's ceph/gluster/rdma engines come with Debian's build) as a cached archive, plus a
# small archive with /init and vd_front.ko.
build_guest_initramfs() {
    local gdir=$OUT/guest
    rm -rf "$gdir"; mkdir -p "$gdir"
    local tools mk
    command -v fio >/dev/null || die "initramfs: fio missing (scripts/deps.sh installs it)"
    mk=$(command -v mkfs.ext4) || die "initramfs: mkfs.ext4 missing (e2fsprogs)"
    mapfile -t tools < <(elf_closure "$(command -v fio)" "$mk")
    local tools_cpio; tools_cpio=$(cached_cpio guest-tools $GUEST_RECIPE /bin/busybox "${tools[@]}")
    local root=$gdir/root
    mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,mnt,lib/modules}
    cp /bin/busybox "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
    cp "$VD_ROOT/scripts/guest-init.sh" "$root/init"; chmod +x "$root/init"
    # vd_front.ko once the guest driver is built (the guest tests fail clearly without it).
    [ ! -f "$OUT/modules/vd_front.ko" ] || cp "$OUT/modules/vd_front.ko" "$root/lib/modules/"
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) > "$gdir/small.cpio.gz"
    # The tools archive carries busybox at /bin/busybox too; the small one comes second and wins.
    { cat "$tools_cpio"; pad4 "$tools_cpio"; cat "$gdir/small.cpio.gz"; } > "$gdir/initramfs.gz"
    rm -rf "$root" "$gdir/small.cpio.gz"
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
    cp "$VD_ROOT/scripts/vm-init.sh" "$root/init"
    chmod +x "$root/init" "$root"/vd/tests/*.sh
    # QEMU for nested guests (cached), the guest's kernel and initramfs (in /vd/guest).
    local q; mapfile -t q < <(elf_closure "$QEMU_BIN")
    local qemu_cpio; qemu_cpio=$(cached_cpio qemu $QEMU_RECIPE "${q[@]}" "${QEMU_FIRMWARE[@]}")
    build_guest_initramfs
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT/initramfs-main.cpio.gz"
    # The guest's files are compressed already: an uncompressed archive, no second gzip.
    local groot=$OUT/guest-cpio
    rm -rf "$groot"; mkdir -p "$groot/vd"
    ln -s "$OUT/guest" "$groot/vd/guest"
    # Written aside and renamed: a VM booting meanwhile reads the old image or the new, whole.
    { cat "$OUT/initramfs-main.cpio.gz"; pad4 "$OUT/initramfs-main.cpio.gz"
      cat "$qemu_cpio"; pad4 "$qemu_cpio"
      (cd "$groot" && find -L vd | cpio -o -H newc --quiet -L); } > "$OUT/initramfs.gz.new" \
        && mv "$OUT/initramfs.gz.new" "$OUT/initramfs.gz"
    rm -rf "$groot" "$OUT/initramfs-main.cpio.gz"
    log "initramfs: $(du -h "$OUT/initramfs.gz" | cut -f1) (QEMU $(du -h "$qemu_cpio" | cut -f1), guest $(du -h "$OUT/guest/initramfs.gz" | cut -f1) + bzImage)"
}

case "${1:-}" in
    modules) phase modules build_modules ;;
    tools) phase tools build_tools ;;
    initramfs) phase initramfs build_initramfs ;;
    *) die "usage: build.sh modules|tools|initramfs" ;;
esac
