#!/usr/bin/env bash
# persist-compare: QoS 1 to persistent subscribers (BenchmarkQoS1Persist's
# scenarios, its "memory" case: the harness only drives the broker) against
# loopmq and Mosquitto as separate processes, with and without persistence,
# one broker at a time, ROUNDS times alternating. Prints the benchmark lines;
# broker-cpu-ns/delivery is the broker process's own CPU per delivery.
#
#   bench/scripts/persist-compare.sh [ROUNDS] [BENCHTIME] [PAYLOAD]
#
# PAYLOAD is the PUBLISH payload in bytes (-bench.payload; 64 by default).
#
# Mosquitto writes its persistence file only every autosave_interval (and on
# exit); loopmq -sync always fsyncs before acknowledging (docs/persistence.md).
set -euo pipefail
rounds=${1:-2}
benchtime=${2:-20000x}
payload=${3:-64}
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/loopmq" ./cmd/loopmq
go test -c -o "$tmp/bench.test" ./bench/
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
port=18871

run() { # name, then the broker command
	local name=$1; shift
	"$@" >"$tmp/$name.log" 2>&1 &
	local pid=$!
	for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
	echo "## $name"
	(cd bench && "$tmp/bench.test" -test.run '^$' -test.bench 'QoS1Persist/.*/memory' -test.benchtime "$benchtime" -bench.payload "$payload" \
		-bench.broker 127.0.0.1:$port -bench.broker-pid $pid) | grep -E '^Benchmark' || { echo "failed; log:"; cat "$tmp/$name.log"; }
	kill $pid; wait $pid 2>/dev/null || true
}

mosqconf() { # persistence true|false
	cat >"$tmp/mosquitto-$1.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence $1
persistence_location $tmp/mosq-data/
max_inflight_messages 32
max_queued_messages 100000
set_tcp_nodelay true
log_dest stderr
log_type error
CONF
	echo "$tmp/mosquitto-$1.conf"
}
mkdir -p "$tmp/mosq-data"

for r in $(seq "$rounds"); do
	echo "# round $r"
	rm -rf "$tmp/lq-data" "$tmp/mosq-data"/*
	run loopmq-always "$tmp/loopmq" -listen 127.0.0.1:$port -loops 2 -log-level warn -max-queued 100000 -data-dir "$tmp/lq-data" -sync always
	rm -rf "$tmp/lq-data"
	run loopmq-none "$tmp/loopmq" -listen 127.0.0.1:$port -loops 2 -log-level warn -max-queued 100000 -data-dir "$tmp/lq-data" -sync none
	run loopmq-off "$tmp/loopmq" -listen 127.0.0.1:$port -loops 2 -log-level warn -max-queued 100000 -persistence=false
	if [ -x "$mosquitto" ]; then
		run mosquitto-persistence "$mosquitto" -c "$(mosqconf true)"
		run mosquitto-off "$mosquitto" -c "$(mosqconf false)"
	fi
done
