#!/usr/bin/env bash
# Install everything a fresh Debian 12 machine lacks to build and test vd.
# Idempotent: every step checks first, says what it does, and fails naming the missing piece.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_root() { [ "$(id -u)" = 0 ] || die "deps: must run as root to install packages (or install them by hand: $*)"; }

# --- Debian packages -------------------------------------------------------
PKGS=(clang-19 lld-19 llvm-19 libclang-19-dev rustc-web rust-web-src
      bc flex bison libelf-dev libssl-dev cpio kmod busybox-static xz-utils
      python3 curl ca-certificates
      fio e2fsprogs   # fio, mkfs.ext4: the nested guests' tools (copied into their initramfs)
      socat)          # QMP from a shell script: make bench's comparison for vdd's VF move
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
apt_updated=0
if [ ${#missing[@]} -gt 0 ]; then
    need_root "${missing[*]}"
    log "deps: installing Debian packages: ${missing[*]}"
    apt-get update -qq; apt_updated=1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "deps: apt-get install failed for: ${missing[*]}"
else
    log "deps: Debian packages present"
fi

# --- QEMU 10 from bookworm-backports (Debian 12 ships 7.2, which has no igb) ---
qemu_major() { qemu-system-x86_64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p'; }
if [ "$(qemu_major || true)" = "" ] || [ "$(qemu_major)" -lt 10 ]; then
    need_root qemu-system-x86
    src=/etc/apt/sources.list.d/vd-bookworm-backports.sources
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        mirror=$(debian_mirror)
        log "deps: adding bookworm-backports ($mirror) to $src"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" > "$src"
        apt_updated=0
    fi
    [ $apt_updated = 1 ] || apt-get update -qq
    log "deps: installing qemu-system-x86 from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports \
        qemu-system-x86 >/dev/null || die "deps: could not install qemu-system-x86 (>= 10) from bookworm-backports"
    [ "$(qemu_major)" -ge 10 ] || die "deps: qemu-system-x86_64 is $(qemu_major), need >= 10"
else
    log "deps: QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') present"
fi

# --- bindgen-cli from crates.io ---------------------------------------------
if ! "$BINDGEN" --version >/dev/null 2>&1; then
    command -v cargo >/dev/null || die "deps: cargo not found (needed to install bindgen-cli)"
    log "deps: cargo install --locked bindgen-cli@$BINDGEN_VERSION"
    cargo install --locked --quiet --root "$VD_CACHE/bindgen" "bindgen-cli@$BINDGEN_VERSION" \
        || die "deps: cargo install bindgen-cli failed"
fi
log "deps: $("$BINDGEN" --version)"

# --- Debian's linux-source-7.3 from trixie-backports, through a private source list ---
if [ ! -f "$KSRC_TARBALL" ]; then
    mkdir -p "$VD_CACHE/apt/lists/partial" "$VD_CACHE/apt/debs"
    mirror=$(debian_mirror)
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie-backports main" \
        > "$VD_CACHE/apt/trixie-backports.list"
    O=(-o "Dir::Etc::SourceList=$VD_CACHE/apt/trixie-backports.list" -o Dir::Etc::SourceParts=/dev/null
       -o "Dir::State::Lists=$VD_CACHE/apt/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root)
    log "deps: fetching linux-source-$KSERIES from trixie-backports (private apt list, system apt untouched)"
    apt-get "${O[@]}" update -qq || die "deps: apt update of the private trixie-backports list failed"
    (cd "$VD_CACHE/apt/debs" && apt-get "${O[@]}" download "linux-source-$KSERIES" >/dev/null) \
        || die "deps: could not download linux-source-$KSERIES from trixie-backports"
    deb=$(ls -t "$VD_CACHE"/apt/debs/linux-source-"$KSERIES"_*.deb | head -1)
    ver=$(dpkg-deb -f "$deb" Version)
    log "deps: got linux-source-$KSERIES $ver"
    tmp=$(mktemp -d "$VD_CACHE/x.XXXX")
    dpkg-deb -x "$deb" "$tmp"
    mv "$tmp/usr/src/linux-source-$KSERIES.tar.xz" "$KSRC_TARBALL.part"
    echo "$ver" > "$VD_CACHE/linux-source.version"
    mv "$KSRC_TARBALL.part" "$KSRC_TARBALL"
    rm -rf "$tmp" "$deb"
else
    log "deps: linux-source-$KSERIES $(cat "$VD_CACHE/linux-source.version" 2>/dev/null) present"
fi
/usr/bin/rustc --version >/dev/null 2>&1 || die "deps: /usr/bin/rustc missing (package rustc-web)"
log "deps: all present"
