#!/usr/bin/env bash
# Builds libmode's C library, checks the committed header is what cbindgen generates, then
# compiles every C test with -Wall -Wextra -Wpedantic -Werror (test_core also as C++17: the
# header is C++-safe) and runs each plainly, under AddressSanitizer + UBSan, and under valgrind
# (zero errors, zero leaks; tests/c/valgrind.supp holds what valgrind cannot follow in ring's
# TLS assembly). test_client and test_tls run against a mode-sim subprocess started
# here, with TLS on every listener and client certificates required on them (a private PKI made
# by tests/tls/make-certs.sh) and its admin API on.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/c-tests
mkdir -p "$out"
fail() { echo "tests/c: FAIL: $*" >&2; exit 1; }

echo "-- header is up to date"
fresh=$(mktemp)
cbindgen --quiet --config mode-ffi/cbindgen.toml --crate mode-ffi --output "$fresh"
diff -u include/mode.h "$fresh" || fail "include/mode.h is stale: run scripts/gen-header and commit it"
rm -f "$fresh"

echo "-- building libmode and mode-sim"
cargo build -q -p mode-ffi -p mode-sim
lib=$target/debug

# The simulator, on free ports, with its console on a FIFO the client test writes to.
command -v openssl >/dev/null || fail "openssl is missing: run scripts/install-deps"
certs=$(mktemp -d)
tests/tls/make-certs.sh "$certs"
. tests/c/sim.sh
trap 'stop_sim; rm -rf "$certs"' EXIT
export MODE_TEST_CERTS=$certs MODE_TEST_ADMIN_KEY=c-test-admin-key
start_sim "$lib/mode-sim" --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" \
  --client-ca "$certs/ca.pem" --admin-key "$MODE_TEST_ADMIN_KEY" --devices 100 || fail "mode-sim did not start"

# Every value mode_core.h (included by mode.h) declares in mode_status_t, as X(NAME) for test_core.c: the status text
# test iterates the header itself, so a code added there without a text fails it.
awk '/^typedef enum/ { names = "" }
     /^  MODE_[A-Z0-9_]+ = -?[0-9]+,?$/ { names = names " X(" $1 ")" }
     /^} mode_status_t;/ { print "#define MODE_HEADER_STATUSES" names; exit }' include/mode_core.h >"$out/header_statuses.h"
grep -q 'X(MODE_OK)' "$out/header_statuses.h" || fail "no mode_status_t values found in include/mode_core.h"

warn=(-Wall -Wextra -Wpedantic -Werror -I include -I "$out")
run_all_ways() { # NAME LANGS...: compile tests/c/NAME.c in each language, run each build
  local name=$1 src=tests/c/$1.c
  shift
  for lang in "$@"; do
    case $lang in
      c11) gcc -std=c11 "${warn[@]}" -g -pthread -o "$out/$name" "$src" -L"$lib" -lmode -Wl,-rpath,"$lib"
           echo "-- $name (C11)"; "$out/$name" ;;
      c++17) g++ -std=c++17 -x c++ "${warn[@]}" -g -pthread -o "$out/$name-cpp" "$src" -L"$lib" -lmode -Wl,-rpath,"$lib"
           echo "-- $name (C++17)"; "$out/$name-cpp" ;;
    esac
  done
  gcc -std=c11 "${warn[@]}" -g -pthread -fsanitize=address,undefined -fno-omit-frame-pointer \
    -fno-sanitize-recover=all -o "$out/$name-asan" "$src" "$lib/libmode.a" -lpthread -ldl -lm
  echo "-- $name (ASan+UBSan)"
  ASAN_OPTIONS=detect_leaks=1 "$out/$name-asan"
  echo "-- $name (valgrind)"
  valgrind -q --num-callers=40 --suppressions=tests/c/valgrind.supp --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite,indirect "$out/$name"
}
run_all_ways test_core c11 c++17
run_all_ways test_client c11
run_all_ways test_tls c11
run_all_ways test_runtime c11
