# Sourced by the C test scripts (run.sh, core.sh, examples.sh, own_stack.sh): what they do the
# same way. Sets root (and cd's there), target (CARGO_TARGET_DIR or target/), lib (the debug
# libraries), out ($target/c-tests) and warn (the compiler's warnings, all errors), and defines:
#   fail MESSAGE                    prints "tests/c/SCRIPT: FAIL: MESSAGE" and exits 1
#   header_is_fresh CRATE HEADER    fails unless cbindgen generates HEADER from CRATE as committed
#   run_three_ways NAME LIB SRC...  compiles SRC... (C11) into $out/NAME against libLIB.so and runs
#                                   it, then against libLIB.a under AddressSanitizer + UBSan, then
#                                   the first build under valgrind (zero errors, zero leaks;
#                                   tests/c/valgrind.supp holds what valgrind cannot follow in
#                                   ring's TLS assembly)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
lib=$target/debug
out=$target/c-tests
mkdir -p "$out"
test_script=tests/c/$(basename "$0" .sh)
warn=(-Wall -Wextra -Wpedantic -Werror -I include -I tests/c -I "$out")

fail() { echo "$test_script: FAIL: $*" >&2; exit 1; }

header_is_fresh() {
  local fresh
  fresh=$(mktemp)
  cbindgen --quiet --config "$1/cbindgen.toml" --crate "$1" --output "$fresh"
  diff -u "$2" "$fresh" || { rm -f "$fresh"; fail "$2 is stale: run scripts/gen-header and commit it"; }
  rm -f "$fresh"
}

run_three_ways() {
  local test=$1 library=$2
  shift 2
  gcc -std=c11 "${warn[@]}" -g -pthread -o "$out/$test" "$@" -L"$lib" -l"$library" -Wl,-rpath,"$lib"
  echo "-- $test (C11, lib$library.so)"
  "$out/$test"
  gcc -std=c11 "${warn[@]}" -g -pthread -fsanitize=address,undefined -fno-omit-frame-pointer \
    -fno-sanitize-recover=all -o "$out/$test-asan" "$@" "$lib/lib$library.a" -lpthread -ldl -lm
  echo "-- $test (ASan+UBSan, lib$library.a)"
  ASAN_OPTIONS=detect_leaks=1 "$out/$test-asan"
  echo "-- $test (valgrind)"
  valgrind -q --num-callers=40 --suppressions=tests/c/valgrind.supp --error-exitcode=3 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect "$out/$test"
}
