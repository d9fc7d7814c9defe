#!/usr/bin/env bash
# The engine under a real MQTT stack while the broker dies: installs libmode_core with
# scripts/install-c into a temporary prefix, builds examples/c/own_loop.c (one thread,
# mosquitto_loop) and examples/c/own_mqtt.c (libmosquitto's threaded loop, a mutex around the
# engine) with `pkg-config --cflags --libs mode-core` and libmosquitto (-Wall -Wextra -Wpedantic
# -Werror), and runs each against its own mode-sim (persisting to a data directory) while the
# simulator is killed (SIGKILL) and restarted on the same port 5 times mid-stream. Checks: every
# QoS 1 event the example sent is in the cloud's event log (0 lost), one reload per connection, a
# backoff wait from the engine after each loss, and a clean close.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
fail() { echo "tests/c/own_stack: FAIL: $*" >&2; exit 1; }
events=${OWN_STACK_EVENTS:-400}
restarts=5

work=$(mktemp -d)
broker_pid=""
stop_broker() {
  exec 3>&-
  if [ -n "$broker_pid" ]; then
    kill -9 "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true # 137: killed, as meant
  fi
  broker_pid=""
}
trap 'stop_broker; [ -n "${example_pid:-}" ] && kill "$example_pid" 2>/dev/null; rm -rf "$work"' EXIT

# start_broker PORT: mode-sim on PORT (0: any free one), its state in $data, its console
# on a FIFO (fd 3); sets $port and $broker_out.
start_broker() {
  local run=$work/run$((++runs))
  mkdir -p "$run"
  mkfifo "$run/console"
  "$target/debug/mode-sim" --mqtt-port "$1" --ws-port 0 --http-port 0 --tls-port 0 --wss-port 0 --https-port 0 \
    --data-dir "$data" <"$run/console" >"$run/out" 2>"$run/err" &
  broker_pid=$!
  exec 3>"$run/console"
  broker_out=$run/out
  for _ in $(seq 100); do grep -q '^  MQTT ' "$broker_out" 2>/dev/null && break; sleep 0.1; done
  port=$(awk '$1 == "MQTT" { split($2, a, ":"); print a[2]; exit }' "$broker_out")
  [ -n "$port" ] || { cat "$run/err" >&2; fail "mode-sim did not start"; }
}

# wait_count FILE PATTERN N: waits up to 20 s until N lines of FILE match the extended regex
# (less if the example being run, $example_pid, ends first).
wait_count() {
  for _ in $(seq 200); do
    [ "$(grep -cE -- "$2" "$1" 2>/dev/null || true)" -ge "$3" ] && return 0
    [ -z "${example_pid:-}" ] || kill -0 "$example_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$1" >&2
  fail "waited in vain for $3 lines /$2/"
}

echo "-- install into a temporary prefix"
scripts/install-c "$work/prefix" >/dev/null
export PKG_CONFIG_PATH=$work/prefix/lib/pkgconfig
for name in own_loop own_mqtt; do
  cc -std=c11 -Wall -Wextra -Wpedantic -Werror -pthread -Wl,-rpath,"$work/prefix/lib" -o "$work/$name" \
    "examples/c/$name.c" $(pkg-config --cflags --libs mode-core) -lmosquitto
  # Linked against libmode_core and libmosquitto, not libmode.
  ldd "$work/$name" >"$work/ldd"
  grep -q 'libmode_core\.so' "$work/ldd" || fail "$name is not linked against libmode_core"
  if grep -q 'libmode\.so' "$work/ldd"; then fail "$name pulled in libmode"; fi
done

cargo build -q -p mode-sim
runs=0

# broker_restarts NAME DEVICE: runs examples/c/NAME.c for $events QoS 1 events against a fresh
# mode-sim that is killed and restarted $restarts times mid-stream, and checks what it saw and
# what the cloud stored.
broker_restarts() {
  local name=$1 device=$2 out=$work/$1.out
  data=$work/data-$name
  start_broker 0
  echo "kv $device color \"red\"" >&3 # something for every reload to carry

  echo "-- examples/c/$name.c: $events QoS 1 events while the broker is killed $restarts times"
  "$work/$name" 127.0.0.1 "$port" "$device" "v1.demo-device-$device" "$events" >"$out" 2>&1 &
  example_pid=$!
  for i in $(seq "$restarts"); do
    wait_count "$out" '^progress:' $((2 * i)) # events flowing on this connection
    stop_broker
    start_broker "$port"
    echo "restart $i: broker back on port $port"
  done
  for _ in $(seq 600); do kill -0 "$example_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$example_pid" 2>/dev/null && { cat "$out" >&2; fail "$name did not finish within 60 s"; }
  wait "$example_pid" || { cat "$out" >&2; fail "$name exited with $?"; }
  example_pid=""

  grep -qxE "sent $events events, $events delivered, [0-9]+ connection attempts, [0-9]+ reconnects, [0-9]+ reloads" "$out" \
    || { cat "$out" >&2; fail "$name's summary is missing"; }
  local connects reloads waits got lost
  connects=$(grep -c '^connected$' "$out")
  reloads=$(grep -c '^kv reload' "$out")
  waits=$(grep -cE '^disconnected: .*; retry in [0-9]+ ms$' "$out")
  [ "$connects" -ge $((restarts + 1)) ] || { cat "$out" >&2; fail "$name: $connects connections, expected at least $((restarts + 1))"; }
  [ "$reloads" -eq "$connects" ] || { cat "$out" >&2; fail "$name: $reloads reloads for $connects connections"; }
  [ "$waits" -ge "$restarts" ] || { cat "$out" >&2; fail "$name: $waits backoff waits reported, expected at least $restarts"; }
  grep -qxF 'closed, 0 unsent' "$out" || { cat "$out" >&2; fail "$name did not close cleanly"; }

  # The cloud's event log (kept across the kills): every tick, 1 to $events, at least once.
  echo events >&3
  wait_count "$broker_out" '^ok: [0-9]+ event' 1
  got=$(grep -o '"eventType":"tick"[^}]*"n":[0-9]*\|"n":[0-9]*[^}]*"eventType":"tick"' "$broker_out" | grep -o '"n":[0-9]*' | sort -u | wc -l)
  lost=$((events - got))
  echo "$name: $connects connections ($reloads reloads, $waits backoff waits), $events events sent, $got distinct in the cloud, $lost lost"
  [ "$lost" -eq 0 ] || fail "$name: $lost QoS 1 events lost"
  stop_broker
}

broker_restarts own_loop 1001
broker_restarts own_mqtt 1002
