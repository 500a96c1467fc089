#!/usr/bin/env bash
# End to end in kind, for machines with Docker: the chart installed as a user
# installs it, Vault (a dev server in the cluster), kube-apiserver switched to
# the plugin, and the checks of src/e2e/cluster made with etcdctl:
#
#   1. the plugin image is built from this tree and loaded into kind; the
#      chart is installed with scripts/kind/values.yaml (the README's short
#      vault-values.yaml form); the DaemonSet gets ready, which needs a Vault
#      login through Kubernetes auth (TokenReview); `helm test` passes;
#   2. `helm template ... | kubectl apply --dry-run=server -f -` passes;
#   3. the apiserver is switched to the README's KMS v2 EncryptionConfiguration
#      (it reloads the file): etcd holds k8s:enc:kms:v2:vault:... and no
#      plaintext; kubectl reads the value back;
#   4. the transit key is rotated: new writes carry the new key_id, old
#      Secrets read; after rewriting every Secret none is under the old version;
#   5. the plugin container is killed (SIGKILL): it restarts over its leftover
#      socket, and reads and writes go on;
#   6. Vault is sealed (a dev server loses its data when it stops, so the
#      outage is a seal): the apiserver's /readyz/kms-providers fails, reads go
#      on; writes go on under the apiserver's cached data key while the
#      plugin's Status answers with the last key_id (today), or fail 3 minutes
#      after the last healthy Status if it returns an error (docs/testing.md);
#      Vault is unsealed: writes come back without restarting anything, and no
#      Secret is lost;
#   7. KMS v1 (the README's recipe: drop apiVersion: v2, add cachesize):
#      a Secret round-trips with k8s:enc:kms:v1:vault:...; then back to v2;
#   8. keyNames [kube-secrets-next, kube-secrets] (helm upgrade): old Secrets
#      read, rewrites go under the new key.
#
# Usage: scripts/kind-e2e.sh
# Environment:
#   KIND_CLUSTER     cluster name (default vault-kms-e2e); it must not exist
#   KIND_NODE_IMAGE  node image (default: the kind release's own); the kind
#                    config is kubeadm v1beta4, for Kubernetes 1.31+ (written
#                    for 1.36+)
#   KEEP=1           leave the cluster running at the end (and on failure)
# Needs docker, kind, kubectl, helm, base64, sed, grep, awk.
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cluster=${KIND_CLUSTER:-vault-kms-e2e}
node=$cluster-control-plane
image=vault-kms-plugin:kind-e2e
ns=e2e
key=kube-secrets
new_key=kube-secrets-next
plugin_pods=app.kubernetes.io/name=vault-kms-plugin,app.kubernetes.io/component!=test
started=$SECONDS
stage_name=
stage_start=$SECONDS
timings=()

log() { printf '\n==> [%4ss] %s\n' "$((SECONDS - started))" "$*"; }
# stage NAME: ends the current stage (noting its duration) and starts NAME.
stage() {
	if [[ -n $stage_name ]]; then
		timings+=("$(printf '%-60s %5ss' "$stage_name" "$((SECONDS - stage_start))")")
	fi
	stage_name=$1
	stage_start=$SECONDS
	log "$1"
}
die() {
	echo "kind-e2e: FAILED: $*" >&2
	exit 1
}

for tool in docker kind kubectl helm base64 sed grep awk; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
	die "kind cluster $cluster exists already: delete it (kind delete cluster --name $cluster) or set KIND_CLUSTER"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/vault-kms-kind.XXXXXX")

diagnostics() {
	kubectl get pods -A -o wide || true
	kubectl -n kube-system logs -l "$plugin_pods" --tail=100 || true
	kubectl -n kube-system logs "kube-apiserver-$node" --tail=100 || true
	kubectl -n vault logs deployment/vault --tail=50 || true
}
cleanup() {
	local rc=$?
	if ((rc != 0)); then
		diagnostics >&2
	fi
	if [[ ${KEEP:-} == 1 ]]; then
		echo "Cluster kept: kind delete cluster --name $cluster; rm -rf $work"
	else
		kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT

# --- helpers ---------------------------------------------------------------

# retry SECONDS DESCRIPTION CMD...: runs CMD every 3s until it succeeds.
retry() {
	local limit=$1 what=$2 end
	shift 2
	end=$((SECONDS + limit))
	until "$@"; do
		((SECONDS < end)) || die "$what: not within ${limit}s"
		sleep 3
	done
}

vault() {
	kubectl -n vault exec -i deployment/vault -- \
		env VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root vault "$@"
}

etcdctl() {
	kubectl -n kube-system exec "etcd-$node" -- etcdctl \
		--endpoints=https://127.0.0.1:2379 \
		--cacert=/etc/kubernetes/pki/etcd/ca.crt \
		--cert=/etc/kubernetes/pki/etcd/server.crt \
		--key=/etc/kubernetes/pki/etcd/server.key "$@"
}

# etcd_values KEY [--prefix]: every value etcd holds at KEY (or under it), one
# per line, with non-printable bytes shown as '.'; nothing for a missing key.
etcd_values() {
	local v
	etcdctl get "$@" -w json | { grep -o '"value":"[^"]*"' || true; } | sed 's/^"value":"//; s/"$//' |
		while read -r v; do
			printf '%s' "$v" | base64 -d | tr -c '[:print:]' '.'
			echo
		done
}

# The Secrets this script wrote: name and password, to compare at the end.
declare -A written=()

# put NAME: creates a Secret in $ns with a fresh password and records it.
put() {
	local pw
	pw="pw-$1-$RANDOM$RANDOM"
	kubectl -n "$ns" create secret generic "$1" --from-literal=password="$pw" >/dev/null || return 1
	written[$1]=$pw
}

# read_back NAME: the Secret's password through the API.
read_back() {
	kubectl -n "$ns" get secret "$1" -o jsonpath='{.data.password}' | base64 -d
}

# check_reads: every written Secret reads back with its password.
check_reads() {
	local n
	for n in "${!written[@]}"; do
		[[ $(read_back "$n") == "${written[$n]}" ]] || die "Secret $ns/$n does not read back"
	done
}

# check_stored NAME PREFIX [NEEDLE]: etcd's value starts with PREFIX, holds
# NEEDLE (a key_id or the plugin's ciphertext prefix) and not the password.
check_stored() {
	local v
	v=$(etcd_values "/registry/secrets/$ns/$1")
	[[ $v == "$2"* ]] || die "etcd value of $1 starts with '${v:0:40}', want '$2'"
	[[ $v != *"${written[$1]}"* ]] || die "etcd holds the plaintext of $1"
	[[ -z ${3:-} || $v == *"$3"* ]] || die "etcd value of $1 does not hold '$3'"
}

# rewrite_all: the README's `kubectl get secrets -A -o json | kubectl replace -f -`.
rewrite_all() {
	kubectl get secrets -A -o json | kubectl replace -f - >/dev/null
}

# check_all_under NEEDLE NOT: every Secret in etcd is KMS v2, holds NEEDLE and
# not NOT.
check_all_under() {
	local v n=0
	while read -r v; do
		n=$((n + 1))
		[[ $v == k8s:enc:kms:v2:vault:* ]] || die "a Secret in etcd is not KMS v2: '${v:0:40}'"
		[[ $v == *"$1"* ]] || die "a Secret in etcd is not under $1"
		[[ $v != *"$2"* ]] || die "a Secret in etcd is still under $2"
	done < <(etcd_values /registry/secrets/ --prefix)
	echo "all $n Secrets in etcd are under $1"
}

# encryption_config FILE: installs FILE as the apiserver's configuration (by
# rename, in the directory mounted into the node); the apiserver reloads it.
encryption_config() {
	cp "$1" "$work/enc/.next.yaml"
	mv -f "$work/enc/.next.yaml" "$work/enc/encryption-config.yaml"
}

# wait_writes SECONDS PREFIX NEEDLE: writes probe Secrets until one is stored
# with PREFIX and holding NEEDLE, e.g. after a configuration reload or a key
# change.
wait_writes() {
	local limit=$1 prefix=$2 needle=$3 start=$SECONDS name v
	while :; do
		name=probe-$RANDOM$RANDOM
		if put "$name"; then
			v=$(etcd_values "/registry/secrets/$ns/$name")
			if [[ $v == "$prefix"* && $v == *"$needle"* ]]; then
				echo "writes are $prefix...$needle after $((SECONDS - start))s"
				return 0
			fi
		fi
		((SECONDS - start < limit)) || die "writes not under $prefix...$needle within ${limit}s"
		sleep 5
	done
}

# --- the README's EncryptionConfigurations -----------------------------------

readme_config() {
	awk '/^```yaml$/ { f = 1; buf = ""; next }
		/^```$/ { if (f && buf ~ /kind: EncryptionConfiguration/) { printf "%s", buf; exit } f = 0 }
		f { buf = buf $0 "\n" }' README.md
}
readme_config >"$work/encryption-v2.yaml"
grep -q 'endpoint: unix:///var/run/kmsplugin/socket.sock' "$work/encryption-v2.yaml" ||
	die "README.md has no KMS v2 EncryptionConfiguration"
# "drop apiVersion: v2 and add cachesize: 1000"
sed -e '/^ *apiVersion: v2$/d' -e 's/^\( *\)timeout: 3s$/\1cachesize: 1000\n\1timeout: 3s/' \
	"$work/encryption-v2.yaml" >"$work/encryption-v1.yaml"
mkdir -p "$work/enc"
cp scripts/kind/encryption-identity.yaml "$work/enc/encryption-config.yaml"
sed "s#@ENC_DIR@#$work/enc#" scripts/kind/cluster.yaml >"$work/cluster.yaml"

# --- 1. cluster, image, Vault, chart -------------------------------------------

stage "1. kind cluster, the plugin image, Vault, the chart"
docker build -q -f images/vault-kms-plugin/Dockerfile --build-arg VERSION="$(cat VERSION)" -t "$image" .
kind create cluster --name "$cluster" --config "$work/cluster.yaml" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 180s
kind load docker-image "$image" --name "$cluster"
scripts/ci-kind-vault.sh "$cluster"
helm install vault-kms-plugin charts/vault-kms-plugin -n kube-system -f scripts/kind/values.yaml \
	--set image.repository="${image%%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never
# Ready means logged in to Vault with Kubernetes auth and the key read.
kubectl -n kube-system rollout status ds/vault-kms-plugin --timeout=180s
helm test vault-kms-plugin -n kube-system --timeout 180s
kubectl create namespace "$ns"

stage "2. kubectl apply --dry-run=server of the rendered chart"
helm template vault-kms-plugin charts/vault-kms-plugin -n kube-system -f scripts/kind/values.yaml |
	kubectl apply --dry-run=server -f -

stage "3. switch the apiserver to the README's KMS v2 configuration"
put before-encryption
v=$(etcd_values "/registry/secrets/$ns/before-encryption")
[[ $v == k8s.* && $v == *"${written[before-encryption]}"* ]] ||
	die "before encryption etcd should hold the plain Secret, got '${v:0:40}'"
encryption_config "$work/encryption-v2.yaml"
wait_writes 180 k8s:enc:kms:v2:vault: "$key/v1/"
retry 60 "/readyz/kms-providers" kubectl get --raw /readyz/kms-providers
put first-encrypted
check_stored first-encrypted k8s:enc:kms:v2:vault: "$key:vault:v1:"
check_reads
echo "etcd: $(etcd_values "/registry/secrets/$ns/first-encrypted" | cut -c1-60)..."

stage "4. rotate the transit key"
vault write -f "transit/keys/$key/rotate" >/dev/null
# Within the apiserver's Status interval (1 minute) plus the plugin's refresh.
wait_writes 120 k8s:enc:kms:v2:vault: "$key/v2/"
check_reads
rewrite_all
check_all_under "$key/v2/" "$key/v1/"
check_reads

stage "5. SIGKILL the plugin container"
restarts=$(kubectl -n kube-system get pods -l "$plugin_pods" \
	-o jsonpath='{.items[0].status.containerStatuses[0].restartCount}')
cid=$(docker exec "$node" crictl ps --name '^vault-kms-plugin$' -q | head -n 1)
[[ -n $cid ]] || die "no running plugin container on $node"
docker exec "$node" crictl stop --timeout 0 "$cid" >/dev/null
restarted() {
	local now
	now=$(kubectl -n kube-system get pods -l "$plugin_pods" \
		-o jsonpath='{.items[0].status.containerStatuses[0].restartCount}')
	((now > restarts))
}
retry 120 "plugin container restarted" restarted
kubectl -n kube-system rollout status ds/vault-kms-plugin --timeout=120s
put after-plugin-restart
check_stored after-plugin-restart k8s:enc:kms:v2:vault: "$key/v2/"
check_reads

stage "6. Vault outage (sealed), then unsealed"
unseal_key=$(kubectl -n vault logs deployment/vault | sed -n 's/^Unseal Key: //p' | tail -n 1)
[[ -n $unseal_key ]] || die "no unseal key in the Vault dev server's log"
sealed_at=$SECONDS
vault operator seal >/dev/null
kms_unhealthy() { ! kubectl get --raw /readyz/kms-providers >/dev/null 2>&1; }
retry 90 "apiserver /readyz/kms-providers failing" kms_unhealthy
readyz=$(kubectl get --raw '/readyz?verbose' 2>&1) && die "/readyz ok while Vault is sealed"
[[ $readyz == *kms-providers* ]] || die "/readyz?verbose does not name the KMS provider: $readyz"
check_reads
# What the apiserver does with writes depends on how the plugin answers
# Status while Vault is unusable (see docs/testing.md): with an answer
# (healthz not "ok", the last key_id) the apiserver keeps extending its data
# key and writes go on; with a gRPC error writes fail 3 minutes after the
# last healthy Status.
status=$(kubectl -n kube-system exec ds/vault-kms-plugin -- /vault-kms-plugin probe 2>&1 || true)
echo "plugin Status while sealed: $status"
if [[ $status == *healthz=* ]]; then
	# Keep Vault sealed for more than the apiserver's 1-minute Status
	# interval; every write must be accepted, and stored encrypted.
	while ((SECONDS - sealed_at < 75)); do
		name=during-outage-$RANDOM$RANDOM
		put "$name" || die "write refused $((SECONDS - sealed_at))s after the seal"
		check_stored "$name" k8s:enc:kms:v2:vault: "$key/v2/"
		sleep 5
	done
	echo "FINDING: writes accepted for $((SECONDS - sealed_at))s with Vault sealed (cached data key)"
else
	end=$((SECONDS + 300))
	while :; do
		name=during-outage-$RANDOM$RANDOM
		if ! err=$(kubectl -n "$ns" create secret generic "$name" --from-literal=password=x 2>&1); then
			echo "writes fail $((SECONDS - sealed_at))s after the seal: $err"
			if kubectl -n "$ns" get secret "$name" >/dev/null 2>&1; then
				die "the refused Secret $name exists"
			fi
			break
		fi
		written[$name]=x
		((SECONDS < end)) || die "writes still accepted 300s after Vault was sealed"
		sleep 10
	done
	((SECONDS - sealed_at >= 60)) || die "writes failed before a status interval had passed"
fi
check_reads
vault operator unseal "$unseal_key" >/dev/null
retry 120 "apiserver /readyz/kms-providers ok" kubectl get --raw /readyz/kms-providers
retry 120 "a write after the unseal" put after-outage
check_stored after-outage k8s:enc:kms:v2:vault: "$key/v2/"
check_reads
listed=$(kubectl -n "$ns" get secrets -o name | grep -c '^secret/')
((listed == ${#written[@]})) || die "$listed Secrets in $ns, ${#written[@]} written"
echo "no Secret lost: $listed"

stage "7. KMS v1"
encryption_config "$work/encryption-v1.yaml"
wait_writes 180 k8s:enc:kms:v1:vault: "$key:vault:v2:"
put kms-v1
check_stored kms-v1 k8s:enc:kms:v1:vault: "$key:vault:v2:"
[[ $(read_back kms-v1) == "${written[kms-v1]}" ]] || die "kms-v1 does not read back"
# KMS v2 data is unreadable under a v1-only configuration: delete what v1
# wrote (the probes and kms-v1) before going back.
for n in "${!written[@]}"; do
	if [[ $(etcd_values "/registry/secrets/$ns/$n") == k8s:enc:kms:v1:* ]]; then
		kubectl -n "$ns" delete secret "$n" >/dev/null
		unset 'written[$n]'
	fi
done
encryption_config "$work/encryption-v2.yaml"
wait_writes 180 k8s:enc:kms:v2:vault: "$key/v2/"
check_reads

stage "8. move to a new key: keyNames [$new_key, $key]"
vault write -f "transit/keys/$new_key" >/dev/null
vault policy write vault-kms-plugin - >/dev/null <<EOF
path "transit/encrypt/$new_key" { capabilities = ["update"] }
path "transit/decrypt/$new_key" { capabilities = ["update"] }
path "transit/keys/$new_key"    { capabilities = ["read"] }
path "transit/encrypt/$key" { capabilities = ["update"] }
path "transit/decrypt/$key" { capabilities = ["update"] }
path "transit/keys/$key"    { capabilities = ["read"] }
EOF
helm upgrade vault-kms-plugin charts/vault-kms-plugin -n kube-system --reuse-values \
	--set "keyNames={$new_key,$key}"
kubectl -n kube-system rollout status ds/vault-kms-plugin --timeout=180s
wait_writes 120 k8s:enc:kms:v2:vault: "$new_key/v1/"
check_reads
rewrite_all
check_all_under "$new_key/v1/" "$key/v"
check_reads
listed=$(kubectl -n "$ns" get secrets -o name | grep -c '^secret/')
((listed == ${#written[@]})) || die "$listed Secrets in $ns, ${#written[@]} written"

stage "done"
printf '%s\n' "${timings[@]}"
log "kind e2e passed in $((SECONDS - started))s"
