#!/usr/bin/env bash
# Hosts on one machine: N network namespaces joined by a bridge, so that Open MPI
# runs a job over TCP between "hosts" as it would between the nodes of a cluster.
# Needs root, iproute2 (ip, tc) and util-linux (unshare). Touches nothing in the
# root namespace: every interface and address lives in a namespace made here.
#
# As a library (source it, then):
#   hosts_available        0 if this machine can make network namespaces; otherwise
#                          prints why (on stderr) and returns 1
#   hosts_up N             makes N hosts: namespaces pt<pid>h1 … pt<pid>hN (pid: the
#                          calling shell's, $BASHPID), each with
#                          lo and eth0 = 10.213.X.(10+i)/24 and its own hostname, joined
#                          by a bridge in its own namespace pt<pid>sw; per host an
#                          /etc/netns/NS/hosts naming all hosts; a hostfile (one slot per
#                          host) and the rsh agent (netns-rsh) for mpirun. Everything made
#                          is recorded in the state directory $HOSTS_STATE (exported).
#                          Leftovers of earlier runs whose shell died without hosts_down
#                          are removed first.
#   hosts_down             removes all that hosts_up made: the processes running inside
#                          its namespaces (by PID: TERM, then KILL), the namespaces, the
#                          /etc/netns/NS directories, the state directory. Safe to call
#                          twice. Call it from a trap, so that it runs after a failure or
#                          Ctrl-C too:   trap hosts_down EXIT; trap 'exit 130' INT TERM
#   hosts_mpirun ARGS...   mpirun started inside host 1 over the hosts, TCP only
#                          (--mca btl tcp,self, --mca plm_rsh_agent netns-rsh,
#                          --bind-to none, the hostfile, oversubscription allowed, the
#                          OMPI_ALLOW_RUN_AS_ROOT variables as root); ARGS go to mpirun
#                          as they are (-np 4, --map-by node, --host H1,H2, -x VAR,
#                          then the program and its arguments; a second --mca btl is
#                          refused by mpirun). Output and exit code are mpirun's. With
#                          HOSTS_TIMEOUT=S set, mpirun is ended after S seconds (exit
#                          code 124).
#   hosts_shape RATE [BURST]  token-bucket filter (tc tbf) at RATE (e.g. 1gbit, 100mbit)
#                          on both ends of every host's link; BURST defaults to 256kb
#                          (above 1gbit give a BURST of at least RATE × 1 ms: 10gbit 2mb).
#                          (Rate only, no delay: netem is missing from many kernels.)
#   hosts_unshape          removes the shaping
#   hosts_names [K]        the names of hosts 1..K (default all), comma-separated, for
#                          mpirun --host
#   hosts_name I, hosts_addr I   the name and the address of host I
#
# By hand (as root):
#   eval "$(bash tests/cluster/hosts.sh up 2)"      # prints: export HOSTS_STATE=...
#   bash tests/cluster/hosts.sh run -np 2 build/pipetrain train tests/configs/tiny_mlp.ini
#   bash tests/cluster/hosts.sh shape 1gbit          # and: unshape
#   bash tests/cluster/hosts.sh down
#   bash tests/cluster/hosts.sh available | names [K] | --help
# Hosts made by hand stay up until `down`; hosts made by a script whose shell has died
# are removed by the next hosts_up.

HOSTS_ROOT=/run/pipetrain-hosts          # one state directory per set of hosts
HOSTS_ETC_MARK=/etc/netns/.made-by-pipetrain-hosts
HOSTS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

_hosts_err() { echo "hosts: $*" >&2; }

# _hosts_need: the state directory of the hosts that are up, or an error
_hosts_need() {
  if [ -z "${HOSTS_STATE:-}" ] || [ ! -f "$HOSTS_STATE/n" ]; then
    _hosts_err "no hosts are up (HOSTS_STATE is '${HOSTS_STATE:-}'): start them with hosts_up N," \
      "or by hand with: eval \"\$(bash tests/cluster/hosts.sh up 2)\""
    return 1
  fi
}

hosts_available() {
  local missing="" c probe out
  if [ "$(id -u)" -ne 0 ]; then
    _hosts_err "network namespaces need root (this is uid $(id -u)); run as root"
    return 1
  fi
  for c in ip tc unshare mpirun; do command -v "$c" >/dev/null 2>&1 || missing="$missing $c"; done
  if [ -n "$missing" ]; then
    _hosts_err "missing commands:$missing; install iproute2, util-linux and openmpi-bin (scripts/setup.sh)"
    return 1
  fi
  probe=ptprobe$BASHPID
  if ! out=$(ip netns add "$probe" 2>&1); then
    _hosts_err "ip netns add fails here ($out); network namespaces are not available"
    return 1
  fi
  if ! out=$({ ip -n "$probe" link add br0 type bridge &&
               ip -n "$probe" link add a0 type veth peer name a1 &&
               ip netns exec "$probe" unshare --uts true; } 2>&1); then
    ip netns delete "$probe" 2>/dev/null
    _hosts_err "a namespace can be made but not a bridge, a veth pair or a UTS namespace in it ($out)"
    return 1
  fi
  ip netns delete "$probe"
}

# _hosts_starttime PID: the start time of PID if it is alive (to tell a live owner
# from a reused PID); nothing for a dead or zombie process
_hosts_starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '$1 != "Z" { print $20 }'; }

# _hosts_reap: removes the hosts of earlier runs whose owning shell has gone
_hosts_reap() {
  local d pid start
  for d in "$HOSTS_ROOT"/pt*; do
    [ -f "$d/owner" ] || continue
    read -r pid start <"$d/owner" || continue
    [ "$pid" = kept ] && continue
    [ -n "$pid" ] && [ "$(_hosts_starttime "$pid")" = "$start" ] && continue
    _hosts_err "removing the hosts $(basename "$d") left by an earlier run (pid $pid) that ended without hosts_down"
    HOSTS_STATE=$d hosts_down
  done
  return 0
}

# _hosts_do WHAT CMD...: runs CMD; on failure names WHAT and the error
_hosts_do() {
  local what=$1 out; shift
  if ! out=$("$@" 2>&1); then
    _hosts_err "hosts_up: $what failed: $out"
    return 1
  fi
}

hosts_up() {
  local n=${1:-} me=$BASHPID prefix x st sw i ns addr
  if ! [[ "$n" =~ ^[1-9][0-9]?$ ]]; then
    _hosts_err "hosts_up: expected a number of hosts from 1 to 99, got '$n'"
    return 2
  fi
  if [ -n "${HOSTS_STATE:-}" ] && [ -d "$HOSTS_STATE" ]; then
    _hosts_err "hosts_up: hosts are already up in $HOSTS_STATE; call hosts_down first"
    return 1
  fi
  hosts_available || return 1
  mkdir -p "$HOSTS_ROOT" || return 1
  _hosts_reap
  # a prefix no namespace or state directory uses yet
  prefix=pt$me
  x=0
  while [ -e "$HOSTS_ROOT/$prefix" ] || ip netns list | grep -q "^${prefix}[hs]"; do
    x=$((x + 1)); prefix=pt${me}x$x
  done
  st=$HOSTS_ROOT/$prefix
  mkdir -p "$st" || return 1
  HOSTS_STATE=$st
  export HOSTS_STATE
  if [ -n "${HOSTS_KEEP:-}" ]; then echo kept >"$st/owner"; else echo "$me $(_hosts_starttime "$me")" >"$st/owner"; fi
  # a /24 that no route of the root namespace names (read only; the hosts' addresses
  # never leave their namespaces, so this only keeps them from looking alike)
  x=$(( me % 200 + 20 ))
  for ((i = 0; i < 250; i++)); do
    ip -4 route show table all 2>/dev/null | grep -q "^10\.213\.$x\." || break
    x=$(( x % 250 + 1 ))
  done
  : >"$st/namespaces"
  : >"$st/etc"
  echo "$prefix" >"$st/prefix"
  echo "10.213.$x" >"$st/subnet"

  sw=${prefix}sw
  _hosts_do "ip netns add $sw" ip netns add "$sw" || { hosts_down; return 1; }
  echo "$sw" >>"$st/namespaces"
  _hosts_do "the bridge in $sw" sh -c "ip -n $sw link set lo up && ip -n $sw link add br0 type bridge &&
    ip -n $sw link set br0 up" || { hosts_down; return 1; }
  : >"$st/hosts"
  printf '127.0.0.1\tlocalhost\n' >>"$st/hosts"
  for ((i = 1; i <= n; i++)); do
    ns=${prefix}h$i
    addr=10.213.$x.$((10 + i))
    _hosts_do "ip netns add $ns" ip netns add "$ns" || { hosts_down; return 1; }
    echo "$ns" >>"$st/namespaces"
    _hosts_do "the link of $ns" sh -c "ip -n $sw link add p$i type veth peer name eth0 netns $ns &&
      ip -n $sw link set p$i master br0 && ip -n $sw link set p$i up &&
      ip -n $ns link set lo up && ip -n $ns addr add $addr/24 dev eth0 && ip -n $ns link set eth0 up" ||
      { hosts_down; return 1; }
    printf '%s\t%s\n' "$addr" "$ns" >>"$st/hosts"
    echo "$ns slots=1" >>"$st/hostfile"
    echo "$ns $addr" >>"$st/map"
  done
  echo "$n" >"$st/n"
  # /etc/netns made here carries a mark, so that whichever set of hosts goes down
  # last removes it
  if [ ! -d /etc/netns ] && mkdir /etc/netns 2>/dev/null; then : >"$HOSTS_ETC_MARK"; fi
  for ((i = 1; i <= n; i++)); do
    ns=${prefix}h$i
    echo "$ns" >>"$st/etc"
    { mkdir -p "/etc/netns/$ns" && cp "$st/hosts" "/etc/netns/$ns/hosts"; } || { hosts_down; return 1; }
  done
  { cp "$HOSTS_LIB_DIR/netns-rsh" "$st/rsh" && chmod 755 "$st/rsh"; } || { hosts_down; return 1; }
}

# _hosts_pids STATE: the processes running inside the namespaces of STATE
_hosts_pids() {
  local ns
  while read -r ns; do
    ip netns pids "$ns" 2>/dev/null || true
  done <"$1/namespaces" | tr '\n' ' ' | sed 's/ *$//'
}

hosts_down() {
  local st=${HOSTS_STATE:-} ns d sig pids
  if [ -z "$st" ] || [ ! -d "$st" ]; then
    unset HOSTS_STATE
    return 0
  fi
  if [ -f "$st/namespaces" ]; then
    # processes inside the namespaces (mpirun, daemons, ranks): all started through them
    for sig in TERM KILL; do
      pids=$(_hosts_pids "$st")
      [ -z "$pids" ] && break
      # shellcheck disable=SC2086 # a list of PIDs
      kill -s "$sig" $pids 2>/dev/null || true
      for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        [ -z "$(_hosts_pids "$st")" ] && break
        sleep 0.1
      done
    done
    while read -r ns; do
      ip netns delete "$ns" 2>/dev/null || true
    done < <(tac "$st/namespaces")
  fi
  if [ -f "$st/etc" ]; then
    while read -r d; do
      case $d in pt*) rm -rf -- "/etc/netns/$d" ;; esac
    done <"$st/etc"
  fi
  if [ -f "$HOSTS_ETC_MARK" ] && [ "$(ls -A /etc/netns)" = "$(basename "$HOSTS_ETC_MARK")" ]; then
    rm -f "$HOSTS_ETC_MARK"
    rmdir /etc/netns 2>/dev/null || true
  fi
  rm -rf -- "$st"
  rmdir "$HOSTS_ROOT" 2>/dev/null || true
  unset HOSTS_STATE
  return 0
}

hosts_name() { _hosts_need || return 1; sed -n "${1:?host number}p" "$HOSTS_STATE/map" | cut -d' ' -f1; }
hosts_addr() { _hosts_need || return 1; sed -n "${1:?host number}p" "$HOSTS_STATE/map" | cut -d' ' -f2; }
hosts_names() {
  _hosts_need || return 1
  head -n "${1:-$(cat "$HOSTS_STATE/n")}" "$HOSTS_STATE/map" | cut -d' ' -f1 | paste -sd,
}

hosts_mpirun() {
  _hosts_need || return 1
  local st=$HOSTS_STATE h1 t=() root=()
  h1=$(hosts_name 1)
  # --foreground: Ctrl-C still reaches mpirun, which then ends the job
  [ -n "${HOSTS_TIMEOUT:-}" ] && t=(timeout --foreground -k 10 "$HOSTS_TIMEOUT")
  [ "$(id -u)" -eq 0 ] && root=(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
  # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
  "${t[@]}" ip netns exec "$h1" unshare --uts sh -c 'hostname "$1" && shift && exec "$@"' sh "$h1" \
    env "${root[@]}" mpirun --hostfile "$st/hostfile" --mca plm_rsh_agent "$st/rsh" \
    --mca btl tcp,self --bind-to none --oversubscribe "$@"
}

hosts_shape() {
  _hosts_need || return 1
  local rate=${1:-} burst=${2:-256kb} st=$HOSTS_STATE sw i n
  if [ -z "$rate" ]; then _hosts_err "hosts_shape: expected a rate such as 1gbit or 100mbit"; return 2; fi
  sw=$(cat "$st/prefix")sw
  n=$(cat "$st/n")
  for ((i = 1; i <= n; i++)); do
    if ! { tc -n "$(hosts_name "$i")" qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 20ms &&
      tc -n "$sw" qdisc replace dev "p$i" root tbf rate "$rate" burst "$burst" latency 20ms; }; then
      _hosts_err "hosts_shape: tc tbf rate $rate burst $burst failed on host $i"
      return 1
    fi
  done
  echo "$rate $burst" >"$st/shaped"
}

hosts_unshape() {
  _hosts_need || return 1
  local st=$HOSTS_STATE sw i n
  sw=$(cat "$st/prefix")sw
  n=$(cat "$st/n")
  for ((i = 1; i <= n; i++)); do
    tc -n "$(hosts_name "$i")" qdisc del dev eth0 root 2>/dev/null || true
    tc -n "$sw" qdisc del dev "p$i" root 2>/dev/null || true
  done
  rm -f "$st/shaped"
  return 0
}

# By hand: bash tests/cluster/hosts.sh COMMAND ...
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -u
  usage() { sed -n '2,/^$/{s/^# \{0,1\}//p}' "$0"; }
  cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
    up)
      HOSTS_STATE="" HOSTS_KEEP=1 hosts_up "$@" || exit 1
      _hosts_err "$(cat "$HOSTS_STATE/n") hosts up: $(hosts_names) on $(cat "$HOSTS_STATE/subnet").0/24;" \
        "state in $HOSTS_STATE; remove them with: bash $0 down"
      echo "export HOSTS_STATE=$HOSTS_STATE"
      ;;
    down) _hosts_need && hosts_down ;;
    run) hosts_mpirun "$@" ;;
    shape) hosts_shape "$@" ;;
    unshape) hosts_unshape ;;
    names) hosts_names "$@" ;;
    available) hosts_available ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      _hosts_err "unknown command '$cmd': expected up N, down, run ARGS, shape RATE, unshape, names, available"
      exit 2
      ;;
  esac
fi
