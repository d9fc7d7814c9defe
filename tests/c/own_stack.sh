#!/usr/bin/env bash
# The engine under a real MQTT stack while the broker dies: installs libmode_core with
# scripts/install-c into a temporary prefix, builds examples/c/own_loop.c (one thread,
# mosquitto_loop) and examples/c/own_mqtt.c (libmosquitto's threaded loop, a mutex around the
# engine) with `pkg-config --cflags --libs mode-core` and libmosquitto (-Wall -Wextra -Wpedantic
# -Werror), and runs each against its own mode-sim (persisting to a data directory) while the
# simulator is killed (SIGKILL) and restarted on the same port 5 times mid-stream. Checks: every
# QoS 1 event the example sent is in the cloud's event log (0 lost), one reload per connection, a
# backoff wait from the engine after each loss, and a clean close.
# Then examples/c/durable_outbox.c (the engine's outbox journaled to a file, restored at boot):
# SIGKILLed at random moments 6 times while streaming QoS 1 events to mode-sim (--data-dir),
# every other time while the broker is down (so messages accepted offline are in the journal
# only), restarted on the same journal each time, and once more to finish: every event it
# reported accepted is in the cloud's event log (0 missing); duplicates are counted; a torn
# record at the journal's end is dropped at boot.
. "$(dirname "$0")/lib.sh" # root, target, fail
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
trap 'stop_broker; [ -n "${example_pid:-}" ] && kill "$example_pid" 2>/dev/null; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT

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
for name in own_loop own_mqtt durable_outbox; do
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

# ---- the durable outbox: killed (SIGKILL) at random moments, restarted on the same journal ----
kills=${OWN_STACK_KILLS:-6}
per_run=1000 # events a run would send (4 every 10 ms): more than it lives to send
echo "-- examples/c/durable_outbox.c: SIGKILLed at $kills random moments while streaming QoS 1 events"
data=$work/data-durable
start_broker 0
journal=$work/outbox.journal
restored=0
for run in $(seq "$kills"); do
  out=$work/durable$run.out
  "$work/durable_outbox" 127.0.0.1 "$port" 1001 v1.demo-device-1001 "$journal" "$run" "$per_run" >"$out" 2>&1 &
  example_pid=$!
  wait_count "$out" '^accepted ' $((1 + RANDOM % 400)) # a random moment mid-stream
  if [ $((run % 2)) -eq 0 ]; then
    # Every other run dies offline, with what it accepted since the broker went queued only.
    stop_broker
    wait_count "$out" '^accepted ' $(($(grep -c '^accepted ' "$out") + 20 + RANDOM % 200))
  fi
  kill -9 "$example_pid"
  wait "$example_pid" 2>/dev/null && fail "durable_outbox run $run ended before it was killed"
  example_pid=""
  [ -n "$broker_pid" ] || start_broker "$port"
  line=$(grep '^restored ' "$out") || { cat "$out" >&2; fail "durable_outbox run $run did not report what it restored"; }
  restored=$((restored + $(echo "$line" | awk '{print $2}')))
  echo "run $run: $line; killed after $(grep -c '^accepted ' "$out") accepted"
done
# The last run sends a few more and ends once the journal holds nothing open. Before it, a torn
# record (a write cut short, as a power cut may leave it): dropped at boot, the rest kept.
printf 'A\001\002\003' >>"$journal"
run=$((kills + 1))
out=$work/durable$run.out
"$work/durable_outbox" 127.0.0.1 "$port" 1001 v1.demo-device-1001 "$journal" "$run" 20 >"$out" 2>&1 &
example_pid=$!
for _ in $(seq 600); do kill -0 "$example_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$example_pid" 2>/dev/null && { cat "$out" >&2; fail "durable_outbox's last run did not finish within 60 s"; }
wait "$example_pid" || { cat "$out" >&2; fail "durable_outbox's last run exited with $?"; }
example_pid=""
restored=$((restored + $(awk '/^restored /{print $2}' "$out")))
echo "run $run: $(grep '^restored ' "$out"); $(tail -1 "$out")"
grep -qE '^restored [0-9]+ messages, dropped a torn tail of 4 bytes$' "$out" || { cat "$out" >&2; fail "durable_outbox did not drop the torn record"; }
grep -qxF 'closed, 0 unsent' "$out" || { cat "$out" >&2; fail "durable_outbox did not close cleanly"; }
grep -qxE 'sent 20 new events, [0-9]+ delivered, 0 open in the journal' "$out" || { cat "$out" >&2; fail "durable_outbox's summary is wrong"; }

echo events >&3
wait_count "$broker_out" '^ok: [0-9]+ event' 1
grep -o '"eventType":"tick"[^}]*"n":[0-9]*\|"n":[0-9]*[^}]*"eventType":"tick"' "$broker_out" | grep -o '[0-9]*$' | sort >"$work/cloud"
cat "$work"/durable*.out | sed -n 's/^accepted //p' | sort -u >"$work/accepted"
accepted=$(wc -l <"$work/accepted")
missing=$(sort -u "$work/cloud" | comm -23 "$work/accepted" - | wc -l)
duplicates=$(($(wc -l <"$work/cloud") - $(sort -u "$work/cloud" | wc -l)))
echo "durable_outbox: $kills kills, $accepted events accepted, $restored restored from the journal, $missing missing in the cloud, $duplicates duplicates"
[ "$accepted" -ge $((kills + 20)) ] || fail "only $accepted events accepted"
[ "$restored" -ge $((kills / 2 * 20)) ] || fail "only $restored messages restored: the kills did not test the journal"
[ "$missing" -eq 0 ] || fail "durable_outbox: $missing accepted QoS 1 events missing in the cloud"
stop_broker
