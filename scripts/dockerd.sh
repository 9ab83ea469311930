#!/usr/bin/env bash
# Runs a private Docker Engine for tests: dockerd inside new pid, mount and
# network namespaces, with its data root, exec root, socket and pid file under
# DIR, so that it shares nothing with an engine the machine may already run.
#
#   scripts/dockerd.sh [--share-net] DIR
#
# Runs in the foreground until it gets SIGTERM or SIGINT, then stops the engine
# (which stops its containers) and exits. While it runs:
#
#   DIR/docker.sock  the engine's API socket (DOCKER_HOST=unix://DIR/docker.sock).
#                    In the engine's mount namespace /var/run is a private
#                    tmpfs and the engine listens on /var/run/docker.sock
#                    too: a container that mounts /var/run/docker.sock, as
#                    the compose examples do, gets this engine, and the
#                    machine's /var/run is left alone.
#   DIR/ns.pid       the pid of a process in the namespaces, as seen from outside:
#                    nsenter --net=/proc/$(cat DIR/ns.pid)/ns/net COMMAND
#                    runs COMMAND where the engine's bridge addresses exist
#   DIR/ready        created once the engine answers on the socket
#   DIR/dockerd.log  the engine's log
#
# The engine's networks exist only inside its network namespace: nothing
# outside can reach a container's address, and containers reach nothing but
# each other (there is no route out). Published ports listen inside that
# namespace too. With --share-net the engine stays in the caller's network
# namespace instead, which must then be one the caller made for it (a test's
# private namespace, as internal/nstest makes): its bridges and published
# ports appear there, beside the caller's own servers. Needs root (or a user
# namespace mapped to root), Debian's docker.io (dockerd, containerd, runc),
# util-linux and iproute2.
#
# The storage driver is vfs (no overlay mounts needed, slow for big images),
# and dockerd leaves iptables alone: the namespace is the isolation.
set -euo pipefail

if [ "${1:-}" = "--inside" ]; then
	# pid 1 of the new pid namespace.
	dir="$2"
	ip link set lo up
	# Mounts made here stay in this mount namespace (unshare makes them private).
	mount -t tmpfs -o mode=0755 tmpfs /var/run
	dockerd \
		--storage-driver=vfs \
		--iptables=false --ip6tables=false \
		--data-root "$dir/root" \
		--exec-root "$dir/exec" \
		--pidfile "$dir/dockerd.pid" \
		-H "unix://$dir/docker.sock" \
		-H unix:///var/run/docker.sock \
		>"$dir/dockerd.log" 2>&1 &
	engine=$!
	trap 'kill -TERM "$engine" 2>/dev/null; wait "$engine"; exit 0' TERM INT
	for _ in $(seq 600); do
		if ! kill -0 "$engine" 2>/dev/null; then
			echo "dockerd.sh: dockerd exited; its log:" >&2
			tail -n 30 "$dir/dockerd.log" >&2
			exit 1
		fi
		if [ -S "$dir/docker.sock" ] && docker -H "unix://$dir/docker.sock" version >/dev/null 2>&1; then
			touch "$dir/ready"
			break
		fi
		sleep 0.1
	done
	if [ ! -e "$dir/ready" ]; then
		echo "dockerd.sh: dockerd did not answer within 60s; its log:" >&2
		tail -n 30 "$dir/dockerd.log" >&2
		kill -TERM "$engine" 2>/dev/null
		exit 1
	fi
	# wait returns early when a trapped signal arrives; the trap then runs.
	wait "$engine"
	exit $?
fi

netns=(--net)
if [ "${1:-}" = "--share-net" ]; then
	netns=()
	shift
fi
if [ $# -ne 1 ]; then
	echo "usage: $0 [--share-net] DIR" >&2
	exit 2
fi
for tool in dockerd docker unshare ip; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "dockerd.sh: $tool not found (apt-get install docker.io iproute2 util-linux)" >&2
		exit 1
	fi
done
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
rm -f "$dir/ready" "$dir/ns.pid"

unshare --pid --fork --kill-child --mount-proc --mount "${netns[@]}" -- bash "$0" --inside "$dir" &
outer=$!
inner=""
stop() {
	if [ -n "$inner" ]; then
		kill -TERM "$inner" 2>/dev/null || true
	else
		kill -TERM "$outer" 2>/dev/null || true
	fi
	wait "$outer" 2>/dev/null || true
	exit 0
}
trap stop TERM INT
for _ in $(seq 100); do
	inner="$(cat "/proc/$outer/task/$outer/children" 2>/dev/null | awk '{print $1}')" || true
	[ -n "$inner" ] && break
	sleep 0.05
done
if [ -z "$inner" ]; then
	echo "dockerd.sh: the namespaces did not start" >&2
	kill -TERM "$outer" 2>/dev/null || true
	exit 1
fi
echo "$inner" >"$dir/ns.pid"
wait "$outer"
