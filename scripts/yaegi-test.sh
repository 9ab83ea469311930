#!/usr/bin/env bash
# Runs the plugin's tests interpreted by Yaegi, the interpreter Traefik
# embeds, from a GOPATH layout that points at this checkout.
set -euo pipefail

YAEGI_VERSION="${YAEGI_VERSION:-v0.16.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${XDG_CACHE_HOME:-$HOME/.cache}/container-director/yaegi-$YAEGI_VERSION"
if [ ! -x "$bin/yaegi" ]; then
	GOBIN="$bin" go install "github.com/traefik/yaegi/cmd/yaegi@$YAEGI_VERSION"
fi
gopath="$(mktemp -d)"
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/github.com/container-director"
ln -s "$root" "$gopath/src/github.com/container-director/director"

cd "$gopath/src/github.com/container-director/director"
GOPATH="$gopath" GO111MODULE=off "$bin/yaegi" test -v "$@" .
