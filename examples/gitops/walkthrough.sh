#!/usr/bin/env bash
# A GitOps walkthrough on `moor up`: a repository of manifests, the whole cluster following
# it, `moor diff` before a change, the commit, the cluster following (pods running, the
# Service answering), a hand edit put back, a prune, and `moor down`.
#
# Run as root from the repository root after `cargo build --release` (MOOR=path/to/moor to
# use another binary); needs what scripts/setup installs. Everything happens in a
# temporary directory, on ports, a bridge and address ranges of its own (so a `moor up`
# already running is not disturbed), and is removed at the end.
set -euo pipefail

MOOR=${MOOR:-target/release/moor}
MOOR=$(realpath "$MOOR")
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/moor-gw-XXXXXX)
up=
cleanup() {
    if [[ -n "$up" ]]; then
        kill "$up" 2>/dev/null || true
        wait "$up" 2>/dev/null || true
    fi
    # The containers outlive moor up by design; moor down removes them and their networks.
    if [[ -f "$work/data/up.json" ]]; then
        "$MOOR" down --data-dir "$work/data" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
[[ -n "${KEEP_LOG:-}" ]] && trap 'cat "$work/up.log"; cleanup' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Wait up to 60 s for a command to succeed.
until_ok() {
    for _ in $(seq 600); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for: $*" >&2
    return 1
}
git_() { git -C "$work/repo" -c user.name=demo -c user.email=demo@example.com "$@"; }

step "1. A git repository holding the example app (examples/gitops/manifests)"
git init -q -b main "$work/repo"
cp -r "$here/manifests" "$work/repo/deploy"
git_ add .
git_ commit -qm "shop: first version"
git_ log --oneline

step "2. moor up following the repository's main branch, path deploy/"
# The app's image is built here from busybox-static and imported by the node agent.
"$repo_root/scripts/example-image" "$work/data/agent/images/moor-web.tar"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MOOR" up --data-dir "$work/data" --listen "127.0.0.1:$port" \
    --git "$work/repo" --ref main --path deploy \
    --node-name walkthrough --kubelet-port 0 --bridge moorgw0 \
    --cluster-cidr 10.234.0.0/24 --service-cluster-ip-range 10.235.0.0/24 \
    --service-node-port-range 31820-31829 >"$work/up.log" 2>&1 &
up=$!
export KUBECONFIG=$work/data/kubeconfig.yaml
ready() {
    [[ $(kubectl get manifestsource manifests \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
until_ok ready
grep -E '^(store|apiserver|containerd|source|agent) ' "$work/up.log"
kubectl get manifestsources
running() {
    [[ $(kubectl get pods -n shop -l app=web --field-selector=status.phase=Running \
        -o name | wc -l) == "$1" ]]
}
until_ok running 3
kubectl get deployments,services,configmaps,secrets -n shop
kubectl get pods -n shop -o wide
ip=$(kubectl get service web -n shop -o jsonpath='{.spec.clusterIP}')
page() { timeout 5 busybox wget -q -O - "http://$ip/"; }
until_ok page
echo "http://$ip/ (the Service's cluster IP) says: $(page)"

step "3. Edit the manifests, and before committing ask moor diff what would change"
sed -i 's/replicas: 3/replicas: 5/' "$work/repo/deploy/web.yaml"
sed -i 's/change-me/s3cret-value/' "$work/repo/deploy/secret.yaml"
code=0
"$MOOR" diff "$work/repo/deploy" --source manifests || code=$?
echo "(moor diff exited $code: 1 means something would change)"
[[ $code == 1 ]]

step "4. Commit: the cluster follows the new commit"
git_ commit -qam "shop: five replicas, new password"
started=$(date +%s%N)
replicas() { [[ $(kubectl get deployment web -n shop -o jsonpath='{.spec.replicas}') == "$1" ]]; }
until_ok replicas 5
echo "applied $(( ($(date +%s%N) - started) / 1000000 )) ms after the commit"
until_ok running 5
echo "5 pods running $(( ($(date +%s%N) - started) / 1000000 )) ms after the commit"
kubectl get manifestsources

step "5. A hand edit (kubectl scale) is put back"
kubectl scale deployment web -n shop --replicas=1
until_ok replicas 5
kubectl get deployment web -n shop

step "6. Deleting a file prunes what it defined, and only that"
git_ rm -q deploy/secret.yaml
git_ commit -qm "shop: no database"
gone() { ! kubectl get secret db -n shop >/dev/null 2>&1; }
until_ok gone
kubectl get manifestsources
"$MOOR" diff "$work/repo/deploy" --source manifests
echo "nothing left to change: the cluster matches the repository"

step "7. Stop moor up (the containers keep running for the next moor up), then moor down"
kill -TERM "$up"
wait "$up" || true
up=
"$MOOR" down --data-dir "$work/data"
