#!/usr/bin/env bash
# framesize: what MQTT 5.0 costs the broker against what its larger frames
# cost (issue 7). Each round runs three benchmarks against a fresh
# `loopmq -loops 2` each: 3.1.1 with the harness's 64-byte payload, 3.1.1
# with a payload that makes its frames the size of the 5.0 ones, and 5.0
# with 64 bytes; even rounds run them in reverse order. Prints one line per
# run (label, broker-cpu-ns/delivery), then per label the median and range
# and the medians of the per-round ratios.
#
#   bench/scripts/framesize.sh ROUNDS SCENARIO BENCHTIME QOS BIGPAYLOAD LOOPMQ
#   e.g. BENCH=/tmp/bench.test bench/scripts/framesize.sh 10 fanin100 1000000x 0 117 /tmp/loopmq
#
# BIGPAYLOAD: 117 for fanin100 (topics bench/in/N), 116 for pairs10. Set
# BENCH to a test binary (go test -c -o bench.test ./bench) or one is built.
# PROFILE=DIR also writes the broker's CPU profile of each run there
# (loopmq -cpuprofile; label-round.prof).
set -euo pipefail
[ $# -eq 6 ] || { sed -n '2,18p' "$0"; exit 2; }
rounds=$1 scenario=$2 benchtime=$3 qos=$4 big=$5 broker=$6
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/runsetup.sh" "$here"
specs=("v3_64::64" "v3_$big::$big" "v5_64:V5:64")
for round in $(seq "$rounds"); do
	order=("${specs[@]}")
	if [ $((round % 2)) -eq 0 ]; then order=("${specs[2]}" "${specs[1]}" "${specs[0]}"); fi
	for spec in "${order[@]}"; do
		IFS=: read -r label v payload <<<"$spec"
		while :; do
			port=$((port + 1))
			(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || break
		done
		prof=()
		if [ -n "${PROFILE:-}" ]; then prof=(-cpuprofile "$PROFILE/$label-$round.prof"); fi
		"$broker" -listen 127.0.0.1:$port -loops 2 -log-level warn "${prof[@]}" >/dev/null 2>&1 &
		pid=$!
		for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
		sleep 0.1
		"$bench" -test.run '^$' -test.bench "^BenchmarkQoS$qos$v\$/^$scenario\$" -test.benchtime "$benchtime" \
			-bench.broker 127.0.0.1:$port -bench.broker-pid $pid -bench.payload "$payload" |
			awk -v n="$label" '/^Benchmark/ { for (i = 1; i <= NF; i++) if ($i == "broker-cpu-ns/delivery") print n, $(i-1) }' |
			tee -a "$out"
		stop_broker
	done
done
awk -v big="v3_$big" "$awk_median"'
{ r = int((NR - 1) / 3); v[r, $1] = $2; rounds = r + 1 }
END {
	split("v3_64 " big " v5_64", labels, " ")
	for (l = 1; l <= 3; l++) {
		lo = 1e18; hi = 0
		for (r = 0; r < rounds; r++) { a[r+1] = v[r, labels[l]]; if (a[r+1] < lo) lo = a[r+1]; if (a[r+1] > hi) hi = a[r+1] }
		printf "%s: broker-cpu-ns/delivery %.0f [%.0f-%.0f]\n", labels[l], median(a, rounds), lo, hi
	}
	split(big "/v3_64 v5_64/v3_64 v5_64/" big, pairs, " ")
	for (p = 1; p <= 3; p++) {
		split(pairs[p], ab, "/")
		for (r = 0; r < rounds; r++) a[r+1] = v[r, ab[1]] / v[r, ab[2]]
		printf "%s: median per-round ratio %.2f\n", pairs[p], median(a, rounds)
	}
}' "$out"
