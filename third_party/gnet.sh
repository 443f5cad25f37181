#!/usr/bin/env bash
# third_party/gnet.sh check|sync: third_party/gnet is gnet at the version
# go.mod requires (GNET_VERSION overrides it) as the module proxy serves it, minus the files listed in drop() below, plus
# loopmq's patch (third_party/gnet/loopmq.diff) and its note (LOOPMQ.md).
#
#   check  rebuilds that tree from the module cache in a temporary directory
#          and fails if third_party/gnet differs from it in any byte or file
#          (make check-gnet, part of make test).
#   sync   rewrites third_party/gnet the same way: after editing drop() or
#          the patch, or with GNET_VERSION set to move to a newer release
#          (fix the patch until it applies, then update go.mod's require).
#
# The module is fetched with `go mod download`, which checks it against
# go.sum or the checksum database: the copy is the release, not whatever a
# module cache holds.
set -euo pipefail
cd "$(dirname "$0")/.."

GNET_VERSION=${GNET_VERSION:-$(go list -m -f '{{.Version}}' github.com/panjf2000/gnet/v2)}
dst=third_party/gnet
mode=${1:-check}

# drop deletes what loopmq never compiles or ships, run in the tree's root:
# - tests, examples and the repository's own files;
# - README.md (LOOPMQ.md says what this is; LICENSE stays, Apache 2.0);
# - Windows: loopmq's engine does not build there (it uses unix.Iovec);
# - the poll_opt build tag's poller and its syscall wrappers: the patch is
#   in the default poller only, so `go build -tags poll_opt` must fail
#   rather than build a broker without it.
# The BSD and macOS (kqueue) files stay: the broker builds there without
# TLS and WebSocket listeners, unpatched (LOOPMQ.md).
drop() {
	rm -rf .github .gitignore CODE_OF_CONDUCT.md CONTRIBUTING.md README.md README_ZH.md
	find . -name '*_test.go' -delete
	find . -name '*_windows.go' -delete
	grep -rlE --include='*.go' '^//go:build (.*[^!])?poll_opt' . | xargs -r rm -f
	find . -type d -empty -delete
}

dir=$(go mod download -json "github.com/panjf2000/gnet/v2@$GNET_VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -f "$dir/go.mod" ]; then
	echo "gnet.sh: go mod download github.com/panjf2000/gnet/v2@$GNET_VERSION gave no directory" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cp -r "$dir/." "$tmp/gnet"
chmod -R u+w "$tmp/gnet"
# patch(1) is not on every machine that has Go; git apply does the same
# outside a repository.
apply() {
	if command -v patch >/dev/null; then
		patch -s -p1 --no-backup-if-mismatch <"$1"
	else
		git apply -p1 "$1"
	fi
}
(cd "$tmp/gnet" && drop && apply "$OLDPWD/$dst/loopmq.diff")
cp "$dst/LOOPMQ.md" "$dst/loopmq.diff" "$tmp/gnet/"

case $mode in
check)
	if ! diff -r "$tmp/gnet" "$dst" >"$tmp/diff"; then
		echo "gnet.sh: $dst is not gnet $GNET_VERSION minus drop() plus loopmq.diff:" >&2
		sed 's|'"$tmp"'/gnet|upstream+patch|' "$tmp/diff" | head -40 >&2
		exit 1
	fi
	echo "gnet.sh: $dst = gnet $GNET_VERSION minus drop() plus loopmq.diff"
	;;
sync)
	rm -rf "$dst"
	cp -r "$tmp/gnet" "$dst"
	echo "gnet.sh: $dst rewritten from gnet $GNET_VERSION"
	;;
*)
	echo "usage: third_party/gnet.sh check|sync" >&2
	exit 2
	;;
esac
