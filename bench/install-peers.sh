#!/bin/sh
# Installs the programs bench/ compares mxgate with (nginx, haproxy) and the
# load generator for the overhead measurement (wrk), from Debian's packages.
# Idempotent: installs only what is missing, and updates the package index
# at most once per run.
set -eu

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi

missing=""
for prog in nginx haproxy wrk; do
	if ! command -v "$prog" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$prog" ]; then
		missing="$missing $prog"
	fi
done

if [ -z "$missing" ]; then
	echo "nginx, haproxy and wrk are already installed"
	exit 0
fi

echo "installing:$missing"
$SUDO apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing

# The Debian packages start system services; the bench runs its own copies
# with generated configs, so stop the system ones if they started.
for svc in nginx haproxy; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		$SUDO systemctl stop "$svc" || true
	fi
done
echo "done"
