# Shared settings and helpers for the vd scripts. Sourced, not run.
VD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything downloaded or built outside the repo lives here, so a fresh clone reuses it.
VD_CACHE=${VD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vd}
KSERIES=7.3
KSRC_TARBALL=$VD_CACHE/linux-source-$KSERIES.tar.xz
BINDGEN_VERSION=0.73.2
BINDGEN=${BINDGEN:-$VD_CACHE/bindgen/bin/bindgen}
KMAKE_ARGS=(LLVM=-19 RUSTC=/usr/bin/rustc "BINDGEN=$BINDGEN" "HOSTRUSTC=/usr/bin/rustc")
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
mkdir -p "$VD_CACHE"
# Build outputs (modules, tools, initramfs, logs, results). Override to run two harnesses at once.
VD_OUT=${VD_OUT:-$VD_ROOT/build}
# Absolute: the scripts change directories (a relative VD_OUT=build-debug once made the
# initramfs step write nothing and keep the old image).
case "$VD_OUT" in /*) ;; *) VD_OUT=$PWD/$VD_OUT ;; esac

T0=${T0:-$(date +%s)}
log() { printf '[vd %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { printf '[vd] ERROR: %s\n' "$*" >&2; exit 1; }

# The Debian mirror the system already uses.
debian_mirror() {
    local m
    m=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -v security | grep -oE 'https?://[^ ]+' | head -1)
    echo "${m:-http://deb.debian.org/debian}"
}

# Time a phase: phase NAME cmd...
phase() {
    local name=$1; shift
    local s; s=$(date +%s)
    "$@"; local rc=$?
    log "phase $name: $(( $(date +%s) - s ))s (rc=$rc)"
    return $rc
}
