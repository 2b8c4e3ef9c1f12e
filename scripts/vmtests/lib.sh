# Helpers for the VM tests (sourced). A test fails by exiting non-zero; `check` says what failed.
M=${VD_MODS:-/lib/modules}
fail() { echo "FAIL: $*"; exit 1; }
check() { desc=$1; shift; if "$@"; then echo "ok: $desc"; else fail "$desc"; fi; }
is_loaded() { grep -q "^$1 " /proc/modules; }
load() { is_loaded "$1" || insmod "$M/$1.ko" || fail "insmod $1"; }
unload() { ! is_loaded "$1" || rmmod "$1" || fail "rmmod $1"; }
# Waiting for a state (never for a time): CMD is run every 0.1 s, at most SECONDS * 10 times.
# poll SECONDS CMD...: status 0 once CMD succeeds, 1 if it never did (the caller decides).
poll() {
    _pn=$(($1 * 10)); shift
    until "$@"; do _pn=$((_pn - 1)); [ $_pn -gt 0 ] || return 1; sleep 0.1; done
}
# wait_for DESC SECONDS CMD...: poll, and fail the test with DESC if CMD never succeeded.
wait_for() {
    _wd=$1; shift
    poll "$@" || fail "timed out waiting: $_wd"
    echo "ok: $_wd"
}
# has_line FILE PATTERN: FILE exists and has a line matching PATTERN (grep's basic regexp).
has_line() { grep -q "$2" "$1" 2>/dev/null; }
# wait_line FILE PATTERN [SECONDS]: until FILE has a line matching PATTERN (30 s), else fails
# the test with FILE's contents.
wait_line() { poll "${3:-30}" has_line "$1" "$2" || fail "no '$2' in $1: $(cat "$1" 2>/dev/null)"; }
# json_field FILE KEY: crude value of the first "KEY": value in pretty JSON (busybox has no jq).
json_has() { grep -q "$2" "$1"; }
# vdd_conf DIR: writes DIR/vdd.toml, the part every vdd test config shares (one driver core,
# socket and state file in DIR). `[daemon]` comes last: the caller appends its own `[daemon]`
# keys (metrics = ...) and then its own tables with `cat >> DIR/vdd.toml`.
vdd_conf() {
    # CPU 1 (CPU 0 on a one-CPU test VM, VD_SMP=1).
    cat > "$1/vdd.toml" <<EOT
[host]
driver_cores = "$(( $(grep -c ^processor /proc/cpuinfo) > 1 ? 1 : 0 ))"
[daemon]
socket = "$1/vdd.sock"
state_file = "$1/state.json"
EOT
}
