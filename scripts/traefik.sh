#!/usr/bin/env bash
# Builds Traefik from the Go module proxy (its go.mod has replace directives,
# so `go install` refuses it) and caches the binary outside the checkout.
# Prints the binary's path on stdout.
set -euo pipefail

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/container-director"
bin="$cache/traefik-$TRAEFIK_VERSION"

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
# One build at a time: a second caller waits for the first and reuses its binary.
exec 9>"$cache/traefik-$TRAEFIK_VERSION.lock"
flock 9
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
echo "building Traefik $TRAEFIK_VERSION from the Go module proxy into $bin (several minutes the first time)" >&2
dir="$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$dir" ]; then
	echo "traefik.sh: could not download github.com/traefik/traefik/v3@$TRAEFIK_VERSION" >&2
	exit 1
fi
work="$(mktemp -d "$cache/traefik-src.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$dir/." "$work"
chmod -R u+w "$work"
(cd "$work" && go build -trimpath -ldflags='-s -w' -o "$work/traefik" ./cmd/traefik)
mv "$work/traefik" "$bin"
echo "$bin"
