#!/usr/bin/env bash
# End to end with a third-party MQTT stack: starts the mode-sim binary on free ports, sends an
# event with mosquitto_pub and receives commands with mosquitto_sub, and checks both through the
# simulator's console (and its REST API when the build has one). Exits non-zero on any failure.
# Usage: bash mode-sim/tests/mosquitto_e2e.sh   (from anywhere; needs mosquitto-clients)
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "mosquitto_e2e: FAIL: $*" >&2; exit 1; }
for tool in mosquitto_pub mosquitto_sub; do
  command -v "$tool" >/dev/null || fail "$tool not found (apt-get install -y mosquitto-clients)"
done

bin=$(cargo build -q -p mode-sim --bin mode-sim --message-format=json-render-diagnostics \
  | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$bin" ] || fail "could not build the mode-sim binary"

work=$(mktemp -d)
sim=""
cleanup() {
  exec 3>&- 2>/dev/null || true
  if [ -n "$sim" ] && kill "$sim" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$sim" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$sim" 2>/dev/null || true
    wait "$sim" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The console is a FIFO held open on fd 3, so the simulator reads our lines as they come.
mkfifo "$work/console"
"$bin" --mqtt-port 0 --ws-port 0 --http-port 0 --tls-port 0 \
  <"$work/console" >"$work/stdout" 2>"$work/stderr" &
sim=$!
exec 3>"$work/console"

# wait_for FILE PATTERN: waits up to 10 s for a line matching PATTERN in FILE.
wait_for() {
  for _ in $(seq 100); do
    grep -qE -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$sim" 2>/dev/null || { cat "$work/stderr" >&2; fail "the simulator exited"; }
    sleep 0.1
  done
  echo "--- $1:" >&2; cat "$1" >&2
  echo "--- the simulator's log (last lines):" >&2; tail -n 20 "$work/stderr" >&2
  fail "timed out waiting for /$2/ in $(basename "$1")"
}

wait_for "$work/stdout" '^  MQTT '
port=$(awk '$1 == "MQTT" { split($2, a, ":"); print a[2]; exit }' "$work/stdout")
http=$(awk '$1 == "HTTP" && $2 ~ /^http/ { print $2; exit }' "$work/stdout")
[ -n "$port" ] || fail "no MQTT port in the banner"
echo "mosquitto_e2e: simulator on MQTT port $port${http:+, HTTP $http}"

device=1001
key=v1.demo-device-1001
mqtt=(-V mqttv311 -h 127.0.0.1 -p "$port" -u "$device" -P "$key")

# 1. An event published at QoS 1 reaches the cloud with the fields it adds.
mosquitto_pub "${mqtt[@]}" -q 1 -t "/devices/$device/event" \
  -m '{"eventType":"e2e","eventData":{"n":42}}' || fail "mosquitto_pub exited with $?"
echo "events" >&3
wait_for "$work/stdout" '^ok: [0-9]+ event'
grep -F '"eventType":"e2e"' "$work/stdout" | grep -F '"homeId":10' | grep -F '"originDeviceId":1001' \
  | grep -qF '"eventData":{"n":42}' || fail "the event did not arrive as a home event: $(grep -F e2e "$work/stdout")"
echo "mosquitto_e2e: event received by the cloud"

# receive_command SENDER...: subscribes with mosquitto_sub, runs SENDER once the SUBACK came,
# and checks the one command that arrives.
receive_command() {
  local out="$work/sub.$1"
  shift
  # Line-buffered, so its SUBACK line shows before it exits.
  stdbuf -oL mosquitto_sub -d "${mqtt[@]}" -t "/devices/$device/command" -C 1 -W 10 >"$out" 2>&1 &
  local sub=$!
  wait_for "$out" 'SUBACK'
  "$@"
  wait "$sub" || { cat "$out" >&2; fail "mosquitto_sub got no command"; }
  grep -qxF '{"action":"light","parameters":{"level":12345678901234567890,"on":true}}' "$out" \
    || { cat "$out" >&2; fail "mosquitto_sub got the wrong command"; }
}
command_json='{"action":"light","parameters":{"level":12345678901234567890,"on":true}}'

# 2. A command sent through the cloud (console) reaches mosquitto_sub.
via_console() {
  echo "command $device $command_json" >&3
  wait_for "$work/stdout" '^ok: command delivered to 1 subscriber'
}
receive_command console via_console
echo "mosquitto_e2e: command received by mosquitto_sub (sent from the console)"

# 3. The same over MODE's REST API with the app key, when this build serves HTTP.
if [ -n "$http" ]; then
  command -v curl >/dev/null || fail "curl not found"
  via_rest() {
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
      -H 'Authorization: ModeCloud v1.demo-app' -H 'Content-Type: application/json' \
      -d "$command_json" "$http/devices/$device/command")
    [ "$status" = 204 ] || fail "PUT /devices/$device/command answered $status"
  }
  receive_command rest via_rest
  echo "mosquitto_e2e: command received by mosquitto_sub (sent with curl)"
fi

# 4. A wrong key is refused.
if mosquitto_pub -V mqttv311 -h 127.0.0.1 -p "$port" -u "$device" -P wrong -q 1 \
  -t "/devices/$device/event" -m '{"eventType":"x"}' 2>"$work/refused"; then
  fail "mosquitto_pub with a wrong key succeeded"
fi
echo "mosquitto_e2e: wrong key refused ($(tr -d '\n' <"$work/refused"))"
echo "mosquitto_e2e: OK"
