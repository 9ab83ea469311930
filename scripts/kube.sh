#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy and caches both
# binaries outside the checkout, for the tests that need a real Kubernetes API
# server. Prints the directory that holds `kube-apiserver` and `etcd`.
#
# Neither installs with `go install …@version`: both modules have replace
# directives. k8s.io/kubernetes replaces every k8s.io/* staging module with a
# ./staging/src folder that its module zip does not contain, so the copy built
# here points them at the published modules of the matching version
# (v1.37.2 → v0.37.2). etcd's server module replaces its sibling modules with
# ../ folders; the copy uses the published siblings of the same version.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/container-director"
out="$cache/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
# One build at a time: a second caller waits for the first and reuses it.
exec 9>"$cache/kube.lock"
flock 9
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$out"

# moduledir MODULE@VERSION prints a writable copy of the module's source.
work="$(mktemp -d "$cache/kube-src.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
moduledir() {
	local dir dst
	dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	if [ -z "$dir" ]; then
		echo "kube.sh: could not download $1" >&2
		return 1
	fi
	dst="$work/$(echo "$1" | tr '/@' '__')"
	cp -r "$dir/." "$dst"
	chmod -R u+w "$dst"
	echo "$dst"
}

# The builds share two cores with whatever else runs: stay out of its way.
build() { nice -n 19 env GOWORK=off GOFLAGS=-mod=mod go build -trimpath "$@"; }

if [ ! -x "$out/etcd" ]; then
	echo "building etcd $ETCD_VERSION from the Go module proxy into $out (a few minutes the first time)" >&2
	src="$(moduledir "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
	(
		cd "$src"
		args=""
		for m in $(sed -n 's/^[[:space:]]*\(go\.etcd\.io\/etcd\/[^ ]*\) => \.\.\/.*/\1/p' go.mod); do
			args="$args -dropreplace=$m -require=$m@$ETCD_VERSION"
		done
		# shellcheck disable=SC2086
		go mod edit $args
		build -ldflags='-s -w' -o "$out/etcd.tmp" .
	)
	mv "$out/etcd.tmp" "$out/etcd"
fi

if [ ! -x "$out/kube-apiserver" ]; then
	echo "building kube-apiserver $KUBE_VERSION from the Go module proxy into $out (long the first time)" >&2
	src="$(moduledir "k8s.io/kubernetes@$KUBE_VERSION")"
	staging="v0.${KUBE_VERSION#v1.}"
	(
		cd "$src"
		rm -f go.work go.work.sum
		args=""
		for m in $(sed -n 's/^[[:space:]]*\(k8s\.io\/[^ ]*\) => \.\/staging\/.*/\1/p' go.mod); do
			args="$args -dropreplace=$m -require=$m@$staging"
		done
		# shellcheck disable=SC2086
		go mod edit $args
		minor="${KUBE_VERSION#v1.}"
		minor="${minor%%.*}"
		v=k8s.io/component-base/version
		build -ldflags="-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
			-o "$out/kube-apiserver.tmp" ./cmd/kube-apiserver
	)
	mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
fi
echo "$out"
