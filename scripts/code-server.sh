#!/usr/bin/env bash
# Installs code-server (VS Code in the browser) from the npm registry and
# caches it outside the checkout. Prints the path of its binary on stdout.
#
# Pinned to 4.100.3: the newest release whose engines field says Node 20
# (later ones need Node 22; 4.96.x pins a git dependency that cannot be
# fetched through the registry alone). Its native modules build from source
# against the machine's Node headers, which needs a C++ toolchain and the
# Kerberos headers; @vscode/ripgrep gets Debian's rg instead of downloading
# one from GitHub. Missing Debian packages are installed with apt-get (as
# root) only when missing.
set -euo pipefail

CODE_SERVER_VERSION="${CODE_SERVER_VERSION:-4.100.3}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/container-director"
dir="$cache/code-server-$CODE_SERVER_VERSION"
bin="$dir/node_modules/.bin/code-server"

die() {
	echo "code-server.sh: $*" >&2
	exit 1
}

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
# One install at a time (the demo and the tests may ask at once); whoever
# waited finds it done.
exec 9>"$cache/code-server.lock"
flock 9
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

command -v node >/dev/null 2>&1 || die "node is not installed (code-server $CODE_SERVER_VERSION needs Node 20)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" = 20 ] || die "code-server $CODE_SERVER_VERSION needs Node 20, this is Node $(node --version)"

# Debian packages the build needs: commands (command:package), then
# libraries with headers.
missing=""
for need in rg:ripgrep g++:g++ make:make python3:python3 pkg-config:pkg-config; do
	command -v "${need%%:*}" >/dev/null 2>&1 || missing="$missing ${need#*:}"
done
for pkg in libkrb5-dev; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
	[ "$(id -u)" -eq 0 ] || die "missing Debian packages:$missing (run as root, or apt-get install them first)"
	echo "code-server.sh: installing Debian packages:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

echo "code-server.sh: installing code-server $CODE_SERVER_VERSION from the npm registry into $dir (a few minutes the first time)" >&2
began=$SECONDS
work="$(mktemp -d "$cache/code-server-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tmp" "$work/pkg"

# @vscode/ripgrep 1.15.11 looks for its archive in
# $TMPDIR/vscode-ripgrep-cache-1.15.11 before it tries GitHub.
rg_cache="$work/tmp/vscode-ripgrep-cache-1.15.11"
mkdir -p "$rg_cache" "$work/rg"
cp "$(command -v rg)" "$work/rg/rg"
tar -C "$work/rg" -czf "$rg_cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" rg

echo '{"name":"container-director-code-server","private":true}' >"$work/pkg/package.json"
(
	cd "$work/pkg"
	# unsafe-perm: as root, npm would otherwise run the install scripts as
	# nobody, who cannot write here. nodedir: the machine's Node headers,
	# not a download.
	TMPDIR="$work/tmp" \
		npm_config_unsafe_perm=true \
		npm_config_yes=true \
		npm_config_nodedir="${npm_config_nodedir:-/usr}" \
		npm_config_update_notifier=false \
		npm_config_fund=false \
		npm_config_audit=false \
		npm install --no-save --loglevel=error "code-server@$CODE_SERVER_VERSION" >&2
)
[ -x "$work/pkg/node_modules/.bin/code-server" ] || die "npm install left no node_modules/.bin/code-server"
got="$(node -p 'require(process.argv[1]).version' "$work/pkg/node_modules/code-server/package.json")"
[ "$got" = "$CODE_SERVER_VERSION" ] || die "npm installed code-server $got, want $CODE_SERVER_VERSION"
rm -rf "$dir"
mv "$work/pkg" "$dir"
echo "code-server.sh: installed code-server $CODE_SERVER_VERSION in $((SECONDS - began)) s" >&2
echo "$bin"
