#!/usr/bin/env bash
# drover's libvirt lab: N real libvirt hosts (2 by default, up to 4) on one machine, for tests and benchmarks.
#
# Each host is a monolithic libvirtd in its own mount + UTS + network namespace. /etc, /var and /run are
# overlay mounts inside that namespace whose upper layers live under $LAB_DIR, so nothing is written outside
# it. The hosts are joined through a bridge in a separate "switch" namespace (10.77.0.<n>/24); cutting a
# host's link is one `ip link set down` there. Clients reach each daemon through its unix socket:
#   qemu+unix:///system?socket=$LAB_DIR/hosts/lab<n>/sock/libvirt-sock
# The guest (test/lab/guest/) is a multiboot kernel built here with gcc; guests boot it via <kernel>.
# Shared storage: $LAB/shared is bind-mounted into every host at /var/lib/libvirt/shared (one directory all
# hosts see, as an NFS export would be); everything else under /var (e.g. /var/lib/libvirt/images) is the
# host's own.
#
# usage: lab.sh up | down | status | uri HOST | hosts | remove HOST
#        (`up` with a LAB_HOSTS other than the running count adds the missing hosts or removes the extra ones)
#        lab.sh own-cpu on|off   each host reports only its own guests' CPU (default: the whole machine's)
#        lab.sh daemon-stop HOST | daemon-start HOST | daemon-kill HOST | daemon-pause HOST | daemon-resume HOST
#        lab.sh link-down HOST | link-up HOST
#        lab.sh reset-migration HOST         reset the incoming migration streams on HOST (TCP RST both ways)
#        lab.sh tls-on HOST CERT_DIR   restart HOST's daemon also listening for TLS on 16514 (inside its
#                                      namespace) with CERT_DIR/{cacert,servercert,serverkey}.pem, and expose
#                                      that port as the unix socket $LAB_DIR/hosts/HOST/tls-forward.sock
# env:   LAB_DIR (default <repo>/.lab)   LAB_HOSTS (2..4, default 2; read by `up`)
# Needs root, libvirt-daemon(+driver-qemu), libvirt-clients, qemu-system-x86, gcc, binutils, iproute2,
# util-linux (scripts/setup.sh --lab installs them).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=${LAB_DIR:-$REPO/.lab}
mkdir -p "$LAB"
LAB=$(cd "$LAB" && pwd)
case "$LAB/" in /etc/* | /var/* | /run/*) echo "lab.sh: LAB_DIR must not be under /etc, /var or /run" >&2; exit 2 ;; esac

say() { printf 'lab: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
# true when $1 is a live pid whose command line contains $2
pid_runs() { [ -n "${1:-}" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"; }
read_pid() { [ -f "$1" ] && cat "$1" || true; }

hosts_list() { [ -f "$LAB/hosts.list" ] && cat "$LAB/hosts.list" || true; }
host_index() { echo "${1#lab}"; }
host_dir() { echo "$LAB/hosts/$1"; }
sock_of() { echo "$(host_dir "$1")/sock/libvirt-sock"; }
uri_of() { echo "qemu+unix:///system?socket=$(sock_of "$1")"; }
holder_of() { read_pid "$(host_dir "$1")/holder.pid"; }
known_host() { hosts_list | grep -qx -- "$1" || die "unknown lab host '$1' (lab hosts: $(hosts_list | tr '\n' ' '))"; }

build_guest() {
  local src=$REPO/test/lab/guest out=$LAB/guest
  mkdir -p "$out"
  if [ -f "$out/guest.elf" ] && [ "$out/guest.elf" -nt "$src/guest.c" ] && [ "$out/guest.elf" -nt "$src/entry.S" ] &&
    [ "$out/guest.elf" -nt "$src/guest.ld" ]; then
    return 0
  fi
  gcc -m32 -c "$src/entry.S" -o "$out/entry.o"
  gcc -m32 -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
    -nostdlib -Wall -Wextra -c "$src/guest.c" -o "$out/guest.o"
  ld -m elf_i386 -z max-page-size=0x1000 --no-warn-rwx-segments -T "$src/guest.ld" -o "$out/guest.elf" \
    "$out/entry.o" "$out/guest.o" 2>/dev/null ||
    ld -m elf_i386 -z max-page-size=0x1000 -T "$src/guest.ld" -o "$out/guest.elf" "$out/entry.o" "$out/guest.o"
  rm -f "$out/entry.o" "$out/guest.o"
  say "guest kernel built: $out/guest.elf"
}

# A process holding fresh namespaces; prints its pid once it really is inside them.
new_holder() { # new_holder PIDFILE UNSHARE-FLAGS...
  local pidfile=$1 pid
  shift
  unshare "$@" --propagation private sleep infinity </dev/null >/dev/null 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  for _ in $(seq 200); do
    if [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ] &&
      pid_runs "$pid" '^sleep infinity'; then
      return 0
    fi
    sleep 0.02
  done
  die "namespace holder $pid did not come up"
}

switch_up() {
  local sw=$LAB/switch
  mkdir -p "$sw"
  if pid_runs "$(read_pid "$sw/holder.pid")" '^sleep infinity'; then return 0; fi
  new_holder "$sw/holder.pid" --net
  nsenter -t "$(cat "$sw/holder.pid")" -n sh -ec 'ip link set lo up; ip link add br0 type bridge; ip link set br0 up'
}

write_host_files() { # write_host_files HOST
  local h=$1 n dir etc
  n=$(host_index "$h")
  dir=$(host_dir "$h")
  etc=$dir/ovl/etc/upper
  mkdir -p "$dir"/{sock,log,tls} "$dir"/ovl/{etc,var,run}/{upper,work} "$etc/libvirt"
  cp /etc/passwd /etc/group /etc/hosts "$etc/"
  # Debian's libvirtd refuses to start its QEMU driver without a libvirt-qemu user, even running as root.
  grep -q '^libvirt-qemu:' "$etc/group" || echo 'libvirt-qemu:x:64055:' >>"$etc/group"
  grep -q '^kvm:' "$etc/group" || echo 'kvm:x:64056:' >>"$etc/group"
  grep -q '^libvirt-qemu:' "$etc/passwd" ||
    echo 'libvirt-qemu:x:64055:64055:libvirt qemu:/var/lib/libvirt:/usr/sbin/nologin' >>"$etc/passwd"
  for i in 1 2 3 4; do echo "10.77.0.$i lab$i" >>"$etc/hosts"; done
  echo "$h" >"$etc/hostname"
  cat >"$dir/libvirtd.conf" <<EOF
unix_sock_dir = "$dir/sock"
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
log_outputs = "3:file:$dir/log/libvirtd.log"
keepalive_interval = 5
keepalive_count = 5
EOF
  cat >"$etc/libvirt/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_address = "10.77.0.$n"
migration_host = "10.77.0.$n"
migration_port_min = 49152
migration_port_max = 49215
EOF
}

daemon_start() { # daemon_start HOST  (namespaces must exist)
  local h=$1 dir holder t pid args=()
  dir=$(host_dir "$h")
  holder=$(holder_of "$h")
  pid_runs "$holder" '^sleep infinity' || die "$h has no namespaces (run: lab.sh up)"
  if pid_runs "$(read_pid "$dir/libvirtd.pid")" libvirtd; then return 0; fi
  [ -f "$dir/tls.conf" ] && args=(--listen)
  cat "$dir/libvirtd.conf" >"$dir/libvirtd.effective.conf"
  [ -f "$dir/tls.conf" ] && cat "$dir/tls.conf" >>"$dir/libvirtd.effective.conf"
  rm -f "$dir/sock/libvirt-sock"
  t=$(now_ms)
  nsenter -t "$holder" -m -u -n libvirtd "${args[@]}" -f "$dir/libvirtd.effective.conf" -p /run/libvirtd.pid \
    </dev/null >>"$dir/log/libvirtd.stdout" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/libvirtd.pid"
  for _ in $(seq 1200); do
    virsh -c "$(uri_of "$h")" version >/dev/null 2>&1 && break
    pid_runs "$pid" libvirtd || die "libvirtd of $h exited; see $dir/log/libvirtd.log"
    sleep 0.05
  done
  virsh -c "$(uri_of "$h")" version >/dev/null 2>&1 || die "libvirtd of $h does not answer"
  say "$h: libvirtd pid $pid ready in $(($(now_ms) - t)) ms"
  if [ ! -d "$LAB/cache/qemu-capabilities" ] && [ -d "$dir/ovl/var/upper/cache/libvirt/qemu/capabilities" ]; then
    mkdir -p "$LAB/cache"
    cp -r "$dir/ovl/var/upper/cache/libvirt/qemu/capabilities" "$LAB/cache/qemu-capabilities"
  fi
}

daemon_stop() { # daemon_stop HOST [SIGNAL]  stops only the libvirtd this lab started (guests keep running)
  local h=$1 sig=${2:-TERM} dir pid
  dir=$(host_dir "$h")
  pid=$(read_pid "$dir/libvirtd.pid")
  if pid_runs "$pid" libvirtd; then
    kill -CONT "$pid" 2>/dev/null || true
    kill "-$sig" "$pid"
    for _ in $(seq 200); do pid_runs "$pid" libvirtd || break; sleep 0.05; done
    pid_runs "$pid" libvirtd && kill -KILL "$pid"
  fi
  rm -f "$dir/libvirtd.pid"
}

forwarder_stop() {
  local dir pid
  dir=$(host_dir "$1")
  pid=$(read_pid "$dir/tls-forward.pid")
  if pid_runs "$pid" tls-forward; then kill "$pid"; fi
  rm -f "$dir/tls-forward.pid" "$dir/tls-forward.sock"
}

SHARED_MOUNT=/var/lib/libvirt/shared

shared_mount() { # shared_mount HOST  bind-mounts $LAB/shared at $SHARED_MOUNT inside HOST (idempotent)
  local holder
  holder=$(holder_of "$1")
  mkdir -p "$LAB/shared"
  nsenter -t "$holder" -m sh -ec "
    mkdir -p $SHARED_MOUNT
    mountpoint -q $SHARED_MOUNT || mount -n --bind '$LAB/shared' $SHARED_MOUNT"
}

host_up() { # host_up HOST
  local h=$1 n dir holder sw
  n=$(host_index "$h")
  dir=$(host_dir "$h")
  if pid_runs "$(holder_of "$h")" '^sleep infinity'; then
    shared_mount "$h"
    daemon_start "$h"
    return 0
  fi
  rm -rf "$dir"
  write_host_files "$h"
  if [ -d "$LAB/cache/qemu-capabilities" ]; then
    mkdir -p "$dir/ovl/var/upper/cache/libvirt/qemu"
    cp -r "$LAB/cache/qemu-capabilities" "$dir/ovl/var/upper/cache/libvirt/qemu/capabilities"
  fi
  new_holder "$dir/holder.pid" --mount --uts --net
  holder=$(cat "$dir/holder.pid")
  nsenter -t "$holder" -m -u -n sh -ec "
    for d in etc var run; do
      mount -n -t overlay overlay -o lowerdir=/\$d,upperdir=$dir/ovl/\$d/upper,workdir=$dir/ovl/\$d/work /\$d
    done
    hostname $h
    ip link set lo up"
  sw=$(cat "$LAB/switch/holder.pid")
  ip link add "eth0-$h" netns "$holder" type veth peer name "port-$h" netns "$sw"
  nsenter -t "$holder" -n sh -ec "ip link set eth0-$h name eth0; ip addr add 10.77.0.$n/24 dev eth0; ip link set eth0 up"
  nsenter -t "$sw" -n sh -ec "ip link set port-$h master br0; ip link set port-$h up"
  shared_mount "$h"
  daemon_start "$h"
}

# Own CPU: by default every lab host reports this whole machine's CPU (its /proc/stat), so on a busy machine
# every host looks full. `own-cpu on` gives each host a /proc/stat of its own, counting only the CPU time of
# the QEMU processes its daemon started (as a separate machine would), rewritten every second.
own_cpu_loop() { # own_cpu_loop HOST  (runs until killed)
  local h=$1 dir file hz ncpu start now busy=0 idle elapsed f pid ticks line
  dir=$(host_dir "$h")
  file=$dir/proc-stat
  hz=$(getconf CLK_TCK)
  ncpu=$(nproc)
  start=$(now_ms)
  declare -A prev=()
  exec 3<>"$file"
  while :; do
    for f in "$dir"/ovl/run/upper/libvirt/qemu/*.pid; do
      [ -f "$f" ] || continue
      pid=$(cat "$f" 2>/dev/null) || continue
      line=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
      line=${line##*) }                                   # fields after "(comm) "
      read -r _ _ _ _ _ _ _ _ _ _ _ utime stime _ <<<"$line"
      ticks=$((utime + stime))
      [ -n "${prev[$pid]:-}" ] && [ "$ticks" -ge "${prev[$pid]}" ] && busy=$((busy + ticks - prev[$pid]))
      prev[$pid]=$ticks
    done
    now=$(now_ms)
    elapsed=$(((now - start) * hz / 1000 * ncpu))
    idle=$((elapsed > busy ? elapsed - busy : 0))
    # fixed width, written in place over the same bytes: a reader never sees an empty or short file
    printf 'cpu  %020d 0 0 %020d 0 0 0 0 0 0\n' "$busy" "$idle" >&3
    exec 3<>"$file"
    sleep 1
  done
}

own_cpu_on() { # own_cpu_on HOST
  local h=$1 dir holder
  dir=$(host_dir "$h")
  holder=$(holder_of "$h")
  pid_runs "$(read_pid "$dir/own-cpu.pid")" own-cpu && return 0
  printf 'cpu  %020d 0 0 %020d 0 0 0 0 0 0\n' 0 0 >"$dir/proc-stat"
  bash "${BASH_SOURCE[0]}" own-cpu-loop "$h" </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/own-cpu.pid"
  nsenter -t "$holder" -m sh -ec "mountpoint -q /proc/stat || mount -n --bind '$dir/proc-stat' /proc/stat"
}

own_cpu_off() { # own_cpu_off HOST
  local h=$1 dir holder pid
  dir=$(host_dir "$h")
  holder=$(holder_of "$h")
  pid=$(read_pid "$dir/own-cpu.pid")
  if pid_runs "$pid" own-cpu; then kill "$pid"; fi
  rm -f "$dir/own-cpu.pid"
  if pid_runs "$holder" '^sleep infinity'; then
    nsenter -t "$holder" -m sh -ec 'if mountpoint -q /proc/stat; then umount -n /proc/stat; fi'
  fi
}

host_down() { # host_down HOST
  local h=$1 dir pid f name
  dir=$(host_dir "$h")
  [ -d "$dir" ] || return 0
  forwarder_stop "$h"
  own_cpu_off "$h"
  if pid_runs "$(read_pid "$dir/libvirtd.pid")" libvirtd; then
    for name in $(virsh -q -c "$(uri_of "$h")" list --name 2>/dev/null); do
      virsh -q -c "$(uri_of "$h")" destroy "$name" >/dev/null 2>&1 || true
    done
  fi
  daemon_stop "$h"
  # QEMU processes this host's daemon started (their pid files are in this lab's overlay of /run)
  for f in "$dir"/ovl/run/upper/libvirt/qemu/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if pid_runs "$pid" qemu-system; then kill -TERM "$pid"; fi
  done
  pid=$(holder_of "$h")
  if pid_runs "$pid" '^sleep infinity'; then kill "$pid"; fi
  rm -f "$dir/holder.pid"
}

cmd_up() {
  local count=${LAB_HOSTS:-2} t i
  [[ "$count" =~ ^[2-4]$ ]] || die "LAB_HOSTS must be 2, 3 or 4 (got '$count')"
  [ "$(id -u)" = 0 ] || die "the lab needs root (namespaces, overlay mounts)"
  t=$(now_ms)
  # More hosts than are up: the new ones join the running lab. Fewer: the hosts past $count leave it.
  for h in $(hosts_list | sed "1,${count}d"); do cmd_remove "$h"; done
  : >"$LAB/hosts.list.new"
  for i in $(seq "$count"); do echo "lab$i" >>"$LAB/hosts.list.new"; done
  mv "$LAB/hosts.list.new" "$LAB/hosts.list"
  mkdir -p "$LAB/run"
  build_guest
  switch_up
  for h in $(hosts_list); do host_up "$h"; done
  say "up: $count hosts in $(($(now_ms) - t)) ms (LAB_DIR=$LAB)"
}

cmd_down() {
  local h pid
  for h in $(hosts_list); do host_down "$h"; done
  pid=$(read_pid "$LAB/switch/holder.pid")
  if pid_runs "$pid" '^sleep infinity'; then kill "$pid"; fi
  rm -f "$LAB/switch/holder.pid" "$LAB/hosts.list"
  say "down"
}

cmd_remove() { # cmd_remove HOST  takes one host down (its guests destroyed) and out of the lab
  local h=$1
  host_down "$h"
  hosts_list | grep -vx -- "$h" >"$LAB/hosts.list.new" || true
  mv "$LAB/hosts.list.new" "$LAB/hosts.list"
  say "$h removed"
}

cmd_status() {
  local h dir state
  [ -n "$(hosts_list)" ] || { echo "lab is down (LAB_DIR=$LAB)"; return 0; }
  for h in $(hosts_list); do
    dir=$(host_dir "$h")
    if pid_runs "$(read_pid "$dir/libvirtd.pid")" libvirtd; then state="libvirtd $(cat "$dir/libvirtd.pid")"; else state="libvirtd stopped"; fi
    printf '%s\t10.77.0.%s\t%s\t%s\n' "$h" "$(host_index "$h")" "$state" "$(uri_of "$h")"
  done
}

cmd_tls_on() { # cmd_tls_on HOST CERT_DIR
  local h=$1 certs dir holder
  certs=$(cd "$2" && pwd)
  dir=$(host_dir "$h")
  for f in cacert.pem servercert.pem serverkey.pem; do [ -f "$certs/$f" ] || die "missing $certs/$f"; done
  cat >"$dir/tls.conf" <<EOF
listen_tls = 1
listen_tcp = 0
listen_addr = "127.0.0.1"
tls_port = "16514"
auth_tls = "none"
key_file = "$certs/serverkey.pem"
cert_file = "$certs/servercert.pem"
ca_file = "$certs/cacert.pem"
EOF
  daemon_stop "$h"
  daemon_start "$h"
  forwarder_stop "$h"
  holder=$(holder_of "$h")
  # a unix socket outside the namespace that reaches 127.0.0.1:16514 inside it
  nsenter -t "$holder" -n --wd="$REPO" node --import tsx "$REPO/test/lab/tls-forward.ts" "$dir/tls-forward.sock" 16514 \
    </dev/null >>"$dir/log/tls-forward.log" 2>&1 &
  echo $! >"$dir/tls-forward.pid"
  for _ in $(seq 100); do [ -S "$dir/tls-forward.sock" ] && break; sleep 0.05; done
  [ -S "$dir/tls-forward.sock" ] || die "tls forwarder of $h did not start; see $dir/log/tls-forward.log"
  say "$h: TLS on 127.0.0.1:16514 in its namespace, reachable through $dir/tls-forward.sock"
}

cmd_tls_off() {
  local h=$1
  forwarder_stop "$h"
  rm -f "$(host_dir "$h")/tls.conf"
  daemon_stop "$h"
  daemon_start "$h"
}

action=${1:-status}
shift || true
case "$action" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  hosts) hosts_list ;;
  uri) known_host "$1"; uri_of "$1" ;;
  remove) known_host "$1"; cmd_remove "$1" ;;
  own-cpu)
    case "${1:-}" in
      on) for h in $(hosts_list); do own_cpu_on "$h"; done ;;
      off) for h in $(hosts_list); do own_cpu_off "$h"; done ;;
      *) die "usage: lab.sh own-cpu on|off" ;;
    esac ;;
  own-cpu-loop) own_cpu_loop "$1" ;;
  daemon-stop) known_host "$1"; daemon_stop "$1" ;;
  daemon-kill) known_host "$1"; daemon_stop "$1" KILL ;;
  daemon-start) known_host "$1"; daemon_start "$1" ;;
  daemon-pause) known_host "$1"; pid=$(read_pid "$(host_dir "$1")/libvirtd.pid"); pid_runs "$pid" libvirtd && kill -STOP "$pid" ;;
  daemon-resume) known_host "$1"; pid=$(read_pid "$(host_dir "$1")/libvirtd.pid"); pid_runs "$pid" libvirtd && kill -CONT "$pid" ;;
  link-down) known_host "$1"; nsenter -t "$(read_pid "$LAB/switch/holder.pid")" -n ip link set "port-$1" down ;;
  link-up) known_host "$1"; nsenter -t "$(read_pid "$LAB/switch/holder.pid")" -n ip link set "port-$1" up ;;
  # resets the incoming migration streams on HOST (QEMU listens on 49152-49215): both ends see them break now
  reset-migration) known_host "$1"; nsenter -t "$(holder_of "$1")" -n ss -K state established '( sport >= :49152 and sport <= :49215 )' ;;
  tls-on) known_host "$1"; cmd_tls_on "$1" "$2" ;;
  tls-off) known_host "$1"; cmd_tls_off "$1" ;;
  *) echo "usage: lab.sh up|down|status|hosts|uri H|remove H|daemon-stop H|daemon-kill H|daemon-start H|link-down H|link-up H|reset-migration H|tls-on H DIR|tls-off H" >&2; exit 2 ;;
esac
