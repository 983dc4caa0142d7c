#!/usr/bin/env bash
# linklab.sh - a lab of real links: K hosts on one bridge, each uplink capped with tbf.
# (tests/linklab.rs drives it; the NAT lab next door is tests/natlab/natlab.sh.)
#
# Topology (all addresses exist ONLY inside the namespaces this script creates):
#
#        hub: bridge br0 (no address), one port hN per host
#         |            |                  |
#     h1 10.210.0.1   h2 10.210.0.2 ...  hK 10.210.0.K        (eth0 in each host, /24)
#
# Each host's eth0 (the host side of its veth) gets `tc qdisc ... tbf rate RATE`: that caps
# what the host SENDS (its uplink). Its downlink is left free, as on a home line whose
# bottleneck is the upload: a host receiving from several hosts at once gets the sum of
# their uplinks. The kernel here has tbf but no netem: no delay or loss emulation.
#
# Usage:
#   linklab.sh up K [RATE]       build K hosts (1..200), uplinks capped at RATE (tc units,
#                                e.g. 40mbit; 'off' or none: uncapped). Rebuilt if up.
#   linklab.sh down              kill processes inside the lab's namespaces, delete them
#   linklab.sh exec HOST cmd...  run cmd inside HOST (h1..hK, or hub)
#   linklab.sh shape HOST RATE   cap HOST's uplink at RATE ('off': uncapped)
#   linklab.sh ip HOST           print HOST's address
#   linklab.sh tx HOST           bytes HOST has sent on its uplink so far
#   linklab.sh status            namespaces, addresses, qdiscs
#
# Env: LINKLAB_PREFIX (default "ll"): namespaces are PREFIX-hub and PREFIX-h1..PREFIX-hK, so
# labs with different prefixes never collide (tests use linklab<pid>-<n>).
set -Eeuo pipefail

P="${LINKLAB_PREFIX:-ll}"
NET=10.210.0

die() { echo "linklab: $*" >&2; exit 1; }
ns() { echo "$P-$1"; }
nsx() { local h="$1"; shift; ip netns exec "$(ns "$h")" "$@"; }
have_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }
# This lab's namespaces, hub last.
lab_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$P-h[0-9]+\$" | sort -V || true
  have_ns "$(ns hub)" && ns hub || true
}

need_root_tools() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  command -v ip >/dev/null || die "iproute2 (ip) missing"
  command -v tc >/dev/null || die "tc (iproute2) missing"
}

valid_host() {
  case "$1" in hub) ;; h[0-9]*) ;; *) die "unknown host '$1' (h1..hK, hub)";; esac
  have_ns "$(ns "$1")" || die "no host '$1' in lab '$P' (run: linklab.sh up K RATE)"
}

cmd_down() {
  local n pids
  for n in $(lab_namespaces); do
    # End only processes living inside this lab's own namespaces, by pid.
    pids="$(ip netns pids "$n" 2>/dev/null || true)"
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill $pids 2>/dev/null || true
      sleep 0.3
      pids="$(ip netns pids "$n" 2>/dev/null || true)"
      # shellcheck disable=SC2086
      [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    fi
    ip netns del "$n" 2>/dev/null || true
  done
  # veth pairs die with their namespaces; nothing is ever created in the root namespace.
  echo "linklab: down"
}

base_ns() {  # host
  local n; n="$(ns "$1")"
  ip netns add "$n"
  ip -n "$n" link set lo up
  nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  nsx "$1" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
}

cmd_shape() {  # HOST RATE|off
  local h="$1" rate="$2"
  [ "$h" != hub ] || die "the hub has no uplink"
  valid_host "$h"
  nsx "$h" tc qdisc del dev eth0 root 2>/dev/null || true
  [ "$rate" = off ] && return 0
  # burst: a few ms at 40mbit and at least one 64 KiB GSO segment's worth; latency bounds
  # the queue (and so the round trip a full uplink adds) at 50 ms.
  nsx "$h" tc qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 50ms
}

cmd_up() {
  need_root_tools
  local k="${1:-}" rate="${2:-off}"
  [[ "$k" =~ ^[0-9]+$ ]] && [ "$k" -ge 1 ] && [ "$k" -le 200 ] || die "up K [RATE]: K in 1..200"
  cmd_down >/dev/null
  trap 'echo "linklab: up failed, cleaning up" >&2; cmd_down >/dev/null' ERR

  base_ns hub
  ip -n "$(ns hub)" link add br0 type bridge
  ip -n "$(ns hub)" link set br0 up
  local i h
  for i in $(seq 1 "$k"); do
    h="h$i"
    base_ns "$h"
    # The veth pair is created directly inside the namespaces (never in the root one).
    ip link add "$h" netns "$(ns hub)" type veth peer name eth0 netns "$(ns "$h")"
    ip -n "$(ns hub)" link set "$h" master br0
    ip -n "$(ns hub)" link set "$h" up
    ip -n "$(ns "$h")" addr add "$NET.$i/24" dev eth0
    ip -n "$(ns "$h")" link set eth0 up
    cmd_shape "$h" "$rate"
  done
  trap - ERR
  echo "linklab: up ($k hosts, uplinks $rate, prefix $P)"
}

cmd_status() {
  local n
  for n in $(lab_namespaces); do
    echo "== $n"
    ip -n "$n" -br -4 addr | grep -v '^lo' || true
    ip netns exec "$n" tc qdisc show | grep -v 'noqueue' | sed 's/^/   /' || true
  done
}

cmd_exec() {
  [ $# -ge 2 ] || die "usage: linklab.sh exec HOST cmd..."
  local h="$1"; shift
  valid_host "$h"
  exec ip netns exec "$(ns "$h")" "$@"
}

cmd_ip() {
  local h="$1"
  [[ "$h" =~ ^h([0-9]+)$ ]] || die "unknown host '$h'"
  echo "$NET.${BASH_REMATCH[1]}"
}

cmd_tx() {
  valid_host "$1"
  nsx "$1" cat /sys/class/net/eth0/statistics/tx_bytes
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  exec) shift; cmd_exec "$@" ;;
  shape) shift; [ $# -eq 2 ] || die "usage: linklab.sh shape HOST RATE|off"; cmd_shape "$@" ;;
  ip) shift; [ $# -eq 1 ] || die "usage: linklab.sh ip HOST"; cmd_ip "$1" ;;
  tx) shift; [ $# -eq 1 ] || die "usage: linklab.sh tx HOST"; cmd_tx "$1" ;;
  status) cmd_status ;;
  *) awk 'NR>1 && /^set -/{exit} NR>1{sub(/^# ?/,""); print}' "$0"; exit 2 ;;
esac
