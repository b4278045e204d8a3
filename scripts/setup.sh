#!/usr/bin/env bash
# Set-up shared by `make demo` and `make test`: Node dependencies and the Debian packages drover's runs need.
#   scripts/setup.sh            npm dependencies + redis-server, redis-sentinel
#   scripts/setup.sh --lab      also the libvirt lab's packages (libvirt daemon, QEMU, compiler for the guest)
set -euo pipefail
cd "$(dirname "$0")/.."

want_lab=0
[ "${1:-}" = "--lab" ] && want_lab=1

say() { printf 'drover setup: %s\n' "$*" >&2; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund >/dev/null
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Tests of drover on Redis Sentinel start their own sentinels.
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
if [ "$want_lab" = 1 ]; then
  command -v libvirtd >/dev/null 2>&1 || missing+=(libvirt-daemon libvirt-daemon-driver-qemu)
  command -v virsh >/dev/null 2>&1 || missing+=(libvirt-clients)
  command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
  command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  command -v ld >/dev/null 2>&1 || missing+=(binutils)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  command -v certtool >/dev/null 2>&1 || missing+=(gnutls-bin)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing: ${missing[*]} — install them with your distribution's package manager (or set REDIS_URL for Redis)"
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
      say "missing: ${missing[*]} — run as root or install them: apt-get install ${missing[*]}"
      exit 1
    fi
  else SUDO=; fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    say "could not install ${missing[*]} with apt-get; install them by hand (or set REDIS_URL for Redis)"
    exit 1
  fi
fi
