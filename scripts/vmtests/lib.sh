# Helpers for the VM tests (sourced). A test fails by exiting non-zero; `check` says what failed.
M=${VD_MODS:-/lib/modules}
fail() { echo "FAIL: $*"; exit 1; }
check() { desc=$1; shift; if "$@"; then echo "ok: $desc"; else fail "$desc"; fi; }
is_loaded() { grep -q "^$1 " /proc/modules; }
load() { is_loaded "$1" || insmod "$M/$1.ko" || fail "insmod $1"; }
unload() { ! is_loaded "$1" || rmmod "$1" || fail "rmmod $1"; }
# json_field FILE KEY: crude value of the first "KEY": value in pretty JSON (busybox has no jq).
json_has() { grep -q "$2" "$1"; }
