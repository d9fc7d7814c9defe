#!/usr/bin/env bash
# Builds libmode's C library, checks the committed header is what cbindgen generates, then
# compiles every C test with -Wall -Wextra -Wpedantic -Werror (test_core also as C++17: the
# header is C++-safe) and runs each plainly, under AddressSanitizer + UBSan, and under valgrind
# (tests/c/lib.sh). test_client, test_client_config, test_tls and test_runtime run against a
# mode-sim subprocess started here, with TLS on every listener and client certificates required
# on them (a private PKI made by tests/tls/make-certs.sh) and its admin API on.
. "$(dirname "$0")/lib.sh"

echo "-- header is up to date"
header_is_fresh mode-ffi include/mode.h

echo "-- building libmode and mode-sim"
cargo build -q -p mode-ffi -p mode-sim

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

g++ -std=c++17 -x c++ "${warn[@]}" -g -pthread -o "$out/test_core-cpp" tests/c/test_core.c tests/c/check.c \
  -L"$lib" -lmode -Wl,-rpath,"$lib"
echo "-- test_core (C++17)"
"$out/test_core-cpp"
run_three_ways test_core mode tests/c/test_core.c tests/c/check.c
for test in test_client_config test_client test_tls test_runtime; do
  run_three_ways "$test" mode "tests/c/$test.c" tests/c/check.c tests/c/sim.c
done
