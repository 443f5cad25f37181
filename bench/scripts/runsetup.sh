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
