#!/usr/bin/env bash
# Makes `docker compose` work: when the docker CLI has no compose plugin,
# installs Docker Compose from the Go module proxy (a few minutes the first
# time), caches it outside the checkout and links it into the CLI's plugin
# directory. Needs the docker CLI (Debian's docker.io or docker-cli).
set -euo pipefail

COMPOSE_VERSION="${COMPOSE_VERSION:-v2.32.4}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/container-director"
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

if ! command -v docker >/dev/null 2>&1; then
	echo "compose.sh: the docker CLI is not installed (apt-get install docker.io)" >&2
	exit 1
fi
if docker compose version >/dev/null 2>&1; then
	exit 0
fi

bin="$cache/docker-compose-$COMPOSE_VERSION"
if [ ! -x "$bin" ]; then
	mkdir -p "$cache"
	echo "installing Docker Compose $COMPOSE_VERSION from the Go module proxy into $bin (a few minutes the first time)" >&2
	gobin="$(mktemp -d "$cache/docker-compose-bin.XXXXXX")"
	# The package is .../cmd, so go install names the binary "cmd".
	if ! GOBIN="$gobin" go install -trimpath \
		-ldflags="-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
		"github.com/docker/compose/v2/cmd@$COMPOSE_VERSION"; then
		rm -rf "$gobin"
		echo "compose.sh: could not install Docker Compose $COMPOSE_VERSION" >&2
		exit 1
	fi
	mv "$gobin/cmd" "$bin"
	rm -rf "$gobin"
fi
mkdir -p "$plugins"
ln -sf "$bin" "$plugins/docker-compose"
docker compose version >&2
