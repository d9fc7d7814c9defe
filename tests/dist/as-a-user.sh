#!/usr/bin/env bash
# Tests what scripts/dist built (dist/, or DIST) the way a user gets it, in an environment with
# no Rust toolchain (a clean PATH, a fresh HOME): the wheel installed with pip into a fresh venv
# runs the README's Python quick start against dist/mode-sim; the C archive unpacked into a
# temporary directory builds and runs examples/c/device.c with pkg-config from there; and
# dist/mode demo passes. One version everywhere: the wheel, the Python package, the headers,
# the .pc files and `mode --version` all say Cargo's.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dist=$(cd "${DIST:-$root/dist}" && pwd)
fail() { echo "tests/dist/as-a-user: FAIL: $*" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

work=$(mktemp -d)
. tests/c/sim.sh
trap 'stop_sim; rm -rf "$work"' EXIT
mkdir -p "$work/home"
# What a user's shell has: system directories only, no ~/.cargo, no pyenv shims.
user=(env -i HOME="$work/home" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  LANG=C.UTF-8 TMPDIR="$work")
if "${user[@]}" sh -c 'command -v cargo || command -v rustc' >/dev/null; then
  fail "the clean environment still finds a Rust toolchain"
fi

echo "-- checksums"
(cd "$dist" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match dist/"

echo "-- one version everywhere ($version)"
whl=$(ls "$dist"/mode_sdk-"$version"-cp39-abi3-manylinux*_x86_64.whl 2>/dev/null | head -1)
[ -n "$whl" ] || fail "no abi3 manylinux wheel of version $version in $dist"
[ "$("${user[@]}" "$dist/mode" --version)" = "mode $version" ] || fail "mode --version: $("$dist/mode" --version)"

"${user[@]}" "$dist/mode-sim" --help >/dev/null || fail "dist/mode-sim does not run"
start_sim "$dist/mode-sim" || fail "dist/mode-sim did not start"

echo "-- the wheel: pip install into a fresh venv, the README's Python quick start"
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
"${user[@]}" "$python" -m venv "$work/venv"
"${user[@]}" "$work/venv/bin/pip" install -q --no-index "$whl"
[ "$("${user[@]}" "$work/venv/bin/python" -c 'import mode; print(mode.__version__)')" = "$version" ] \
  || fail "mode.__version__ is not $version"
# The README's Python block, pointed at this simulator's port.
python3 - "$root/README.md" "$work/app.py" "$MODE_TEST_MQTT_PORT" <<'PY'
import re, sys
readme, out, port = sys.argv[1:]
blocks = re.findall(r"^```python\n(.*?)^```", open(readme).read(), re.S | re.M)
app = blocks[0]
assert "port=1883" in app, "the README's Python quick start no longer says port=1883"
open(out, "w").write(app.replace("port=1883", f"port={port}"))
PY
(cd "$work" && "${user[@]}" "$work/venv/bin/python" app.py >"$work/app.out" 2>&1) \
  || { cat "$work/app.out" >&2; fail "the Python quick start failed"; }
grep -qx 'firmware = 1.0.0' "$work/app.out" || { cat "$work/app.out" >&2; fail "the Python quick start printed no firmware line"; }
echo "python: $(cat "$work/app.out")"

echo "-- the C archive: unpacked anywhere, examples/c/device.c built with pkg-config from there"
mkdir -p "$work/unpacked/anywhere"
tar -xzf "$dist/libmode-$version-linux-x86_64.tar.gz" -C "$work/unpacked/anywhere"
prefix=$work/unpacked/anywhere/libmode-$version-linux-x86_64
for pc in mode mode-core; do
  got=$("${user[@]}" PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --modversion "$pc")
  [ "$got" = "$version" ] || fail "$pc.pc says $got"
done
grep -q "#define MODE_VERSION \"$version\"" "$prefix/include/mode_core.h" || fail "mode_core.h's MODE_VERSION (mode.h includes it) is not $version"
read -r -a cflags <<<"$("${user[@]}" PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs mode)"
"${user[@]}" cc -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$work/device" examples/c/device.c \
  "${cflags[@]}" -Wl,-rpath,"$prefix/lib" || fail "examples/c/device.c does not build against the archive"
"${user[@]}" MODE_PLAIN=1 "$work/device" 127.0.0.1 "$MODE_TEST_MQTT_PORT" 1001 v1.demo-device-1001 2 \
  >"$work/device.out" 2>&1 || { cat "$work/device.out" >&2; fail "device exited with $?"; }
grep -q '^connected' "$work/device.out" || { cat "$work/device.out" >&2; fail "device did not connect"; }
grep -qxF 'stopped: MODE_OK: success' "$work/device.out" || { cat "$work/device.out" >&2; fail "device did not stop cleanly"; }
ldd "$work/device" | grep -q "$prefix/lib/libmode.so" || fail "device is not linked to the archive's libmode.so"
echo "c: $(grep -c . "$work/device.out") lines of output, connected and stopped cleanly"

echo "-- dist/mode demo"
(cd "$work" && "${user[@]}" "$dist/mode" demo >"$work/demo.out" 2>&1) || { cat "$work/demo.out" >&2; fail "mode demo failed"; }
tail -1 "$work/demo.out"
echo "dist: every artifact works as a user gets it"
