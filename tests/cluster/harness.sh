#!/usr/bin/env bash
# The harness itself: hosts_up makes the namespaces, files and hostnames it
# promises and nothing in the root namespace; hosts_down removes all of it,
# including a process still running on a host; the next hosts_up removes the
# hosts of a shell that was killed before its hosts_down.
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"
set -e
root_before=$(ip -br addr; ip route show table all)

hosts_up 2
st=$HOSTS_STATE
prefix=$(cat "$st/prefix")
[ "$(hosts_names)" = "${prefix}h1,${prefix}h2" ] || fail "hosts_names gives '$(hosts_names)'"
for ns in "${prefix}sw" "${prefix}h1" "${prefix}h2"; do
  ip netns list | grep -q "^$ns\b" || fail "namespace $ns missing after hosts_up"
done
[ -f "/etc/netns/${prefix}h1/hosts" ] || fail "/etc/netns/${prefix}h1/hosts missing after hosts_up"
[ "$(ip -br addr; ip route show table all)" = "$root_before" ] ||
  fail "hosts_up changed the interfaces, addresses or routes of the root namespace"
out=$(hosts_mpirun -np 2 hostname | sort | paste -sd,)
[ "$out" = "$(hosts_names)" ] || fail "the ranks' hostnames are '$out', expected $(hosts_names)"
echo "2 hosts up: $out"

# a process left running on host 2: hosts_down ends it
pid=""
hosts_mpirun --host "$(hosts_name 2)" -np 1 sleep 300 >/dev/null 2>&1 &
for _ in $(seq 50); do
  for p in $(ip netns pids "${prefix}h2"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sleep ] && pid=$p
  done
  [ -n "$pid" ] && break
  sleep 0.2
done
[ -n "$pid" ] || fail "sleep did not start on host 2"
hosts_down
wait || true
state=$(sed -n 's/^State:\t\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)
[ -z "$state" ] || [ "$state" = Z ] || fail "hosts_down left pid $pid (sleep on host 2) running (state $state)"
! ip netns list | grep -q "^$prefix" || fail "hosts_down left namespaces: $(ip netns list | grep "^$prefix")"
[ ! -e "/etc/netns/${prefix}h1" ] || fail "hosts_down left /etc/netns/${prefix}h1"
[ ! -e "$st" ] || fail "hosts_down left the state directory $st"
[ -z "${HOSTS_STATE:-}" ] || fail "HOSTS_STATE is still set after hosts_down"
echo "hosts_down removed the namespaces, /etc/netns files, state and the process on host 2"

# hosts of a shell killed before its hosts_down: the next hosts_up removes them
# shellcheck disable=SC2016 # the inner shell's variables
{ bash -c '. "$1"; hosts_up 1 && echo "$HOSTS_STATE" && kill -9 $$' sh "$(dirname "$0")/hosts.sh" >"$TMP/orphan"; } \
  2>/dev/null || true
orphan=$(cat "$TMP/orphan")
{ [ -n "$orphan" ] && [ -d "$orphan" ]; } || fail "the killed shell's hosts_up left no state directory to remove"
hosts_up 1 2>"$TMP/reap"
grep -q "removing the hosts $(basename "$orphan") left by an earlier run" "$TMP/reap" ||
  { cat "$TMP/reap"; fail "hosts_up did not say that it removes $(basename "$orphan")"; }
[ ! -e "$orphan" ] || fail "hosts_up left the hosts of a killed shell ($orphan)"
! ip netns list | grep -q "^$(basename "$orphan")" || fail "hosts_up left the namespaces of a killed shell"
hosts_down
[ "$(ip -br addr; ip route show table all)" = "$root_before" ] ||
  fail "the root namespace's interfaces, addresses or routes differ after hosts_down"
echo "the hosts of a killed shell are removed by the next hosts_up"
