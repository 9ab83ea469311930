#!/usr/bin/env bash
# Validates the deployment examples without a Docker engine:
#   - `docker compose config -q` for every compose project under examples/,
#     alone and with each of its override files (compose.<name>.yml);
#   - examples/check (its own module): its tests, then the compose projects'
#     Traefik labels, the Kubernetes manifests and the Traefik static
#     configurations, each director configuration built by the plugin's New.
#
# These are fast checks of the files alone; e2e/examples_up_test.go runs the
# compose projects for real, on a private Docker Engine.
#
# Needs the docker CLI. When `docker compose` is missing, scripts/compose.sh
# installs the compose CLI plugin from the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1; then
	echo "check-examples.sh: the docker CLI is not installed (only the CLI is needed, no engine)" >&2
	exit 1
fi
scripts/compose.sh

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A clean environment, and no .env file unless COMPOSE_ENV_FILE names one:
# what the defaults in the files give.
compose() {
	env -i PATH="$PATH" HOME="$HOME" ${DOCKER_CONFIG:+DOCKER_CONFIG="$DOCKER_CONFIG"} \
		docker compose --env-file "${COMPOSE_ENV_FILE:-/dev/null}" "$@"
}

failed=0
check_args=()
n=0
while IFS= read -r base; do
	dir="$(dirname "$base")"
	combos=("$(basename "$base")")
	while IFS= read -r override; do
		combos+=("$(basename "$base") $(basename "$override")")
	done < <(find "$dir" -maxdepth 1 -name 'compose.*.yml' ! -name "$(basename "$base")" | sort)
	for combo in "${combos[@]}"; do
		args=()
		for f in $combo; do
			args+=(-f "$dir/$f")
		done
		n=$((n + 1))
		if compose "${args[@]}" config -q; then
			echo "ok   docker compose ${args[*]} config"
		else
			echo "FAIL docker compose ${args[*]} config"
			failed=1
			continue
		fi
		# The values the example's .env.example suggests must be valid too.
		if [ -f "$dir/.env.example" ]; then
			if COMPOSE_ENV_FILE="$dir/.env.example" compose "${args[@]}" config -q; then
				echo "ok   docker compose --env-file $dir/.env.example ${args[*]} config"
			else
				echo "FAIL docker compose --env-file $dir/.env.example ${args[*]} config"
				failed=1
			fi
		fi
		json="$work/$(echo "$dir/$combo" | tr ' /' '+_').json"
		compose "${args[@]}" config --format json >"$json"
		# Projects routed by Traefik's labels go through the label checks too.
		if grep -q '"traefik.enable"' "$json"; then
			check_args+=(-compose "$json")
		fi
	done
done < <(find examples -name compose.yml -o -name compose.yaml -o -name docker-compose.yml | sort)

if [ "$n" -eq 0 ]; then
	echo "FAIL no compose files under examples/"
	failed=1
fi

for static in examples/compose/traefik*.yml; do
	check_args+=(-traefik-static "$PWD/$static")
done

(cd examples/check && go test -count=1 ./...) || failed=1
check_args+=(-kubernetes "$PWD/examples/kubernetes")
(cd examples/check && go run . "${check_args[@]}") || failed=1

if [ "$failed" -ne 0 ]; then
	echo "check-examples: FAILED"
	exit 1
fi
echo "check-examples: all examples are valid"
