#!/usr/bin/env bash
# Build steps: modules | tools | initramfs.  Outputs land in build/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
OUT=$VD_OUT
mkdir -p "$OUT"
TARGET=x86_64-unknown-linux-gnu
TOOLS=(vdctl vdd vd-testvmm vd-itest vd-ivshmem)
# The binaries they make (package vd-ivshmem builds vd-ivshmem-server).
BINS=(vdctl vdd vd-testvmm vd-itest vd-ivshmem-server)

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
    # Written aside and renamed: a VM booting meanwhile reads the old image or the new, whole.
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT/initramfs.gz.new" && mv "$OUT/initramfs.gz.new" "$OUT/initramfs.gz"
    log "initramfs: $(du -h "$OUT/initramfs.gz" | cut -f1)"
}

case "${1:-}" in
    modules) phase modules build_modules ;;
    tools) phase tools build_tools ;;
    initramfs) phase initramfs build_initramfs ;;
    *) die "usage: build.sh modules|tools|initramfs" ;;
esac
