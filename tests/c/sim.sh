# Sourced by the C test scripts: starts the mode-sim binary ($1, further arguments passed on) on
# free loopback ports with its console on a FIFO, and exports MODE_TEST_MQTT_PORT,
# MODE_TEST_HTTP_URL, MODE_TEST_CONSOLE, and with --tls-cert MODE_TEST_TLS_PORT (MQTT over TLS)
# and MODE_TEST_HTTPS_PORT.
# `say LINE` types a console line; `sim_output` is the simulator's stdout; stop_sim ends it.
start_sim() {
  sim_work=$(mktemp -d)
  mkfifo "$sim_work/console"
  "$1" --mqtt-port 0 --ws-port 0 --http-port 0 --tls-port 0 --wss-port 0 --https-port 0 "${@:2}" \
    <"$sim_work/console" >"$sim_work/sim.out" 2>"$sim_work/sim.err" &
  sim_pid=$!
  exec 3>"$sim_work/console" # held open so the console never sees end-of-file
  for _ in $(seq 100); do grep -q '^  MQTT ' "$sim_work/sim.out" 2>/dev/null && break; sleep 0.1; done
  MODE_TEST_MQTT_PORT=$(awk '$1 == "MQTT" { split($2, a, ":"); print a[2]; exit }' "$sim_work/sim.out")
  MODE_TEST_HTTP_URL=$(awk '$1 == "HTTP" && $2 ~ /^http/ { print $2; exit }' "$sim_work/sim.out")
  MODE_TEST_TLS_PORT=$(awk '$1 == "MQTT/TLS" { split($2, a, ":"); print a[2]; exit }' "$sim_work/sim.out")
  MODE_TEST_HTTPS_PORT=$(awk '$1 == "HTTPS" { n = split($2, a, ":"); print a[n]; exit }' "$sim_work/sim.out")
  MODE_TEST_CONSOLE=$sim_work/console
  export MODE_TEST_MQTT_PORT MODE_TEST_HTTP_URL MODE_TEST_CONSOLE MODE_TEST_TLS_PORT MODE_TEST_HTTPS_PORT
  sim_output=$sim_work/sim.out
  if [ -z "$MODE_TEST_MQTT_PORT" ]; then cat "$sim_work/sim.err" >&2; echo "mode-sim did not start" >&2; return 1; fi
}

say() { echo "$*" >&3; }

stop_sim() {
  exec 3>&- 2>/dev/null || true # end the console first: the simulator waits for it to close
  [ -n "${sim_pid:-}" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  sim_pid=""
  rm -rf "${sim_work:-}"
}

# wait_for FILE PATTERN: waits up to 10 s for a line matching the extended regex in FILE.
wait_for() {
  for _ in $(seq 100); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "--- $1:" >&2; cat "$1" >&2
  echo "timed out waiting for /$2/" >&2
  return 1
}
