#!/usr/bin/env bash
# Container Director demo, without Docker: a real Traefik with the director
# plugin from this checkout (local mode), OAuth2 Proxy signing users in at a
# local OIDC provider, and the reference spawner starting each user's
# workspace as a local process. See docs/demo.md.
#
#   scripts/demo.sh            (make demo)
#
# Environment:
#   DEMO_ADDR                    where Traefik listens (default 127.0.0.1:8000)
#   DEMO_URL                     the URL the browser opens (default http://DEMO_ADDR,
#                                with 0.0.0.0 shown as 127.0.0.1)
#   DEMO_USERS                   names offered on the sign-in form (default alice,bob)
#   DEMO_WORKSPACE               vscode (default): each workspace is VS Code
#                                (code-server, installed by scripts/code-server.sh);
#                                echo: the spawner's small built-in echo page
#   DEMO_WORKSPACE_DIR           vscode: where each user's home folder and VS Code
#                                data live, kept across restarts (default
#                                DEMO_LOG_DIR/workspaces)
#   DEMO_WORKSPACE_START_DELAY   echo: how long a workspace takes to start (default 3s)
#   DEMO_READY_FILE              written (with the URL) once everything answers
#   DEMO_LOG_DIR                 where the logs go (default a new temporary directory)
#
# It runs until Ctrl-C (or SIGTERM) and then stops everything it started.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"

# Loopback addresses of the demo's own services, out of the way of the
# workspaces (127.0.1.x) and of anything on 127.0.0.1.
oauth2_addr=127.0.3.1:4180
spawner_addr=127.0.3.2:8090
provider_addr=127.0.3.3:9000
client_id=container-director
client_secret=container-director-demo

log() { echo "demo: $*" >&2; }
die() {
	echo "demo: $*" >&2
	exit 1
}

# prepare builds what the demo runs and writes its configuration into $dir.
prepare() {
	for tool in go curl unshare mount; do
		command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
	done
	mkdir -p "$dir/bin" "$dir/traefik"

	log "building (Traefik takes several minutes the first time, then it is cached)"
	traefik_bin="$("$repo/scripts/traefik.sh")"
	oauth2_proxy_bin="$("$repo/scripts/oauth2-proxy.sh")"
	(cd "$repo/examples/spawner" && go build -o "$dir/bin/spawner" .)
	(cd "$repo/e2e" && go build -o "$dir/bin/oidc-provider" ./cmd/oidc-provider)
	ln -sf "$traefik_bin" "$dir/bin/traefik"
	ln -sf "$oauth2_proxy_bin" "$dir/bin/oauth2-proxy"
	if [ "$DEMO_WORKSPACE" = vscode ]; then
		prepare_vscode
	fi

	# The private /etc/hosts: the machine's, to which the spawner appends
	# "127.0.1.N<TAB>vscode-<user>" for every workspace it starts.
	{
		cat /etc/hosts
		echo
		echo "# container-director demo: workspaces added by the spawner"
	} >"$dir/hosts"

	# Local plugin mode: Traefik loads ./plugins-local/src/<moduleName>.
	local src="$dir/traefik/plugins-local/src/github.com/container-director"
	mkdir -p "$src"
	# -n: on a rerun in the same DEMO_LOG_DIR, replace the link instead of
	# creating one inside the checkout it points to.
	ln -sfn "$repo" "$src/director"

	cat >"$dir/traefik/traefik.yml" <<EOF
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: INFO
  noColor: true
accessLog:
  filePath: "$dir/access.log"
entryPoints:
  web:
    address: "$DEMO_ADDR"
    transport:
      lifeCycle:
        graceTimeOut: 2s
providers:
  file:
    filename: "$dir/traefik/dynamic.yml"
experimental:
  abortOnPluginFailure: true
  localPlugins:
    director:
      moduleName: github.com/container-director/director
EOF

	# The chain of examples/compose, over the file provider. /oidc/ is the
	# local provider, on the same origin so the browser needs one address.
	cat >"$dir/traefik/dynamic.yml" <<EOF
http:
  routers:
    oauth2:
      rule: PathPrefix(\`/oauth2/\`)
      entryPoints: [web]
      priority: 100
      service: oauth2-proxy
    oidc:
      rule: PathPrefix(\`/oidc/\`)
      entryPoints: [web]
      priority: 100
      service: oidc-provider
    workspaces:
      rule: PathPrefix(\`/\`)
      entryPoints: [web]
      priority: 1
      middlewares: [oauth-errors, oauth-auth, director]
      service: spawner
  middlewares:
    oauth-errors:
      errors:
        status: ["401"]
        service: oauth2-proxy
        query: /oauth2/sign_in?rd={url}
    oauth-auth:
      forwardAuth:
        address: http://$oauth2_addr/oauth2/auth
        maxResponseBodySize: 65536
        authResponseHeaders:
          - X-Auth-Request-Preferred-Username
          - X-Auth-Request-User
          - X-Auth-Request-Email
    director:
      plugin:
        director:
          containerHostPrefix: vscode
          containerPort: 8080
          usernameHeader: X-Auth-Request-Preferred-Username,X-Auth-Request-User
          # Any name typed on the sign-in form gets a workspace.
          usernamePolicy: escape
          dialTimeout: 1s
          probeCacheTTL: 10s
  services:
    oauth2-proxy:
      loadBalancer:
        servers:
          - url: http://$oauth2_addr
    oidc-provider:
      loadBalancer:
        servers:
          - url: http://$provider_addr
    spawner:
      loadBalancer:
        servers:
          - url: http://$spawner_addr
EOF
}

# prepare_vscode installs code-server (cached) and writes the command the
# spawner runs for each workspace: $dir/bin/workspace NAME ADDR PORT.
prepare_vscode() {
	local code_server_bin
	log "installing code-server (a few minutes the first time, then it is cached)"
	code_server_bin="$("$repo/scripts/code-server.sh")"
	mkdir -p "$DEMO_WORKSPACE_DIR"
	DEMO_WORKSPACE_DIR="$(cd "$DEMO_WORKSPACE_DIR" && pwd)"
	case "$dir$DEMO_WORKSPACE_DIR" in
	*[[:space:]]*) die "the spawner splits its process command at spaces: DEMO_LOG_DIR and DEMO_WORKSPACE_DIR must have none" ;;
	esac
	# One user's VS Code: its own loopback address, a home folder (the
	# folder it opens) and VS Code's data next to it, both kept when the
	# workspace stops. NAME is the container name (vscode-<user>), safe as
	# a file name.
	cat >"$dir/bin/workspace" <<EOF
#!/bin/sh
set -eu
root="$DEMO_WORKSPACE_DIR/\$1"
mkdir -p "\$root/home" "\$root/data" "\$root/config" "\$root/cache"
export HOME="\$root/home" XDG_DATA_HOME="\$root/data" XDG_CONFIG_HOME="\$root/config" XDG_CACHE_HOME="\$root/cache"
cd "\$HOME"
# In a PID namespace of its own where the system allows it, as in a
# container: when the spawner stops the workspace, whatever its terminals
# left running in the background (setsid, nohup) ends with it.
pidns=""
if unshare --pid --fork --kill-child true 2>/dev/null; then
	pidns="unshare --pid --fork --kill-child"
fi
exec \$pidns "$code_server_bin" --auth none --bind-addr "\$2:\$3" \\
	--user-data-dir "\$root/data/code-server" --extensions-dir "\$root/data/extensions" \\
	--disable-telemetry --disable-update-check --disable-workspace-trust "\$HOME"
EOF
	chmod +x "$dir/bin/workspace"
}

# --- inside the private mount namespace ----------------------------------

pids=()
names=()

# start NAME CMD...: runs CMD in the background, its output in $dir/NAME.log.
start() {
	local name="$1"
	shift
	"$@" >"$dir/$name.log" 2>&1 &
	pids+=("$!")
	names+=("$name")
}

stop_all() {
	trap - EXIT INT TERM
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for _ in $(seq 50); do
		local alive=0
		for pid in "${pids[@]}"; do
			if kill -0 "$pid" 2>/dev/null; then
				alive=1
			fi
		done
		[ "$alive" -eq 0 ] && break
		sleep 0.2
	done
	for pid in "${pids[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	echo "demo: stopped; logs are in $dir" >&2
}

# check_alive fails, with the end of its log, if a started process exited.
check_alive() {
	local i
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "demo: ${names[$i]} exited; the end of $dir/${names[$i]}.log:" >&2
			tail -n 20 "$dir/${names[$i]}.log" >&2
			return 1
		fi
	done
}

# wait_http URL CODE WHAT: waits up to 60 s for URL to answer with CODE.
wait_http() {
	local url="$1" want="$2" what="$3" got=""
	for _ in $(seq 300); do
		check_alive || return 1
		got="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
		[ "$got" = "$want" ] && return 0
		sleep 0.2
	done
	echo "demo: $what: $url answered $got, not $want, after 60 s" >&2
	return 1
}

inside() {
	trap stop_all EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	# Names like vscode-alice resolve through this file for everything
	# started below; the rest of the machine keeps its own /etc/hosts.
	mount --bind "$dir/hosts" /etc/hosts
	# Go's own resolver reads /etc/hosts at most every 5 s, so Traefik would
	# go on missing a new workspace for up to 5 s after it listens. The C
	# library's reads the file on every lookup: Traefik and the spawner are
	# cgo binaries here, and this makes them use it.
	export GODEBUG=netdns=cgo

	local bin="$dir/bin"
	start oidc-provider "$bin/oidc-provider" -listen "$provider_addr" -issuer "$DEMO_URL/oidc" \
		-client-id "$client_id" -client-secret "$client_secret" -users "$DEMO_USERS"
	local workspace=()
	if [ "$DEMO_WORKSPACE" = vscode ]; then
		workspace=(-process-command "$bin/workspace {name} {addr} {port}")
	fi
	start spawner "$bin/spawner" -backend process -listen "$spawner_addr" \
		-prefix vscode -container-port 8080 -username-header X-Auth-Request-Preferred-Username,X-Auth-Request-User \
		-hosts-file "$dir/hosts" -workspace-start-delay "$DEMO_WORKSPACE_START_DELAY" \
		-shutdown-timeout 2s "${workspace[@]}"
	(cd "$dir/traefik" && exec "$bin/traefik" --configFile="$dir/traefik/traefik.yml") >"$dir/traefik.log" 2>&1 &
	pids+=("$!")
	names+=(traefik)

	# OAuth2 Proxy reads the provider's discovery document when it starts,
	# through Traefik: both must be up first.
	wait_http "$DEMO_URL/oidc/.well-known/openid-configuration" 200 "Traefik and the OIDC provider"

	local host="${DEMO_URL#*://}"
	host="${host%%/*}"
	host="${host%:*}"
	start oauth2-proxy "$bin/oauth2-proxy" \
		--http-address="$oauth2_addr" \
		--reverse-proxy=true \
		--trusted-proxy-ip=127.0.0.1/32 \
		--set-xauthrequest=true \
		--upstream=static://202 \
		--provider=oidc \
		--provider-display-name="the local test provider" \
		--oidc-issuer-url="$DEMO_URL/oidc" \
		--client-id="$client_id" \
		--client-secret="$client_secret" \
		--code-challenge-method=S256 \
		--cookie-secret="$(head -c 24 /dev/urandom | base64 | tr -- '+/' '-_')" \
		--cookie-secure=false \
		--redirect-url="$DEMO_URL/oauth2/callback" \
		--whitelist-domain="$host:*" \
		--email-domain='*'
	wait_http "http://$oauth2_addr/ping" 200 "OAuth2 Proxy"
	wait_http "http://$spawner_addr/" 400 "the spawner"
	# The whole chain: without a session, the sign-in page (status 401).
	wait_http "$DEMO_URL/" 401 "the sign-in page through Traefik"

	echo
	echo "Open $DEMO_URL/ and sign in as any user"
	echo "Logs: $dir"
	echo "Press Ctrl-C to stop."
	if [ -n "${DEMO_READY_FILE:-}" ]; then
		echo "$DEMO_URL/" >"$DEMO_READY_FILE"
	fi

	# Until a signal, or until one of them exits.
	while check_alive; do
		sleep 1
	done
	exit 1
}

DEMO_ADDR="${DEMO_ADDR:-127.0.0.1:8000}"
if [ -z "${DEMO_URL:-}" ]; then
	case "$DEMO_ADDR" in
	0.0.0.0:* | :*) DEMO_URL="http://127.0.0.1:${DEMO_ADDR##*:}" ;;
	*) DEMO_URL="http://$DEMO_ADDR" ;;
	esac
fi
DEMO_URL="${DEMO_URL%/}"
DEMO_USERS="${DEMO_USERS:-alice,bob}"
DEMO_WORKSPACE_START_DELAY="${DEMO_WORKSPACE_START_DELAY:-3s}"
DEMO_WORKSPACE="${DEMO_WORKSPACE:-vscode}"
case "$DEMO_WORKSPACE" in
vscode | echo) ;;
*) die "DEMO_WORKSPACE: must be vscode or echo, got \"$DEMO_WORKSPACE\"" ;;
esac
export DEMO_ADDR DEMO_URL DEMO_USERS DEMO_WORKSPACE_START_DELAY DEMO_WORKSPACE

if [ "${1:-}" = "__inside" ]; then
	dir="$2"
	inside
	exit
fi

if [ -n "${DEMO_LOG_DIR:-}" ]; then
	mkdir -p "$DEMO_LOG_DIR"
	dir="$(cd "$DEMO_LOG_DIR" && pwd)"
else
	dir="$(mktemp -d "${TMPDIR:-/tmp}/container-director-demo.XXXXXX")"
fi
echo "demo: logs in $dir" >&2
DEMO_WORKSPACE_DIR="${DEMO_WORKSPACE_DIR:-$dir/workspaces}"
prepare

# A private mount namespace (the host's network stays, so a browser on this
# machine reaches Traefik), where the hosts file is bind-mounted over
# /etc/hosts. Root needs only --mount; anyone else a user namespace too.
ns=(--mount)
if [ "$(id -u)" -ne 0 ]; then
	ns=(--user --map-root-user --mount)
fi
if ! unshare "${ns[@]}" true 2>/dev/null; then
	die "cannot make a private mount namespace (unshare ${ns[*]}): run as root, or enable unprivileged user namespaces"
fi
exec unshare "${ns[@]}" "$BASH" "$0" __inside "$dir"
