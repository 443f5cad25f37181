#!/usr/bin/env bash
# idle-curve: broker RSS per idle connection at several connection counts,
# for several loopmq binaries and Mosquitto, alternated within each count,
# ROUNDS times; loadgen's conn scenario as bench/compare's idle run makes it
# (a fresh broker per run; RSS at the window's end minus RSS before the
# first connection, over the connections). Each count of a round runs under
# flock LOCK (default /tmp/loopmq-bench.lock); /proc/loadavg goes with it.
#
#   bench/scripts/idle-curve.sh ROUNDS NAME=BINARY ...
#   e.g. COUNTS="1000 3000 10000 19000" bench/scripts/idle-curve.sh 3 main=/tmp/loopmq.main new=/tmp/loopmq
#
# COUNTS ("1000 3000 10000 19000"), LOADGEN (built from ./cmd/loadgen when
# unset), MOSQUITTO (/usr/sbin/mosquitto; skipped when missing).
set -euo pipefail
rounds=$1; shift
cd "$(dirname "$0")/../.."
. bench/scripts/loadgensetup.sh

one() { # name binary|mosquitto conns
	local name=$1 bin=$2 n=$3 port pid
	start_broker "$bin" ""
	# The flags of bench/compare's idle run (bench/compare/matrix.go, runIdle).
	"$loadgen" -broker 127.0.0.1:"$port" -scenario conn -n "$n" -procs 3 -source-ips 127.0.0.2-4 \
		-duration 3s -warmup 2s -broker-pid "$pid" -quiet -json "$tmp/run.json" >/dev/null 2>&1 || true
	kill "$pid"; wait "$pid" 2>/dev/null || true
	python3 - "$tmp/run.json" "$name" "$n" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); b = j["broker"]
print(f'{sys.argv[2]:8s} {int(sys.argv[3]):6d} up {b["connections"]:6d} rss before {b["rss_baseline_kb"]/1024:6.1f} MiB '
      f'end {b["rss_end_kb"]/1024:6.1f} MiB  per conn {b["rss_per_conn_bytes"]:6.0f} B  anon {b["rss_anon_baseline_kb"]/1024:5.1f} → {b["rss_anon_end_kb"]/1024:5.1f} MiB per conn {b["rss_anon_per_conn_bytes"]:6.0f} B', flush=True)
PY
}
export -f one

variants=("$@")
[ -x "$mosquitto" ] && variants+=("mosq=mosquitto")
for r in $(seq "$rounds"); do
	for n in ${COUNTS:-1000 3000 10000 19000}; do
		cmds="echo \"# round $r conns $n \$(date -u +%H:%M:%S) loadavg \$(cat /proc/loadavg)\""
		for v in "${variants[@]}"; do
			cmds+="; one ${v%%=*} ${v#*=} $n"
		done
		flock "$lock" bash -c "$cmds"
	done
done
