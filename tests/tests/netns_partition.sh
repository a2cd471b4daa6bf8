#!/usr/bin/env bash
# A real network partition between member processes, healed: the room ends whole.
#
#   sudo tests/tests/netns_partition.sh                    (as root; ~15 s)
#   PARTITION_SECS=10 MEMBER=/path/to/member sudo -E ...   (options, see below)
#
# Needs root, iproute2 (`ip netns`, veth, bridge) and, for the firewall rule, nftables
# (`apt-get install nftables`; without `nft` the partition is made with blackhole
# routes instead, and the script says so). Not run by CI: CI must not depend on
# namespaces. Exit status: 0 passed, 1 failed, 77 skipped (cannot run here).
#
# What it does:
#   1. Creates network namespaces of its own, named npp<pid>-*: a "switch" namespace
#      holding a bridge, and one namespace per member (m1..m4), each linked to the
#      bridge by a veth pair created inside the switch namespace. The host's own
#      network namespace is never touched; addresses 10.201.0.1-4/24 exist only in
#      these namespaces.
#   2. Starts four `member` processes (tests/src/bin/member.rs), one per namespace, each
#      broadcasting a counter; m2 joins m1, m3 joins m1, m4 joins m3; waits until
#      every member sees the other three.
#   3. Partitions {m1,m2} from {m3,m4} with an nftables rule on the bridge (`drop`,
#      silent: no reset, no ICMP), and checks that each side times the other out
#      (`left mX TimedOut`) and carries on as a room of two.
#   4. After PARTITION_SECS (default 4), deletes the rule and checks that, without any
#      command, every member again sees the other three and receives the counters of
#      the far side.
#   5. On exit (also on failure or Ctrl-C): kills its member processes by PID and
#      deletes its namespaces.
#
# Options (environment): MEMBER (path of the built binary; default: built here with
# cargo into CARGO_TARGET_DIR or ./target), PARTITION_SECS, PARTITION_WITH=routes (use
# blackhole routes in the member namespaces even if nft exists), KEEP_LOGS=1 (keep the
# member logs directory and print its path).
set -euo pipefail

cd "$(dirname "$0")/../.."
PARTITION_SECS=${PARTITION_SECS:-4}
TAG="npp$$"
SW="$TAG-sw"
MEMBERS=(m1 m2 m3 m4)
declare -A IP=([m1]=10.201.0.1 [m2]=10.201.0.2 [m3]=10.201.0.3 [m4]=10.201.0.4)
PORT=7000
TIMERS=(--heartbeat-ms 200 --idle-ms 1000 --handshake-ms 1000 --join-timeout-ms 3000
    --redial-initial-ms 200 --redial-max-ms 1000 --digest-ms 500 --count-ms 200)

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; dump; exit 1; }
log() { echo "[$(date +%T.%3N)] $*"; }

[[ $(id -u) -eq 0 ]] || skip "needs root (network namespaces)"
command -v ip >/dev/null || skip "needs iproute2 (ip)"

if [[ -z ${MEMBER:-} ]]; then
    cargo build -q -p netpeer-tests --bin member
    MEMBER="${CARGO_TARGET_DIR:-target}/debug/member"
fi
[[ -x $MEMBER ]] || fail "no member binary at $MEMBER"

DIR=$(mktemp -d "/tmp/$TAG.XXXX")
declare -A PID=()
declare -A FD=()

cleanup() {
    set +e
    for m in "${!PID[@]}"; do kill -KILL "${PID[$m]}" 2>/dev/null; done
    for m in "${!PID[@]}"; do wait "${PID[$m]}" 2>/dev/null; done
    for m in "${MEMBERS[@]}"; do ip netns del "$TAG-$m" 2>/dev/null; done
    ip netns del "$SW" 2>/dev/null
    if [[ ${KEEP_LOGS:-0} == 1 ]]; then echo "logs kept in $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dump() {
    for m in "${MEMBERS[@]}"; do
        [[ -f $DIR/$m.log ]] || continue
        echo "--- $m (last 15 lines) ---"
        tail -n 15 "$DIR/$m.log"
    done
}

# ---------------------------------------------------------------- namespaces
ip netns add "$SW" || skip "cannot create a network namespace"
ip -n "$SW" link add br0 type bridge || skip "no bridge support"
ip -n "$SW" link set br0 up
for m in "${MEMBERS[@]}"; do
    ns="$TAG-$m"
    ip netns add "$ns"
    # Both ends are created inside our namespaces: the host namespace never sees them.
    ip -n "$SW" link add "s-$m" type veth peer name eth0 netns "$ns" || skip "no veth support"
    ip -n "$SW" link set "s-$m" master br0 up
    ip -n "$ns" addr add "${IP[$m]}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
done
log "namespaces: $SW + ${MEMBERS[*]/#/$TAG-}"

# ------------------------------------------------------------------- members
start() { # start NAME [--join ADDR]
    local m=$1
    shift
    mkfifo "$DIR/$m.in"
    # Held open read-write by this script: the member's stdin never ends (end of
    # input would make it leave).
    exec {fd}<>"$DIR/$m.in"
    FD[$m]=$fd
    ip netns exec "$TAG-$m" "$MEMBER" --name "$m" --listen "${IP[$m]}:$PORT" \
        "${TIMERS[@]}" "$@" <&"$fd" >"$DIR/$m.log" 2>&1 &
    PID[$m]=$!
}

say() { echo "$2" >&"${FD[$1]}"; }

# wait_line NAME REGEX SECONDS [FROM_LINE]: a log line matching REGEX appears.
wait_line() {
    local m=$1 re=$2 secs=$3 from=${4:-1} end=$((SECONDS + $3))
    while ((SECONDS <= end)); do
        if [[ -f $DIR/$m.log ]] && tail -n +"$from" "$DIR/$m.log" | grep -qE "$re"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# views_are "m1=m2,m3,m4 m2=..." SECONDS: each member's view, as asked with the
# `members` command, becomes the expected one.
views_are() {
    local expect=$1 secs=$2 end=$((SECONDS + $2)) ok
    while ((SECONDS <= end)); do
        ok=1
        for pair in $expect; do
            say "${pair%%=*}" members
        done
        sleep 0.3
        for pair in $expect; do
            local m=${pair%%=*} want=${pair#*=}
            [[ $(grep '^members ' "$DIR/$m.log" | tail -n 1) == "members $want" ]] || ok=0
        done
        ((ok)) && return 0
    done
    return 1
}

lines() { wc -l <"$DIR/$1.log"; }

ALL="m1=m2,m3,m4 m2=m1,m3,m4 m3=m1,m2,m4 m4=m1,m2,m3"
SPLIT="m1=m2 m2=m1 m3=m4 m4=m3"

start m1
wait_line m1 '^listening ' 10 || fail "m1 did not start"
start m2 --join "${IP[m1]}:$PORT"
start m3 --join "${IP[m1]}:$PORT"
wait_line m3 '^entered ' 10 || fail "m3 did not enter"
start m4 --join "${IP[m3]}:$PORT"
for m in m2 m3 m4; do
    wait_line "$m" '^entered ' 10 || fail "$m did not enter"
    if grep -q '^join-error' "$DIR/$m.log"; then fail "$m could not join"; fi
done
views_are "$ALL" 15 || fail "no full mesh of 4"
log "one room of 4: m1..m4 each see the other three"

# ------------------------------------------------------------------ partition
if [[ ${PARTITION_WITH:-nft} == nft ]] && command -v nft >/dev/null; then
    HOW=nftables
    nft_part() {
        ip netns exec "$SW" nft -f - <<EOF
table bridge netpeer_partition {
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname { "s-m1", "s-m2" } oifname { "s-m3", "s-m4" } drop
        iifname { "s-m3", "s-m4" } oifname { "s-m1", "s-m2" } drop
    }
}
EOF
    }
    nft_heal() { ip netns exec "$SW" nft delete table bridge netpeer_partition; }
else
    HOW="blackhole routes"
    command -v nft >/dev/null || HOW+=" (nft not installed: apt-get install nftables for the firewall rule)"
    nft_part() {
        for a in m1 m2; do for b in m3 m4; do
            ip -n "$TAG-$a" route add blackhole "${IP[$b]}/32"
            ip -n "$TAG-$b" route add blackhole "${IP[$a]}/32"
        done; done
    }
    nft_heal() {
        for a in m1 m2; do for b in m3 m4; do
            ip -n "$TAG-$a" route del blackhole "${IP[$b]}/32"
            ip -n "$TAG-$b" route del blackhole "${IP[$a]}/32"
        done; done
    }
fi

declare -A MARK=()
for m in "${MEMBERS[@]}"; do MARK[$m]=$(lines "$m"); done
T0=$SECONDS
nft_part
log "partitioned {m1,m2} | {m3,m4} with $HOW"
for pair in "m1 m3" "m1 m4" "m2 m3" "m2 m4" "m3 m1" "m3 m2" "m4 m1" "m4 m2"; do
    set -- $pair
    wait_line "$1" "^left $2 TimedOut" 5 "${MARK[$1]}" || fail "$1 did not time out $2"
done
views_are "$SPLIT" 5 || fail "the sides are not rooms of two"
log "each side timed the other out after ~$((SECONDS - T0)) s and goes on as a room of two"
for pair in "m1 m2" "m2 m1" "m3 m4" "m4 m3"; do
    set -- $pair
    n=$(lines "$1")
    wait_line "$1" "^msg $2 n " 3 "$((n + 1))" || fail "$1 gets nothing from $2 during the partition"
done
sleep "$PARTITION_SECS"

# ----------------------------------------------------------------------- heal
for m in "${MEMBERS[@]}"; do MARK[$m]=$(lines "$m"); done
T1=$SECONDS
nft_heal
log "healed"
views_are "$ALL" 20 || fail "the room did not heal into one room of 4"
log "one room of 4 again after ~$((SECONDS - T1)) s, with no command"
for pair in "m1 m3" "m1 m4" "m2 m3" "m2 m4" "m3 m1" "m3 m2" "m4 m1" "m4 m2"; do
    set -- $pair
    wait_line "$1" "^msg $2 n " 5 "${MARK[$1]}" || fail "$1 gets no message from $2 after the heal"
done
for m in "${MEMBERS[@]}"; do
    kill -0 "${PID[$m]}" 2>/dev/null || fail "$m exited"
    if grep -qE '^(rejected|error)' "$DIR/$m.log"; then
        fail "$m: $(grep -E '^(rejected|error)' "$DIR/$m.log")"
    fi
done
log "messages flow across the former partition; no member was rejected or failed"
echo "PASS: partition ($HOW) and heal: 4 members in one room"
