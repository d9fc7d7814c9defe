#!/usr/bin/env bash
# What one event costs libmode and libmosquitto on one device, counted rather than timed (this
# machine's clock is noisy): system calls and context switches per event from the kernel's
# tracepoints (perf stat, which does not slow the program the way strace does), and user-space
# instructions per event from callgrind as the difference of a 30,000- and a 10,000-event run
# (startup cancels out). The programs' main threads wait for the last delivery on a semaphore
# (one futex wake), so what is counted is the libraries' work.
#   bench/c/profile.sh HOST PORT DEVICE_ID API_KEY [QOS...]     (after bench/c/compare.py built
#                                                                the programs into target/c-bench)
set -euo pipefail
host=${1:?usage: profile.sh HOST PORT DEVICE_ID API_KEY [QOS...]} port=${2:?} device=${3:?} key=${4:?}
shift 4
qos_list=("${@:-0 1}")
bin=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target}/c-bench
n=50000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
programs=(events_libmode events_mosquitto)
calls=(writev write sendto read recvfrom futex epoll_wait pselect6)

have_perf=no
perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1 && have_perf=yes
echo "| program | QoS | syscalls/event | writev+write+sendto | read+recvfrom | futex | epoll_wait+pselect6 | context switches/event | user instructions/event (callgrind) |"
echo "|---|---|---|---|---|---|---|---|---|"
for qos in ${qos_list[*]}; do
  for p in "${programs[@]}"; do
    run=("$bin/$p" "$host" "$port" "$device" "$key" "$qos")
    declare -A c=()
    if [ $have_perf = yes ]; then
      events=raw_syscalls:sys_enter,context-switches
      for s in "${calls[@]}"; do events+=",syscalls:sys_enter_$s"; done
      perf stat -x, -e "$events" -o "$tmp/perf" "${run[@]}" "$n" >/dev/null 2>&1
      while IFS=, read -r value _ name _; do
        case $name in raw_syscalls:sys_enter) c[total]=$value ;; context-switches) c[cs]=$value ;;
          syscalls:sys_enter_*) c[${name#syscalls:sys_enter_}]=$value ;; esac
      done < <(grep -v '^#' "$tmp/perf" | grep ,)
    else # strace -c: slower and it changes the timing, but the counts are still counts
      strace -c -f -o "$tmp/strace" "${run[@]}" "$n" >/dev/null 2>&1
      c[total]=$(awk '$NF == "total" { print $4 }' "$tmp/strace") c[cs]=0
      for s in "${calls[@]}"; do c[$s]=$(awk -v s="$s" '$NF == s { print $4 }' "$tmp/strace"); done
    fi
    for k in total cs "${calls[@]}"; do c[$k]=${c[$k]:-0}; done
    per() { awk -v x="$1" -v n=$n 'BEGIN { printf "%.2f", x / n }'; }
    ir=n/a
    if command -v valgrind >/dev/null; then
      valgrind --tool=callgrind --callgrind-out-file="$tmp/cg1" "${run[@]}" 10000 >/dev/null 2>&1
      valgrind --tool=callgrind --callgrind-out-file="$tmp/cg3" "${run[@]}" 30000 >/dev/null 2>&1
      ir=$(awk '/^summary:/ { s[FILENAME] = $2 } END { printf "%.0f", (s[ARGV[2]] - s[ARGV[1]]) / 20000 }' "$tmp/cg1" "$tmp/cg3")
    fi
    echo "| $p | $qos | $(per "${c[total]}") | $(per $((c[writev] + c[write] + c[sendto]))) |" \
      "$(per $((c[read] + c[recvfrom]))) | $(per "${c[futex]}") | $(per $((c[epoll_wait] + c[pselect6]))) | $(per "${c[cs]}") | $ir |"
    unset c
  done
done
