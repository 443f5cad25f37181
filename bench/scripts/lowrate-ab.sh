#!/usr/bin/env bash
# lowrate-ab: issue 6's low-rate cases (pairs n=50 and fan-in 100→1 at a
# fixed rate, 64 B, QoS 0 and 1) against several loopmq binaries and
# Mosquitto, alternated within each case, ROUNDS times; one line per run
# with the broker's CPU per delivered message split into user and kernel
# time (loadgen -broker-pid), latency and context switches. Each case of a
# round runs under flock LOCK (default /tmp/loopmq-bench.lock) so that
# benchmarks sharing the machine do not overlap; uptime goes with it.
#
#   bench/scripts/lowrate-ab.sh ROUNDS NAME=BINARY[,ENV=VALUE...] ...
#   e.g. bench/scripts/lowrate-ab.sh 3 before=/tmp/loopmq.old after=/tmp/loopmq after3=/tmp/loopmq,GOMAXPROCS=3
#
# RATE (5000), DUR (5s), LOADGEN (built from ./cmd/loadgen when unset),
# MOSQUITTO (/usr/sbin/mosquitto; skipped when missing).
set -euo pipefail
rounds=$1; shift
cd "$(dirname "$0")/../.."
. bench/scripts/loadgensetup.sh

one() { # name binary|mosquitto env scenario qos
	local name=$1 bin=$2 env=$3 scen=$4 qos=$5 port pid sf
	start_broker "$bin" "$env" -loops 2
	case $scen in
	pairs) sf="-scenario pairs -n 50" ;;
	fanin) sf="-scenario fanin -n 100 -subs 1" ;;
	esac
	"$loadgen" -broker 127.0.0.1:"$port" $sf -qos "$qos" -size 64 -rate "${RATE:-5000}" -duration "${DUR:-5s}" \
		-warmup 1s -broker-pid "$pid" -quiet -json "$tmp/run.json" >/dev/null 2>&1 || true
	kill "$pid"; wait "$pid" 2>/dev/null || true
	python3 - "$tmp/run.json" "$name" "$scen" "$qos" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); b = j["broker"]; l = j["latency"]
print(f'{sys.argv[2]:8s} {sys.argv[3]:5s} q{sys.argv[4]} {j["messages"]["received_per_s"]:7.0f}/s  cpu/msg {b["cpu_per_msg_us"]:6.2f} user {b["user_per_msg_us"]:6.2f} sys {b["sys_per_msg_us"]:6.2f}  p50 {l["p50_us"]:6d} p99 {l["p99_us"]:7d}  vcs/msg {b["voluntary_ctx_switches_per_msg"]:.2f}  lost {j["messages"]["lost"]}')
PY
}
export -f one

variants=("$@")
[ -x "$mosquitto" ] && variants+=("mosq=mosquitto")
for r in $(seq "$rounds"); do
	for c in "pairs 0" "pairs 1" "fanin 0" "fanin 1"; do
		cmds="echo \"# round $r $c \$(uptime)\""
		for v in "${variants[@]}"; do
			name=${v%%=*} spec=${v#*=} bin=${spec%%,*} env=""
			[ "$bin" != "$spec" ] && env=${spec#*,}
			cmds+="; one $name $bin '$env' $c"
		done
		flock "$lock" bash -c "$cmds"
	done
done
