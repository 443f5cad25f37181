# loadgensetup.sh, sourced from the repository's root by the scripts that
# run loadgen against loopmq binaries and Mosquitto one broker at a time
# (idle-curve.sh, lowrate-ab.sh, p99-ab.sh): sets and exports tmp (removed
# on exit, the brokers killed), loadgen ($LOADGEN, or one built from
# ./cmd/loadgen), mosquitto ($MOSQUITTO, /usr/sbin/mosquitto) and lock
# ($LOCK, /tmp/loopmq-bench.lock), and the function start_broker.
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
loadgen=${LOADGEN:-}
if [ -z "$loadgen" ]; then go build -o "$tmp/loadgen" ./cmd/loadgen; loadgen=$tmp/loadgen; fi
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
lock=${LOCK:-/tmp/loopmq-bench.lock}
export tmp loadgen mosquitto

# start_broker BINARY|mosquitto ENV [FLAG...] starts a broker on a free
# loopback port with bench/compare's settings: Mosquitto with the config it
# generates, loopmq with its flags plus FLAGs, and ENV (VAR=VALUE,...) in
# its environment. It sets port and pid (declare them local in the caller)
# and gives the broker half a second to listen.
start_broker() {
	local bin=$1 env=$2
	shift 2
	port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
	if [ "$bin" = mosquitto ]; then
		printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 32\nmax_queued_messages 100000\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\n' "$port" >"$tmp/m.conf"
		"$mosquitto" -c "$tmp/m.conf" 2>"$tmp/broker.log" &
	else
		env ${env//,/ } "$bin" -listen 127.0.0.1:"$port" -log-level warn -persistence=false \
			-max-inflight 32 -max-queued 100000 -max-queued-bytes 268435456 "$@" 2>"$tmp/broker.log" &
	fi
	pid=$!
	sleep 0.5
}
export -f start_broker
