#!/usr/bin/env bash
# v5ratio.sh: broker CPU per delivery, MQTT 5.0 against 3.1.1 (issue 7), with
# each broker in its own process so that only its CPU counts (see the
# -bench.broker-pid flag in doc.go).
#
#   bench/v5ratio.sh ROUNDS SCENARIO BENCHTIME QOS NAME=LOOPMQ_BINARY...
#   e.g. go build -o /tmp/loopmq ./cmd/loopmq
#        bench/v5ratio.sh 6 pairs10 1000000x 0 head=/tmp/loopmq
#
# Each round runs every named broker build with 3.1.1 and 5.0 clients, each
# run against a fresh `loopmq -loops 2` on a new free loopback port, so
# builds and versions see the same machine load; even rounds run in reverse
# order. It prints one line per run
# (name, version, broker-cpu-ns/delivery, cpu-ns/delivery of the clients),
# then per build the medians, their ranges and the median of the per-round
# 5.0/3.1.1 ratios. Build the clients first or set BENCH to a test binary
# (go test -c -o bench.test ./bench). BENCH_FLAGS is added to every
# benchmark's flags (e.g. BENCH_FLAGS='-bench.payload 117').
set -euo pipefail
[ $# -ge 5 ] || { sed -n '2,19p' "$0"; exit 2; }
rounds=$1 scenario=$2 benchtime=$3 qos=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
. "$here/scripts/runsetup.sh" "$here"
# start_broker starts $broker on the next free port as $pid. A port that
# answers already is someone else's (the machine is shared): skipped, and
# so is one the broker failed to bind, so that no run measures another
# process or dies with it.
start_broker() {
	while :; do
		port=$((port + 1))
		if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
			continue
		fi
		"$broker" -listen 127.0.0.1:$port -loops 2 -log-level warn >/dev/null 2>&1 &
		pid=$!
		for _ in $(seq 50); do
			kill -0 $pid 2>/dev/null || break
			(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
			sleep 0.1
		done
		sleep 0.1
		if kill -0 $pid 2>/dev/null; then
			return
		fi
		wait $pid 2>/dev/null || true
		pid=
	done
}
# Odd rounds run the builds in the order given, each 3.1.1 then 5.0; even
# rounds the other way round (ABBA), so that load drifting during a round
# favours no build and no version.
builds=("$@")
for round in $(seq "$rounds"); do
	order=("${builds[@]}") versions=("" V5)
	if [ $((round % 2)) -eq 0 ]; then
		order=() versions=(V5 "")
		for ((i = ${#builds[@]} - 1; i >= 0; i--)); do order+=("${builds[i]}"); done
	fi
	for spec in "${order[@]}"; do
		name=${spec%%=*} broker=${spec#*=}
		for v in "${versions[@]}"; do
			start_broker
			"$bench" -test.run '^$' -test.bench "^BenchmarkQoS$qos$v\$/^$scenario\$" -test.benchtime "$benchtime" \
				-bench.broker 127.0.0.1:$port -bench.broker-pid $pid ${BENCH_FLAGS:-} |
				awk -v n="$name" -v v="${v:-3.1.1}" '/^Benchmark/ {
					for (i = 1; i <= NF; i++) { if ($i == "broker-cpu-ns/delivery") b = $(i-1); if ($i == "cpu-ns/delivery") c = $(i-1) }
					sub("V5", "5.0", v); print n, v, b, c }' | tee -a "$out"
			stop_broker
		done
	done
done
# Medians: per build and version, and of the per-round ratios.
awk "$awk_median"'
{ k = $1 SUBSEP $2; cnt[k]++; val[k, cnt[k]] = $3; if (!($1 in seen)) { seen[$1]; order[++names] = $1 } }
END {
	for (i = 1; i <= names; i++) {
		b = order[i]; k3 = b SUBSEP "3.1.1"; k5 = b SUBSEP "5.0"
		m = cnt[k3] < cnt[k5] ? cnt[k3] : cnt[k5]
		split("", a3); split("", a5); split("", r)
		lo3 = lo5 = 1e18; hi3 = hi5 = 0
		for (j = 1; j <= m; j++) {
			a3[j] = val[k3, j]; a5[j] = val[k5, j]; r[j] = a5[j] / a3[j]
			if (a3[j] < lo3) lo3 = a3[j]; if (a3[j] > hi3) hi3 = a3[j]
			if (a5[j] < lo5) lo5 = a5[j]; if (a5[j] > hi5) hi5 = a5[j]
		}
		m3 = median(a3, m); m5 = median(a5, m); mr = median(r, m)
		printf "%s: %d rounds, broker-cpu-ns/delivery 3.1.1 %.0f [%.0f-%.0f], 5.0 %.0f [%.0f-%.0f], ratio of medians %.2f, median per-round ratio %.2f\n",
			b, m, m3, lo3, hi3, m5, lo5, hi5, m5 / m3, mr
	}
}' "$out"
