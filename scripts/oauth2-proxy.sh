#!/usr/bin/env bash
# Installs OAuth2 Proxy from the Go module proxy and caches the binary outside
# the checkout. Prints the binary's path on stdout.
set -euo pipefail

OAUTH2_PROXY_VERSION="${OAUTH2_PROXY_VERSION:-v7.15.6}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/container-director"
bin="$cache/oauth2-proxy-$OAUTH2_PROXY_VERSION"

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
# One install at a time: a second caller waits for the first and reuses its binary.
exec 9>"$cache/oauth2-proxy-$OAUTH2_PROXY_VERSION.lock"
flock 9
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
echo "installing OAuth2 Proxy $OAUTH2_PROXY_VERSION from the Go module proxy into $bin (a few minutes the first time)" >&2
gobin="$(mktemp -d "$cache/oauth2-proxy-bin.XXXXXX")"
trap 'rm -rf "$gobin"' EXIT
# The version stamp makes `oauth2-proxy --version` tell which one it is.
GOBIN="$gobin" go install \
	-ldflags="-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$OAUTH2_PROXY_VERSION" \
	"github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION"
mv "$gobin/oauth2-proxy" "$bin"
echo "$bin"
