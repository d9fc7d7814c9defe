#!/usr/bin/env bash
# Builds libmode's C library, checks the committed header is what cbindgen generates, then
# compiles every C test as C11 and as C++17 with -Wall -Wextra -Wpedantic -Werror and runs it
# plainly, under AddressSanitizer + UBSan, and under valgrind (zero errors, zero leaks).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/c-tests
mkdir -p "$out"

echo "-- header is up to date"
fresh=$(mktemp)
cbindgen --quiet --config mode-ffi/cbindgen.toml --crate mode-ffi --output "$fresh"
if ! diff -u include/mode.h "$fresh"; then
  echo "include/mode.h is stale: run scripts/gen-header and commit it" >&2
  exit 1
fi
rm -f "$fresh"

echo "-- building libmode"
cargo build -q -p mode-ffi
lib=$target/debug

warn=(-Wall -Wextra -Wpedantic -Werror -I include)
for src in tests/c/test_*.c; do
  name=$(basename "$src" .c)
  gcc -std=c11 "${warn[@]}" -g -o "$out/$name" "$src" -L"$lib" -lmode -Wl,-rpath,"$lib"
  g++ -std=c++17 -x c++ "${warn[@]}" -g -o "$out/$name-cpp" "$src" -L"$lib" -lmode -Wl,-rpath,"$lib"
  gcc -std=c11 "${warn[@]}" -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
    -o "$out/$name-asan" "$src" "$lib/libmode.a" -lpthread -ldl -lm
  echo "-- $name (C11)";        "$out/$name"
  echo "-- $name (C++17)";      "$out/$name-cpp"
  echo "-- $name (ASan+UBSan)"; ASAN_OPTIONS=detect_leaks=1 "$out/$name-asan"
  echo "-- $name (valgrind)"
  valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite,indirect "$out/$name"
done
