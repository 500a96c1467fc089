#!/usr/bin/env bash
# make demo: the plugin between a real kube-apiserver and a real Vault, all on
# 127.0.0.1. Creates a Secret with kubectl, shows that etcd holds only
# ciphertext (k8s:enc:kms:v2:vault:...), and reads the Secret back through
# the API. The first run builds Vault, etcd, kube-apiserver and kubectl from
# the Go module proxy (20-30 minutes on 2 cores); later runs take seconds.
#
# Environment: DEMO_KEEP=1 leaves everything running (and prints how to stop
# it); DEMO_VAULT_PORT, DEMO_ETCD_PORT, DEMO_APISERVER_PORT pick ports.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
vault_port=${DEMO_VAULT_PORT:-18200}
etcd_port=${DEMO_ETCD_PORT:-23790}
apiserver_port=${DEMO_APISERVER_PORT:-26443}
work=$(mktemp -d /tmp/vault-kms-demo.XXXXXX)
pids=()

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
	if [[ ${DEMO_KEEP:-} == 1 ]]; then
		echo "Left running. Stop with: scripts/testbed-apiserver.sh stop $work/cluster; kill ${pids[*]}"
		return
	fi
	scripts/testbed-apiserver.sh stop "$work/cluster" >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "demo: $*" >&2
	for f in "$work"/*.log "$work"/cluster/*.log; do
		[[ -s $f ]] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
	done
	exit 1
}

step "Build the test bed (cached after the first run) and the plugin"
scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl
make --no-print-directory build
export PATH=$root/bin:$PATH

for p in "$vault_port" "$etcd_port" "$apiserver_port"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		fail "127.0.0.1:$p is in use: stop what holds it or set DEMO_VAULT_PORT, DEMO_ETCD_PORT, DEMO_APISERVER_PORT"
	fi
done

step "Start a Vault dev server on 127.0.0.1:$vault_port with transit and a key"
vault server -dev -dev-root-token-id=demo-root -dev-listen-address="127.0.0.1:$vault_port" \
	-dev-no-store-token >"$work/vault.log" 2>&1 &
pids+=($!)
export VAULT_ADDR=http://127.0.0.1:$vault_port VAULT_TOKEN=demo-root
for _ in $(seq 100); do curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1 && break; sleep 0.2; done
vault secrets enable transit >/dev/null
vault write -f transit/keys/kube-secrets >/dev/null
vault policy write vault-kms-plugin - >/dev/null <<'HCL'
path "transit/encrypt/kube-secrets" { capabilities = ["update"] }
path "transit/decrypt/kube-secrets" { capabilities = ["update"] }
path "transit/keys/kube-secrets"    { capabilities = ["read"] }
HCL
plugin_token=$(vault token create -policy=vault-kms-plugin -period=1h -field=token)
echo "transit key kube-secrets created; the plugin gets a token limited to encrypt, decrypt and read on it"

step "Start the plugin"
socket=$work/kmsplugin/socket.sock
VAULT_TOKEN=$plugin_token VAULT_KMS_KEY_NAMES=kube-secrets VAULT_KMS_LISTEN=unix://$socket \
	VAULT_KMS_HEALTH_ADDR=127.0.0.1:0 VAULT_KMS_LOG_FORMAT=text \
	vault-kms-plugin >"$work/plugin.log" 2>&1 &
pids+=($!)
vault-kms-plugin probe -endpoint "unix://$socket" -wait 30s || fail "plugin not healthy"

step "Start etcd and kube-apiserver with the plugin as KMS v2 provider for Secrets"
cat >"$work/encryption-config.yaml" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - kms:
          apiVersion: v2
          name: vault
          endpoint: unix://$socket
          timeout: 3s
      - identity: {}
YAML
cat "$work/encryption-config.yaml"
export KUBECONFIG
KUBECONFIG=$(scripts/testbed-apiserver.sh start "$work/cluster" --etcd-port "$etcd_port" \
	--apiserver-port "$apiserver_port" --encryption-provider-config "$work/encryption-config.yaml") ||
	fail "control plane did not start"

step "kubectl create secret generic demo --from-literal=password=hunter2-demo"
kubectl create secret generic demo --from-literal=password=hunter2-demo

step "What etcd stores under /registry/secrets/default/demo"
key=$(printf /registry/secrets/default/demo | base64 -w0)
stored=$(curl -fsS "http://127.0.0.1:$etcd_port/v3/kv/range" -d "{\"key\":\"$key\"}" |
	sed -n 's/.*"value":"\([^"]*\)".*/\1/p' | base64 -d | tr -c '[:print:]' '.')
echo "${stored:0:160}..."
[[ $stored == k8s:enc:kms:v2:vault:* ]] || fail "etcd value is not KMS v2 ciphertext"
[[ $stored != *hunter2-demo* ]] || fail "plaintext found in etcd"
echo "-> encrypted: prefix k8s:enc:kms:v2:vault:, and no 'hunter2-demo' in it"

step "kubectl get secret demo (decrypted by the apiserver through the plugin)"
value=$(kubectl get secret demo -o jsonpath='{.data.password}' | base64 -d)
echo "password=$value"
[[ $value == hunter2-demo ]] || fail "read back '$value'"

echo
echo "Demo passed: the Secret is encrypted at rest by Vault transit and decrypted on read."
