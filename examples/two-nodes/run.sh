#!/usr/bin/env bash
# Two nodes on one machine: `moor up` (control plane + node1), and node2 — its own network
# namespace, containerd and `moor agent` — joined to it. A Deployment of four replicas
# spreads over both; then node2 dies (agent, containers and containerd killed), goes
# NotReady, and its pods are replaced on node1.
#
# Run as root from the repository root after `cargo build --release` (MOOR=path/to/moor
# to use another binary). Needs what scripts/setup installs (containerd, runc, the CNI
# plugins, iptables, iproute2, busybox-static, socat, kubectl). Everything lives in a
# temporary directory, on ports, bridges and address ranges of its own, so a `moor up`
# already running on the machine is not disturbed; all of it is removed at the end, also
# on failure or Ctrl-C. KEEP_LOG=1 prints the components' logs at the end.
set -euo pipefail

MOOR=${MOOR:-target/release/moor}
MOOR=$(realpath "$MOOR")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

NETNS=moor-node2           # node2's network namespace
VETH_HOST=moor2-host       # the veth pair between the host and node2
VETH_NODE=moor2-node
LINK_HOST=10.238.0.1       # the link's addresses (a /30)
LINK_NODE=10.238.0.2
CLUSTER_CIDR=10.236.0.0/16 # pod ranges: node1 gets 10.236.0.0/24, node2 10.236.1.0/24
SERVICE_CIDR=10.237.0.0/16
NODE_PORTS=31900-31999
BRIDGE1=moor2b1            # the pods' bridge on node1 (host) and on node2 (in the netns)
BRIDGE2=moor2b2
GRACE=20s                  # --node-monitor-grace-period (see the README for why not less)

if [[ $(id -u) -ne 0 ]]; then
    echo "run.sh: run as root (containers, network namespaces, bridges)" >&2
    exit 1
fi
for tool in containerd ctr runc socat kubectl ip iptables nsenter python3 busybox; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (scripts/setup installs it)" >&2; exit 1; }
done
if [[ -e /run/netns/$NETNS ]]; then
    echo "run.sh: network namespace $NETNS exists: another run, or one that was killed (ip netns del $NETNS)" >&2
    exit 1
fi
for cidr in "$CLUSTER_CIDR" "$SERVICE_CIDR" "${LINK_HOST%.*}.0/30"; do
    if ip -4 route show to match "$cidr" | awk '$1 != "default" { found = 1 } END { exit !found }'; then
        echo "run.sh: $cidr is already routed on this machine; edit the ranges at the top of $0" >&2
        exit 1
    fi
done

# Background processes get their own log files and not the script's stdout, stderr or the
# copies of them in fds 3 and 4 (see cleanup), so nothing outlives the script holding
# its caller's pipes. Short: containerd's socket path must stay under 108 bytes.
work=$(mktemp -d /tmp/moor-2n-XXXXXX)
up_pid='' agent2_pid='' containerd2_pid='' fwd_host_pid='' fwd_node_pid=''
node2_dead=''

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# until_ok SECONDS COMMAND...: poll every 0.2 s until COMMAND succeeds.
until_ok() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "timed out waiting for: $*" >&2
            return 1
        fi
        sleep 0.2
    done
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }
# stop PID [SECONDS]: SIGTERM, then SIGKILL if it is still there after SECONDS (default 10).
stop() {
    local pid=$1 wait=${2:-10}
    alive "$pid" || return 0
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + wait))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
ctr2() { ctr --address "$work/node2/containerd/containerd.sock" --namespace moor "$@"; }
# Kills every task of the containerd answering on $1 and removes its containers. Returns at
# once when nothing answers there (ctr would wait ~10 s per call for a dead socket).
kill_tasks() {
    local task c
    timeout 2 ctr --address "$1" version >/dev/null 2>&1 || return 0
    for task in $(ctr --address "$1" -n moor tasks ls -q 2>/dev/null); do
        ctr --address "$1" -n moor tasks kill -a -s SIGKILL "$task" 2>/dev/null || true
    done
    for task in $(ctr --address "$1" -n moor tasks ls -q 2>/dev/null); do
        ctr --address "$1" -n moor tasks rm -f "$task" >/dev/null 2>&1 || true
    done
    for c in $(ctr --address "$1" -n moor containers ls -q 2>/dev/null); do
        ctr --address "$1" -n moor containers rm "$c" >/dev/null 2>&1 || true
    done
}
# kill_shims DIR: the shims of the containerd whose files are under DIR (they outlive
# their containerd by design, and name its socket on their command line).
kill_shims() {
    local pid
    for pid in $(pgrep -f "containerd-shim.* -address $1/" || true); do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    # A signal may arrive while a function runs with its output sent to /dev/null
    # (until_ok): write to the script's own stdout and stderr again.
    exec 1>&3 2>&4
    echo
    echo "cleaning up"
    # Pods go through their agents first, so CNI DEL removes their addresses and iptables
    # rules; node2's are gone with its network namespace if it already died.
    if alive "$up_pid" && [[ -f $work/up/kubeconfig.yaml ]]; then
        kubectl delete deployment two-nodes-web --ignore-not-found --wait=false >/dev/null 2>&1
        if [[ -n $node2_dead ]] || ! alive "$agent2_pid"; then
            kubectl delete pods --field-selector spec.nodeName=node2 --force --grace-period=0 \
                >/dev/null 2>&1
        fi
        until_ok 30 no_pods
    fi
    stop "$agent2_pid"
    kill_tasks "$work/node2/containerd/containerd.sock"
    stop "$containerd2_pid"
    stop "$up_pid" 30
    kill_shims "$work"
    # Containers left behind (the graceful path failed): runc knows them by their bundle,
    # which lies under $work.
    local id bundle
    while read -r id bundle; do
        if [[ $bundle == "$work"/* ]]; then
            runc --root /run/containerd/runc/moor kill "$id" KILL 2>/dev/null
            runc --root /run/containerd/runc/moor delete -f "$id" 2>/dev/null
        fi
    done < <(runc --root /run/containerd/runc/moor list 2>/dev/null | awk 'NR > 1 {print $1, $4}')
    stop "$fwd_node_pid" 2
    stop "$fwd_host_pid" 2
    ip netns del "$NETNS" 2>/dev/null
    ip link del "$VETH_HOST" 2>/dev/null
    ip link del "$BRIDGE1" 2>/dev/null
    # Masquerade rules of node1's pods that no CNI DEL removed.
    local rule chain
    iptables -t nat -S POSTROUTING 2>/dev/null | grep -- "-s ${CLUSTER_CIDR%.*.*}\." |
        while read -r rule; do
            chain=${rule##*-j }
            eval "iptables -t nat ${rule/-A/-D}" 2>/dev/null
            if [[ $chain == CNI-* ]]; then
                iptables -t nat -F "$chain" 2>/dev/null
                iptables -t nat -X "$chain" 2>/dev/null
            fi
        done
    # Cluster IPs a killed proxy left on lo.
    local addr
    for addr in $(ip -4 -o addr show dev lo | awk '{print $4}' | grep "^${SERVICE_CIDR%.*.*}\."); do
        ip addr del "$addr" dev lo 2>/dev/null
    done
    # Pod network namespaces and snapshots mounted under $work, deepest first.
    findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r -n1 umount -l 2>/dev/null
    if [[ -n ${KEEP_LOG:-} ]]; then
        for log in up.out up.log node2/agent.log node2/containerd.log; do
            [[ -f $work/$log ]] && { echo "--- $log"; cat "$work/$log"; }
        done
    fi
    rm -rf "$work"
    exit "$status"
}
exec 3>&1 4>&2
trap cleanup EXIT
trap 'exit 130' INT TERM

export KUBECONFIG=$work/up/kubeconfig.yaml
node_ready() {
    [[ $(kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == "$2" ]]
}
# "NAME NODE READY DELETING" for each pod of the Deployment.
pods() {
    kubectl get pods -l app=two-nodes-web -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}'
}
# ready_on COUNT NODE...: COUNT pods ready and not being deleted, all on the nodes named.
ready_on() {
    local count=$1
    shift
    local nodes=" $* "
    pods | awk -v want="$count" -v nodes="$nodes" '
        $4 == "" && $3 == "True" && index(nodes, " " $2 " ") { n++ }
        END { exit !(n == want) }'
}
no_pods() { [[ -z $(kubectl get pods -l app=two-nodes-web -o name) ]]; }

step "1. moor up: the control plane, and this machine as node1"
port=$(free_port)
kubelet_port=$(free_port)
mkdir -p "$work/up"
MOOR_DATA_DIR=$work/up "$repo/scripts/example-image" # → $work/up/agent/images, imported at start
"$MOOR" up --data-dir "$work/up" --listen "127.0.0.1:$port" --node-name node1 \
    --kubelet-port "$kubelet_port" --bridge "$BRIDGE1" --cluster-cidr "$CLUSTER_CIDR" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range "$NODE_PORTS" \
    --node-monitor-grace-period "$GRACE" >"$work/up.out" 2>"$work/up.log" 3>&- 4>&- &
up_pid=$!
until_ok 60 node_ready node1 True || { cat "$work/up.out" "$work/up.log"; exit 1; }
cat "$work/up.out" # one line per component (the log is in up.log)

step "2. node2: a network namespace with its own containerd and moor agent"
ip netns add "$NETNS"
ip link add "$VETH_HOST" type veth peer name "$VETH_NODE" netns "$NETNS"
ip addr add "$LINK_HOST/30" dev "$VETH_HOST"
ip link set "$VETH_HOST" up
# Runs a command in node2's network namespace. An array, not a function, so that `$!` of a
# background command is the command itself (nsenter execs it).
IN_NODE2=(nsenter --net="/run/netns/$NETNS")
"${IN_NODE2[@]}" ip link set lo up
"${IN_NODE2[@]}" ip addr add "$LINK_NODE/30" dev "$VETH_NODE"
"${IN_NODE2[@]}" ip link set "$VETH_NODE" up
"${IN_NODE2[@]}" ip route add default via "$LINK_HOST"
# The API server listens on the host's loopback only. node2 reaches it at its own
# 127.0.0.1:PORT, forwarded through a unix socket (file system paths cross namespaces).
socat "UNIX-LISTEN:$work/api.sock,fork,unlink-early" "TCP:127.0.0.1:$port" \
    >"$work/forward-host.log" 2>&1 3>&- 4>&- &
fwd_host_pid=$!
"${IN_NODE2[@]}" socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$work/api.sock" \
    >"$work/forward-node2.log" 2>&1 3>&- 4>&- &
fwd_node_pid=$!
echo "netns $NETNS  $LINK_NODE/30 via $VETH_HOST ($LINK_HOST)  API 127.0.0.1:$port forwarded through $work/api.sock"

mkdir -p "$work/node2/containerd" "$work/node2/agent/images"
"$repo/scripts/example-image" "$work/node2/agent/images/moor-web.tar"
cat >"$work/node2/containerd/config.toml" <<EOF
version = 2
root = "$work/node2/containerd/root"
state = "$work/node2/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/node2/containerd/containerd.sock"
[ttrpc]
  address = "$work/node2/containerd/containerd.sock.ttrpc"
EOF
# nsenter --net rather than `ip netns exec`: the latter also gives the process a private
# /sys without the cgroup mounts runc needs, and a private mount namespace, where the
# agent's pod network namespaces (bind mounts) would be invisible to containerd's.
"${IN_NODE2[@]}" containerd --config "$work/node2/containerd/config.toml" \
    >"$work/node2/containerd.log" 2>&1 3>&- 4>&- &
containerd2_pid=$!
until_ok 30 ctr2 version || { cat "$work/node2/containerd.log"; exit 1; }
"${IN_NODE2[@]}" "$MOOR" agent --kubeconfig "$KUBECONFIG" --node-name node2 --node-ip "$LINK_NODE" \
    --containerd-socket "$work/node2/containerd/containerd.sock" \
    --data-dir "$work/node2/agent" --bridge "$BRIDGE2" --kubelet-port 10250 \
    --service-cidr "$SERVICE_CIDR" >"$work/node2/agent.log" 2>&1 3>&- 4>&- &
agent2_pid=$!
until_ok 60 node_ready node2 True || { cat "$work/node2/agent.log"; exit 1; }
# Pods on either node reach the other's through the link (host-gw style).
node2_cidr=$(kubectl get node node2 -o jsonpath='{.spec.podCIDR}')
ip route add "$node2_cidr" via "$LINK_NODE" dev "$VETH_HOST"
echo "node2 ready: pods in $node2_cidr"
kubectl get nodes -o wide

step "3. A Deployment of four replicas spreads over both nodes"
kubectl apply -f "$here/web.yaml"
until_ok 60 ready_on 4 node1 node2 || { pods; exit 1; }
kubectl get pods -l app=two-nodes-web -o wide
for node in node1 node2; do
    if ! pods | awk -v n="$node" '$2 == n { found = 1 } END { exit !found }'; then
        echo "no pod was placed on $node" >&2
        exit 1
    fi
done
# Each pod serves its own name: ask every one of them from the host.
for ip in $(kubectl get pods -l app=two-nodes-web -o jsonpath='{.items[*].status.podIP}'); do
    # (busybox's own -T timeout crashes Debian's static build on the host.)
    printf '%s answers: %s\n' "$ip" "$(timeout 5 busybox wget -qO- "http://$ip:8080/")"
done

step "4. node2 dies: its agent, containers and containerd are killed"
died=$SECONDS
kill -KILL "$agent2_pid"
wait "$agent2_pid" 2>/dev/null || true
kill_tasks "$work/node2/containerd/containerd.sock"
stop "$containerd2_pid"
kill_shims "$work/node2"
node2_dead=1
until_ok 60 node_ready node2 Unknown
echo "node2 NotReady $((SECONDS - died)) s after it died ($GRACE without a heartbeat: --node-monitor-grace-period)"
kubectl get nodes

step "5. Its pods are evicted (tolerationSeconds 5) and replaced on node1"
until_ok 60 ready_on 4 node1 || { pods; exit 1; }
echo "4 pods ready on node1 $((SECONDS - died)) s after node2 died"
kubectl get pods -l app=two-nodes-web -o wide
echo "(node2's old pods stay Terminating until node2 returns or its Node is deleted, as in Kubernetes)"
echo
echo "replaced on node1: done"
