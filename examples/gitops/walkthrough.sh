#!/usr/bin/env bash
# A GitOps walkthrough: a repository of manifests, a server following it, `moor diff` before
# a change, the commit, the cluster following, a hand edit put back, and a prune.
#
# Run from the repository root after `cargo build --release` (MOOR=path/to/moor to use
# another binary). Everything happens in a temporary directory that is removed at the end.
set -euo pipefail

MOOR=${MOOR:-target/release/moor}
MOOR=$(realpath "$MOOR")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
server=
cleanup() {
    if [[ -n "$server" ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
[[ -n "${KEEP_LOG:-}" ]] && trap 'cat "$work/server.log"; cleanup' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Wait up to 20 s for a command to succeed.
until_ok() {
    for _ in $(seq 200); do
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

step "2. moor server following the repository's main branch, path deploy/"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MOOR" server --data-dir "$work/data" --listen "127.0.0.1:$port" \
    --git "$work/repo" --ref main --path deploy >"$work/server.log" 2>&1 &
server=$!
export KUBECONFIG=$work/data/kubeconfig.yaml
ready() {
    [[ $(kubectl get manifestsource manifests \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
until_ok ready
kubectl get manifestsources
kubectl get deployments,services,configmaps,secrets -n shop

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
