#!/usr/bin/env bash
# persist-ratio: issue 9's figure, QoS 1 to persistent subscribers with
# persistence under -sync always against no persistence, as the share of
# the in-memory throughput. Each round runs, per scenario, both against a
# fresh `loopmq -loops 2` each (BenchmarkQoS1Persist's "memory" case: the
# harness only drives the broker); even rounds run them in reverse order,
# so that load drifting during a round favours neither. Prints one line per
# run (scenario, mode, deliveries/s, broker-cpu-ns/delivery), then per
# scenario the medians and ranges and the median of the per-round ratios.
#
#   bench/scripts/persist-ratio.sh ROUNDS BENCHTIME LOOPMQ [SCENARIOS]
#   e.g. BENCH=/tmp/bench.test bench/scripts/persist-ratio.sh 10 3s /tmp/loopmq
#
# SCENARIOS defaults to "pairs10 fanin100 fanout100". Set BENCH to a test
# binary (go test -c -o bench.test ./bench) or one is built; BENCH_FLAGS
# adds harness flags (e.g. -bench.unacked 128).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,17p' "$0"; exit 2; }
rounds=$1 benchtime=$2 broker=$3 scenarios=${4:-pairs10 fanin100 fanout100}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/runsetup.sh" "$here"
data=$(mktemp -d)
trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null || true; fi; rm -rf "$out" "$data"' EXIT
for round in $(seq "$rounds"); do
	modes="always off"
	if [ $((round % 2)) -eq 0 ]; then modes="off always"; fi
	for scenario in $scenarios; do
		for mode in $modes; do
			while :; do
				port=$((port + 1))
				(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || break
			done
			rm -rf "$data/d"
			store=(-data-dir "$data/d" -sync always)
			if [ "$mode" = off ]; then store=(-persistence=false); fi
			"$broker" -listen 127.0.0.1:$port -loops 2 -log-level warn -max-queued 100000 "${store[@]}" >/dev/null 2>&1 &
			pid=$!
			for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
			sleep 0.1
			# shellcheck disable=SC2086 # BENCH_FLAGS is a list of flags
			(cd "$here" && "$bench" -test.run '^$' -test.bench "^BenchmarkQoS1Persist\$/^$scenario\$/^memory\$" \
				-test.benchtime "$benchtime" -bench.broker 127.0.0.1:$port -bench.broker-pid $pid ${BENCH_FLAGS:-}) \
				>"$data/run" 2>&1 || true
			if grep -q '^Benchmark' "$data/run"; then
				awk -v s="$scenario" -v m="$mode" -v r="$round" '/^Benchmark/ {
					for (i = 1; i <= NF; i++) { if ($i == "deliveries/s") d = $(i-1); if ($i == "broker-cpu-ns/delivery") c = $(i-1) }
					print r, s, m, d, c }' "$data/run" | tee -a "$out"
			else
				echo "round $round $scenario $mode failed (left out):" >&2
				tail -5 "$data/run" >&2
			fi
			stop_broker
		done
	done
done
awk "$awk_median"'
{ d[$1, $2, $3] = $4; c[$1, $2, $3] = $5; if (!($2 in seen)) { seen[$2] = 1; order[++ns] = $2 }; if ($1 > rounds) rounds = $1 }
END {
	for (k = 1; k <= ns; k++) {
		s = order[k]
		line = s ":"
		for (mi = 1; mi <= 2; mi++) {
			m = mi == 1 ? "always" : "off"
			lo = 1e18; hi = 0; n = 0
			for (r = 1; r <= rounds; r++) if ((r, s, m) in d) { a[++n] = d[r, s, m]; if (a[n] < lo) lo = a[n]; if (a[n] > hi) hi = a[n]; b[n] = c[r, s, m] }
			line = line sprintf(" %s %.0fk [%.0fk-%.0fk] deliveries/s (broker %.0f ns/delivery);", m, median(a, n) / 1000, lo / 1000, hi / 1000, median(b, n))
		}
		n = 0; rs = ""
		for (r = 1; r <= rounds; r++) if ((r, s, "always") in d && (r, s, "off") in d) { a[++n] = d[r, s, "always"] / d[r, s, "off"]; rs = rs sprintf(" %.2f", a[n]) }
		print line sprintf(" always/off per round:%s; median %.2f", rs, median(a, n))
	}
}' "$out"
