#!/usr/bin/env bash
# libmode_core, the engine's C library on its own: checks the committed include/mode_core.h is
# what cbindgen generates, compiles the engine's tests (tests/c/test_engine.c with
# test_engine_outbox.c, test_engine_inputs.c and their simulated broker engine_sim.c;
# -Wall -Wextra -Wpedantic -Werror, linked against libmode_core only; the header also compiled
# as C++17) and runs them plainly, under AddressSanitizer + UBSan, and under valgrind (zero
# errors, zero leaks; tests/c/lib.sh). Then builds the shipped library (profile dist), prints its
# stripped size and checks with nm that no symbol of tokio, rustls, rumqttc or hyper is in it.
. "$(dirname "$0")/lib.sh"

echo "-- mode_core.h is up to date"
header_is_fresh mode-ffi-core include/mode_core.h

echo "-- building libmode_core"
cargo build -q -p mode-core-lib

echo "-- mode_core.h as C++17"
printf '#include "mode_core.h"\n#include "mode_core.h"\nint main() { return mode_status_str(MODE_OK) == nullptr; }\n' |
  g++ -std=c++17 -x c++ "${warn[@]}" -o "$out/mode_core_cpp" - -L"$lib" -lmode_core -Wl,-rpath,"$lib"
"$out/mode_core_cpp"

engine_tests=(tests/c/test_engine.c tests/c/test_engine_outbox.c tests/c/test_engine_inputs.c tests/c/engine_sim.c
  tests/c/check.c)
run_three_ways test_engine mode_core "${engine_tests[@]}"
# Only libmode_core: no libmode in what the test needs.
ldd "$out/test_engine" >"$out/test_engine.ldd"
grep -q 'libmode_core\.so' "$out/test_engine.ldd" || fail "test_engine is not linked against libmode_core"
if grep -q 'libmode\.so' "$out/test_engine.ldd"; then fail "test_engine pulled in libmode"; fi

echo "-- libmode_core as shipped (profile dist-core, no_std, panic = abort)"
cargo build -q --profile dist-core -p mode-core-lib --no-default-features
so=$target/dist-core/libmode_core.so
echo "libmode_core.so (dist-core profile, no_std, stripped): $(stat -c %s "$so") bytes"
echo "libmode_core.a (dist-core profile): $(stat -c %s "$target/dist-core/libmode_core.a") bytes"
[ "$(stat -c %s "$so")" -le $((300 * 1024)) ] || fail "libmode_core.so is over its 300 KiB budget"
# It needs nothing but the C library: no libgcc_s, no std.
needed=$(readelf -d "$so" | awk '/NEEDED/ { print $NF }' | tr '\n' ' ')
[ "$needed" = "[libc.so.6] " ] || fail "libmode_core.so needs more than libc: $needed"
echo "-- test_engine (C11, the shipped no_std libmode_core.so)"
shipped=$out/shipped
mkdir -p "$shipped"
cp "$so" "$shipped/"
gcc -std=c11 "${warn[@]}" -g -o "$out/test_engine-shipped" "${engine_tests[@]}" -L"$shipped" -lmode_core \
  -Wl,-rpath,"$shipped"
"$out/test_engine-shipped"
# No runtime, TLS, MQTT client or HTTP stack: not one symbol of theirs, in either library.
for file in "$so" "$target/dist-core/libmode_core.a" "$lib/libmode_core.so"; do
  nm -a --demangle "$file" >"$out/symbols.txt" 2>/dev/null || true
  [ -s "$out/symbols.txt" ] || nm -D --demangle "$file" >"$out/symbols.txt"
  found=$(grep -E 'tokio|rustls|rumqttc|hyper' "$out/symbols.txt" | head -5 || true)
  [ -z "$found" ] || fail "$(basename "$file") holds symbols of tokio/rustls/rumqttc/hyper: $found"
done
# The stripped .so keeps its dynamic symbols: the check above saw them, and the exports are ours.
nm -D --defined-only "$so" | awk '$2 == "T" { print $3 }' | grep -v '^mode_' && fail "libmode_core.so exports a non-mode_ function" || true
echo "tests/c/core: ok"
