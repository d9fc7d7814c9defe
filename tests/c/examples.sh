#!/usr/bin/env bash
# Installs libmode with scripts/install-c into a temporary prefix, builds the C examples against
# it with pkg-config (-Wall -Wextra -Wpedantic -Werror), and runs each against a mode-sim
# subprocess: the app side sends a command and sets a key through the simulator's console, and
# the example's output and the events the cloud received are checked.
. "$(dirname "$0")/lib.sh" # root, target, fail

prefix=$(mktemp -d)
. tests/c/sim.sh
trap 'stop_sim; rm -rf "$prefix"' EXIT

echo "-- install into a temporary prefix"
scripts/install-c "$prefix"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --modversion mode)" = "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" ] \
  || fail "mode.pc has the wrong version"
size=$(stat -c %s "$prefix/lib/libmode.so.$(pkg-config --modversion mode)")
echo "libmode.so (dist profile, stripped): $size bytes"

flags=(-std=c11 -Wall -Wextra -Wpedantic -Werror -Wl,-rpath,"$prefix/lib")
cc "${flags[@]}" -o "$prefix/device" examples/c/device.c $(pkg-config --cflags --libs mode)

cargo build -q -p mode-sim
start_sim "$target/debug/mode-sim" || fail "mode-sim did not start"

# run_example NAME DEVICE ENV...: runs the example for 4 s while the app side acts on DEVICE.
run_example() {
  local name=$1 device=$2 out=$prefix/$1.out
  shift 2
  env "$@" "$prefix/$name" 127.0.0.1 "$MODE_TEST_MQTT_PORT" "$device" "v1.demo-device-$device" 4 >"$out" 2>&1 &
  local pid=$!
  wait_for "$out" '^connected' || fail "$name did not connect"
  sleep 0.3 # the subscriptions follow the CONNACK
  say "command $device {\"action\":\"light\",\"parameters\":{\"on\":true,\"level\":12345678901234567890}}"
  say "kv $device color \"red\""
  wait "$pid" || { cat "$out" >&2; fail "$name exited with $?"; }
  grep -qxF 'command light {"level":12345678901234567890,"on":true}' "$out" || { cat "$out" >&2; fail "$name missed the command"; }
  grep -qF 'kv set color = "red"' "$out" || { cat "$out" >&2; fail "$name missed the kv change"; }
  echo "$name: $(grep -c . "$out") lines of output, command and kv change seen"
}

echo "-- examples/c/device.c (libmode's client)"
run_example device 1001 MODE_PLAIN=1
grep -qxF 'stopped: MODE_OK: success' "$prefix/device.out" || { cat "$prefix/device.out" >&2; fail "device did not stop cleanly"; }
# Each message the device sent (ticks and answers) reported delivered by the delivery callback.
sent=$(sed -n 's/^sent \([0-9]*\),.*/\1/p' "$prefix/device.out")
grep -qxF "delivered $sent, not delivered 0" "$prefix/device.out" || { cat "$prefix/device.out" >&2; fail "device's deliveries were not all reported"; }

# examples/c/own_mqtt.c and own_loop.c (libmode_core under libmosquitto) run in tests/c/own_stack.sh.

say events
wait_for "$sim_output" '^ok: [0-9]+ event' || fail "no events listing"
ticks=$(grep -c '"eventType":"tick"' "$sim_output" || true)
answers=$(grep -c '"eventType":"command-done"' "$sim_output" || true)
[ "$ticks" -ge 3 ] || fail "the cloud received $ticks tick events, expected at least 3"
[ "$answers" -eq 1 ] || fail "the cloud received $answers command-done events, expected 1"
echo "the cloud received $ticks tick events and $answers command answers"
