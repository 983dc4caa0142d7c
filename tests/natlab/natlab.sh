#!/usr/bin/env bash
# (chord-p2p keeps this copy of the team NAT lab, ../shared/natlab, so tests/natlab.rs runs
# on a clean clone; the self-test command needs natlab_test.py, which is not copied.)
# natlab.sh - tiny NAT lab built from Linux network namespaces + veth + nftables.
#
# Topology (all addresses exist ONLY inside the namespaces this script creates):
#
#                       "internet" L2 segment 10.200.0.0/24 (bridge br0 in ns pub)
#      pub  10.200.0.1 (relay / bootstrap)      pub2 10.200.0.2 (2nd public peer)
#                |                                     |
#        nat1 wan 10.200.0.11                  nat2 wan 10.200.0.12
#        nat1 lan 192.168.1.1                  nat2 lan 192.168.2.1
#                |                                     |
#        home1 192.168.1.2                     home2 192.168.2.2
#
# Each natN router does source NAT (masquerade) of its LAN out of its WAN port and
# behaves like a home router firewall: unsolicited inbound traffic is dropped
# silently (no ICMP, and - importantly - no conntrack entry is created, see notes).
#
# NAT behaviour per router is chosen with NAT1_TYPE / NAT2_TYPE:
#   eim      endpoint-independent mapping (Linux port preservation), address+port
#            dependent filtering  => "port-restricted cone". Hole punching works.  (default)
#   sym      endpoint-dependent mapping (masquerade fully-random) => "symmetric".
#            Hole punching between two NATed hosts fails unless the other side is
#            fullcone/public; relayed connections still work.
#   fullcone eim + all unsolicited inbound TCP/UDP (ports 1024-65535) forwarded to the
#            home host (DMZ / "port forwarding everything"), i.e. the host is publicly
#            dialable at the router's WAN address.
#
# Usage:
#   natlab.sh up                 build the lab (idempotent: no-op if already up with
#                                the same NAT types, rebuilt otherwise)
#   natlab.sh down               kill processes inside the lab namespaces, delete them
#   natlab.sh exec HOST cmd...   run cmd inside HOST (pub|pub2|nat1|nat2|home1|home2)
#   natlab.sh status             show namespaces, addresses, NAT rules, conntrack
#   natlab.sh env                print shell variables (PUB_IP=... ) for scripts
#   natlab.sh test               reachability + UDP/TCP hole-punch self test
#   natlab.sh shape HOST RATE    rate-limit HOST's uplink with tbf (e.g. 2mbit; 'off')
#
# Env: NATLAB_PREFIX (default "nl"), NAT1_TYPE, NAT2_TYPE (eim|sym|fullcone),
#      NATLAB_IPV6=1 to keep IPv6 enabled (default: disabled in the lab for determinism)
#      NATLAB_NAIVE=1: routers do NOT drop unsolicited WAN input (Linux default). Then a
#      punch packet that reaches the other router before that router's own outbound
#      packet leaves creates an UNREPLIED conntrack entry there (and an ICMP/RST
#      reply), so the later outbound packet gets a different source port: punching
#      becomes a race that mostly fails (libp2p DCUtR failed 8/8 runs here, QUIC
#      and TCP). Useful only to reproduce "works on real routers, fails in my lab".
#
# See also p2p_test.sh (real rust-libp2p relay v2 + DCUtR run in this lab).
set -Eeuo pipefail

P="${NATLAB_PREFIX:-nl}"
NAT1_TYPE="${NAT1_TYPE:-eim}"
NAT2_TYPE="${NAT2_TYPE:-eim}"
STATE_DIR="/run/natlab-$P"
HOSTS=(pub pub2 nat1 nat2 home1 home2)

PUB_IP=10.200.0.1
PUB2_IP=10.200.0.2
NAT1_WAN=10.200.0.11
NAT2_WAN=10.200.0.12
NAT1_LAN=192.168.1.1
NAT2_LAN=192.168.2.1
HOME1_IP=192.168.1.2
HOME2_IP=192.168.2.2

die() { echo "natlab: $*" >&2; exit 1; }
ns() { echo "$P-$1"; }
nsx() { local h="$1"; shift; ip netns exec "$(ns "$h")" "$@"; }
have_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

need_root_tools() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  command -v ip >/dev/null || die "iproute2 (ip) missing"
  command -v nft >/dev/null || command -v iptables >/dev/null ||
    die "need nftables or iptables: apt-get install -y nftables iptables"
}

valid_type() { case "$1" in eim|sym|fullcone) ;; *) die "bad NAT type '$1' (eim|sym|fullcone)";; esac; }

lab_is_up() {
  [ -f "$STATE_DIR/state" ] || return 1
  local h; for h in "${HOSTS[@]}"; do have_ns "$(ns "$h")" || return 1; done
  return 0
}

cmd_down() {
  local h n pids
  for h in "${HOSTS[@]}"; do
    n="$(ns "$h")"
    have_ns "$n" || continue
    # End only processes living inside our own lab namespaces, by pid.
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
  # veth peers die with their namespace; nothing is ever created in the root ns.
  rm -rf "$STATE_DIR"
  echo "natlab: down"
}

base_ns() {  # name
  local n; n="$(ns "$1")"
  ip netns add "$n"
  ip -n "$n" link set lo up
  if [ "${NATLAB_IPV6:-0}" != 1 ]; then
    nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    nsx "$1" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  fi
}

# veth pair created directly inside namespaces (never visible in the root ns).
mkveth() {  # hostA ifA hostB ifB
  ip link add "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns "$3")"
  ip -n "$(ns "$1")" link set "$2" up
  ip -n "$(ns "$3")" link set "$4" up
}

nat_rules_nft() {  # router lan_if wan_if home_ip type
  local r="$1" lan="$2" wan="$3" home="$4" type="$5" masq="masquerade" dnat="" drop="drop"
  [ "$type" = sym ] && masq="masquerade fully-random"
  [ "${NATLAB_NAIVE:-0}" = 1 ] && drop="accept"
  if [ "$type" = fullcone ]; then
    dnat="iifname \"$wan\" meta l4proto { tcp, udp } th dport 1024-65535 dnat ip to $home"
  fi
  nsx "$r" nft -f - <<EOF
table ip natlab {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    $dnat
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "$wan" $masq
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "$wan" ct state established,related accept
    iifname "$wan" icmp type echo-request accept
    # Silent drop of unsolicited WAN traffic. Dropping here (before conntrack
    # confirmation) also means no stale conntrack entry is left behind that would
    # steal the mapping of a later outbound hole-punch packet.
    iifname "$wan" $drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "$lan" oifname "$wan" accept
    iifname "$wan" oifname "$lan" ct state established,related accept
    iifname "$wan" oifname "$lan" ct status dnat accept
  }
}
EOF
}

nat_rules_ipt() {  # fallback when nft is absent
  local r="$1" lan="$2" wan="$3" home="$4" type="$5" rnd=()
  [ "$type" = sym ] && rnd=(--random-fully)
  nsx "$r" iptables -t nat -A POSTROUTING -o "$wan" -j MASQUERADE "${rnd[@]}"
  if [ "$type" = fullcone ]; then
    nsx "$r" iptables -t nat -A PREROUTING -i "$wan" -p udp --dport 1024:65535 -j DNAT --to-destination "$home"
    nsx "$r" iptables -t nat -A PREROUTING -i "$wan" -p tcp --dport 1024:65535 -j DNAT --to-destination "$home"
  fi
  nsx "$r" iptables -A INPUT -i "$wan" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  nsx "$r" iptables -A INPUT -i "$wan" -p icmp --icmp-type echo-request -j ACCEPT
  [ "${NATLAB_NAIVE:-0}" = 1 ] || nsx "$r" iptables -A INPUT -i "$wan" -j DROP
  nsx "$r" iptables -P FORWARD DROP
  nsx "$r" iptables -A FORWARD -i "$lan" -o "$wan" -j ACCEPT
  nsx "$r" iptables -A FORWARD -i "$wan" -o "$lan" -m conntrack --ctstate ESTABLISHED,RELATED,DNAT -j ACCEPT
}

cmd_up() {
  need_root_tools
  valid_type "$NAT1_TYPE"; valid_type "$NAT2_TYPE"
  local want="nat1=$NAT1_TYPE nat2=$NAT2_TYPE ipv6=${NATLAB_IPV6:-0} naive=${NATLAB_NAIVE:-0}"
  if lab_is_up && [ "$(cat "$STATE_DIR/state")" = "$want" ]; then
    echo "natlab: already up ($want)"; return 0
  fi
  cmd_down >/dev/null
  mkdir -p "$STATE_DIR"
  trap 'echo "natlab: up failed, cleaning up" >&2; cmd_down >/dev/null' ERR

  local h; for h in "${HOSTS[@]}"; do base_ns "$h"; done

  # "internet": a bridge inside the pub namespace; pub itself sits on the bridge.
  ip -n "$(ns pub)" link add br0 type bridge
  ip -n "$(ns pub)" link set br0 up
  ip -n "$(ns pub)" addr add "$PUB_IP/24" dev br0
  mkveth pub p-pub2 pub2 eth0
  mkveth pub p-nat1 nat1 wan
  mkveth pub p-nat2 nat2 wan
  local i; for i in p-pub2 p-nat1 p-nat2; do ip -n "$(ns pub)" link set "$i" master br0; done
  ip -n "$(ns pub2)" addr add "$PUB2_IP/24" dev eth0
  ip -n "$(ns nat1)" addr add "$NAT1_WAN/24" dev wan
  ip -n "$(ns nat2)" addr add "$NAT2_WAN/24" dev wan

  # home LANs
  mkveth nat1 lan home1 eth0
  mkveth nat2 lan home2 eth0
  ip -n "$(ns nat1)" addr add "$NAT1_LAN/24" dev lan
  ip -n "$(ns nat2)" addr add "$NAT2_LAN/24" dev lan
  ip -n "$(ns home1)" addr add "$HOME1_IP/24" dev eth0
  ip -n "$(ns home2)" addr add "$HOME2_IP/24" dev eth0
  ip -n "$(ns home1)" route add default via "$NAT1_LAN"
  ip -n "$(ns home2)" route add default via "$NAT2_LAN"
  # Public hosts and routers get NO route to any 192.168.x LAN. Routers' default
  # route points into the lab "internet" only.
  ip -n "$(ns nat1)" route add default via "$PUB_IP"
  ip -n "$(ns nat2)" route add default via "$PUB_IP"

  nsx nat1 sysctl -qw net.ipv4.ip_forward=1
  nsx nat2 sysctl -qw net.ipv4.ip_forward=1
  if command -v nft >/dev/null; then
    nat_rules_nft nat1 lan wan "$HOME1_IP" "$NAT1_TYPE"
    nat_rules_nft nat2 lan wan "$HOME2_IP" "$NAT2_TYPE"
  else
    nat_rules_ipt nat1 lan wan "$HOME1_IP" "$NAT1_TYPE"
    nat_rules_ipt nat2 lan wan "$HOME2_IP" "$NAT2_TYPE"
  fi
  trap - ERR
  echo "$want" > "$STATE_DIR/state"
  echo "natlab: up ($want)"
  cmd_env
}

cmd_env() {
  cat <<EOF
NATLAB_PREFIX=$P
PUB_IP=$PUB_IP
PUB2_IP=$PUB2_IP
NAT1_WAN=$NAT1_WAN
NAT2_WAN=$NAT2_WAN
HOME1_IP=$HOME1_IP
HOME2_IP=$HOME2_IP
EOF
}

cmd_status() {
  lab_is_up || { echo "natlab: not up"; return 1; }
  echo "state: $(cat "$STATE_DIR/state")"
  local h; for h in "${HOSTS[@]}"; do
    echo "== $h ($(ns "$h"))"
    ip -n "$(ns "$h")" -br -4 addr | grep -v '^lo' || true
    ip -n "$(ns "$h")" -4 route | sed 's/^/   route: /'
  done
  for h in nat1 nat2; do
    echo "== $h ruleset"; nsx "$h" nft list ruleset 2>/dev/null || nsx "$h" iptables-save
    echo "== $h conntrack"; nsx "$h" conntrack -L 2>/dev/null || true
  done
}

cmd_exec() {
  [ $# -ge 2 ] || die "usage: natlab.sh exec HOST cmd..."
  local h="$1"; shift
  printf '%s\n' "${HOSTS[@]}" | grep -qx "$h" || die "unknown host '$h' (${HOSTS[*]})"
  have_ns "$(ns "$h")" || die "lab is not up (run: natlab.sh up)"
  exec ip netns exec "$(ns "$h")" "$@"
}

cmd_shape() {  # HOST RATE|off : egress rate limit on HOST's uplink interface
  local h="$1" rate="$2" dev=eth0
  case "$h" in nat1|nat2) dev=wan;; pub) die "shape pub not supported";; esac
  nsx "$h" tc qdisc del dev "$dev" root 2>/dev/null || true
  [ "$rate" = off ] && return 0
  nsx "$h" tc qdisc add dev "$dev" root tbf rate "$rate" burst 32kbit latency 400ms
}

cmd_test() {
  lab_is_up || die "lab is not up"
  local here; here="$(cd "$(dirname "$0")" && pwd)"
  NATLAB="$0" python3 "$here/natlab_test.py"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  exec) shift; cmd_exec "$@" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  test) cmd_test ;;
  shape) shift; [ $# -eq 2 ] || die "usage: natlab.sh shape HOST RATE|off"; cmd_shape "$@" ;;
  *) awk 'NR>1 && /^set -/{exit} NR>1{sub(/^# ?/,""); print}' "$0"; exit 2 ;;
esac
