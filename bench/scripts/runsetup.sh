# runsetup.sh, sourced by the scripts that run bench.test against a loopmq
# process of their own (bench/v5ratio.sh, bench/scripts/framesize.sh):
# sets bench (the test binary: $BENCH, or one built from the bench package
# at $1), out (a temporary file), pid (the broker's, for the caller to set)
# and port (a random base to count up from), and kills the broker and
# removes out when the script exits.
bench=${BENCH:-}
if [ -z "$bench" ]; then
	bench=$(mktemp -d)/bench.test
	go test -c -o "$bench" "$1"
fi
out=$(mktemp)
pid=
trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null || true; fi; rm -f "$out"' EXIT
port=$((20000 + RANDOM % 20000))

# stop_broker stops the broker the caller started (pid) and forgets it.
stop_broker() {
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
}

# awk_median is an awk function, median(a, n), for the scripts' summaries:
# awk "$awk_median"'...'.
awk_median='
function median(a, n,   i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
'
