#!/usr/bin/env bash
# p99-ab: issue 6's fixed-rate QoS 1 latency case (pairs n=50, 5,000/s)
# against several loopmq binaries and Mosquitto, alternated within each
# round (even rounds in reverse order), ROUNDS times, one line per run:
# latency percentiles from loadgen's JSON (end to end, from the publisher's
# write, to PUBACK), broker CPU per message and context switches, loadgen's
# overruns, and "other": the CPU that processes other than this broker and
# loadgen used during the run (% of one core, /proc/stat), so that runs
# disturbed by other work can be left out. Each round runs under flock LOCK
# (default /tmp/loopmq-bench.lock); /proc/loadavg is printed with it.
#
#   bench/scripts/p99-ab.sh ROUNDS NAME=BINARY[,ENV=VALUE...] ...
#   e.g. SIZES="64 1024" bench/scripts/p99-ab.sh 6 main=/tmp/loopmq.main new=/tmp/loopmq
#
# SIZES ("1024"), QOS (1), RATE (5000), DUR (5s), N (50), LOADGEN (built
# from ./cmd/loadgen when unset), MOSQUITTO (/usr/sbin/mosquitto; skipped
# when missing), EXTRA (more loadgen flags).
set -euo pipefail
rounds=$1; shift
cd "$(dirname "$0")/../.."
. bench/scripts/loadgensetup.sh

one() { # name binary|mosquitto env size
	local name=$1 bin=$2 env=$3 size=$4 port pid
	start_broker "$bin" "$env"
	local busy0 busy1 lg bcpu0 bcpu
	busy0=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
	bcpu0=$(awk '{print $14+$15}' /proc/"$pid"/stat)
	lg=$(sh -c '"$0" "$@" >/dev/null 2>&1; cat /proc/$$/stat' "$loadgen" -broker 127.0.0.1:"$port" -scenario pairs -n "${N:-50}" -qos "${QOS:-1}" -size "$size" \
		-rate "${RATE:-5000}" -duration "${DUR:-5s}" -warmup 1s -broker-pid "$pid" -quiet ${EXTRA:-} \
		-json "$tmp/run.json" | awk '{print $16+$17}')
	bcpu=$(awk -v b="$bcpu0" '{print $14+$15-b}' /proc/"$pid"/stat)
	busy1=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
	kill "$pid"; wait "$pid" 2>/dev/null || true
	python3 - "$tmp/run.json" "$name" "$size" "$busy0" "$busy1" "$lg" "$bcpu" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); b = j["broker"]; l = j["latency"]; a = j["ack_latency"]; w = j.get("write_latency") or {}
# CPU of processes other than this broker and loadgen over the run, as % of one core
# (/proc/stat and /proc/PID/stat in 10 ms ticks; the run is about elapsed_s + 0.5 s).
other = (int(sys.argv[5]) - int(sys.argv[4]) - int(sys.argv[6]) - int(sys.argv[7])) / (j["elapsed_s"] + 0.5)
print(f'{sys.argv[2]:8s} {sys.argv[3]:>5s}B {j["messages"]["received_per_s"]:6.0f}/s cpu/msg {b["cpu_per_msg_us"]:6.2f} '
      f'p50 {l["p50_us"]:5d} p90 {l["p90_us"]:5d} p99 {l["p99_us"]:6d} p999 {l["p999_us"]:6d} max {l["max_us"]:7d} '
      f'write p50 {w.get("p50_us",0):5d} p99 {w.get("p99_us",0):6d} ack p99 {a["p99_us"]:6d} '
      f'vcs/msg {b["voluntary_ctx_switches_per_msg"]:.2f} lost {j["messages"]["lost"]} overruns {j["messages"]["overruns"]} maxlag {j["messages"]["max_lag_us"]} other {max(other,0):.0f}%', flush=True)
PY
}
export -f one

variants=("$@")
[ -x "$mosquitto" ] && variants+=("mosq=mosquitto")
for r in $(seq "$rounds"); do
	order=("${variants[@]}")
	if [ $((r % 2)) -eq 0 ]; then
		order=(); for ((i=${#variants[@]}-1; i>=0; i--)); do order+=("${variants[$i]}"); done
	fi
	cmds="echo \"# round $r \$(date -u +%H:%M:%S) loadavg \$(cat /proc/loadavg)\""
	for size in ${SIZES:-1024}; do
		for v in "${order[@]}"; do
			name=${v%%=*} spec=${v#*=} bin=${spec%%,*} env=""
			[ "$bin" != "$spec" ] && env=${spec#*,}
			cmds+="; one $name $bin '$env' $size"
		done
	done
	flock "$lock" bash -c "$cmds"
done
