#!/usr/bin/env bash
# Build (or reuse) the custom kernel: Debian's linux-source-7.3 + rust/patches/*.patch +
# kconfig fragments. Cached under a key of (source version, fragments, patches, this script).
# Prints the tree's path on stdout.   VARIANT=base|debug
set -euo pipefail
. "$(dirname "$0")/lib.sh"
VARIANT=${VARIANT:-base}
# Bump when the build recipe below changes in a way that changes the result.
RECIPE=1
frags=("$VD_ROOT/kconfig/base.config")
[ "$VARIANT" = debug ] && frags+=("$VD_ROOT/kconfig/debug.config")
[ -f "$KSRC_TARBALL" ] || die "kernel: $KSRC_TARBALL missing: run scripts/deps.sh"
srcver=$(cat "$VD_CACHE/linux-source.version")
key=$( { echo "$srcver $VARIANT $RECIPE"; cat "${frags[@]}" "$VD_ROOT"/rust/patches/*.patch; } | sha256sum | cut -c1-16)
tree="$VD_CACHE/kernel/$VARIANT-$key"
mkdir -p "$VD_CACHE/kernel"
# A built tree is never changed again: use it without waiting for a build of another variant.
if [ -f "$tree/.vd-built" ]; then
    log "kernel: cached $VARIANT tree $tree (linux-source $srcver)"
    echo "$tree"; exit 0
fi
# One build at a time per cache (a second caller waits, then finds the tree built).
exec 9>"$VD_CACHE/kernel/.lock"
flock 9
if [ -f "$tree/.vd-built" ]; then
    log "kernel: cached $VARIANT tree $tree (linux-source $srcver)"
    echo "$tree"; exit 0
fi
log "kernel: building $VARIANT kernel (linux-source $srcver, key $key); about 12 min on 2 cores"
rm -rf "$tree"; mkdir -p "$tree"
tar -C "$tree" --strip-components=1 -xf "$KSRC_TARBALL"
for p in "$VD_ROOT"/rust/patches/*.patch; do
    log "kernel: applying $(basename "$p")"
    patch -d "$tree" -p1 --quiet --forward < "$p" || die "kernel: patch $(basename "$p") does not apply to $srcver"
done
cd "$tree"
make -s "${KMAKE_ARGS[@]}" rustavailable >/dev/null || die "kernel: Rust toolchain not usable for this kernel (make rustavailable)"
make -s "${KMAKE_ARGS[@]}" tinyconfig >/dev/null
KCONFIG_CONFIG=.config scripts/kconfig/merge_config.sh -m -Q .config "${frags[@]}" >/dev/null
make -s "${KMAKE_ARGS[@]}" olddefconfig >/dev/null
# Every fragment line must have survived olddefconfig, or a dependency is missing.
for f in "${frags[@]}"; do
    grep -E '^CONFIG_[A-Z0-9_]+=' "$f" | while IFS= read -r line; do
        sym=${line%%=*}; val=${line#*=}
        if [ "$val" = n ]; then
            ! grep -q "^$sym=" .config || die "kernel: $sym should be off"
        else
            grep -qx "$line" .config || log "kernel: warning: $line did not stick ($(grep "^$sym=" .config || echo unset))"
        fi
    done
done
make -s "${KMAKE_ARGS[@]}" -j"$(( $(nproc) + 1 ))" bzImage modules >"$tree/.vd-build.log" 2>&1 \
    || { tail -40 "$tree/.vd-build.log" >&2; die "kernel: build failed (log: $tree/.vd-build.log)"; }
touch "$tree/.vd-built"
log "kernel: built $tree"
# Trees of this variant under older keys are dead weight (several GB each); VD_KEEP_TREES=1 keeps
# them (another checkout, e.g. a soak of an older commit, may still be using one).
[ "${VD_KEEP_TREES:-0}" = 1 ] || for old in "$VD_CACHE/kernel/$VARIANT"-*; do
    [ "$old" = "$tree" ] || { log "kernel: removing stale tree $old"; rm -rf "$old"; }
done
echo "$tree"
