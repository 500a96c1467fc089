#!/usr/bin/env bash
# Starts a Vault dev server in the current kubectl context's cluster (kind, in
# the chart's CI) and prepares it for `ct install` of charts/vault-kms-plugin:
#   - transit enabled at transit/, with the key kube-secrets;
#   - the policy vault-kms-plugin (encrypt, decrypt, read that key);
#   - Kubernetes auth, with the role vault-kms-plugin bound to the service
#     account kube-system/vault-kms-plugin and the audience vault (what
#     ci/default-values.yaml installs);
#   - a token with that policy written to /var/lib/vault-kms-plugin/token on
#     every kind node (for ci/token-values.yaml).
# A dev server keeps everything in memory and is unsealed with a known root
# token: for tests only.
#
# Usage: scripts/ci-kind-vault.sh [kind-cluster-name]   (default: chart-testing)
set -euo pipefail

KIND_CLUSTER=${1:-${KIND_CLUSTER:-chart-testing}}
VAULT_IMAGE=${VAULT_IMAGE:-hashicorp/vault:1.21.0}
KEY=kube-secrets
PLUGIN_NAMESPACE=kube-system
PLUGIN_SA=vault-kms-plugin
ROLE=vault-kms-plugin
AUDIENCE=vault
TOKEN_PATH=/var/lib/vault-kms-plugin/token

log() { printf '\n==> %s\n' "$*"; }

log "Vault dev server ($VAULT_IMAGE) in namespace vault"
kubectl apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: vault
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: vault
  namespace: vault
---
# Vault reviews the plugin's tokens with its own service account's token.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: vault-ci-auth-delegator
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:auth-delegator
subjects:
  - kind: ServiceAccount
    name: vault
    namespace: vault
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vault
  namespace: vault
spec:
  replicas: 1
  selector:
    matchLabels:
      app: vault
  template:
    metadata:
      labels:
        app: vault
    spec:
      serviceAccountName: vault
      tolerations:
        - key: node-role.kubernetes.io/control-plane
          operator: Exists
          effect: NoSchedule
      containers:
        - name: vault
          image: ${VAULT_IMAGE}
          args:
            - server
            - -dev
            - -dev-root-token-id=root
            - -dev-listen-address=0.0.0.0:8200
          env:
            - name: SKIP_SETCAP
              value: "true"
          ports:
            - name: http
              containerPort: 8200
          readinessProbe:
            httpGet:
              path: /v1/sys/health
              port: http
            periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata:
  name: vault
  namespace: vault
spec:
  selector:
    app: vault
  ports:
    - name: http
      port: 8200
      targetPort: http
EOF
kubectl -n vault rollout status deployment/vault --timeout=300s

vault() {
  kubectl -n vault exec -i deployment/vault -- \
    env VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root vault "$@"
}

log "transit and the key $KEY"
vault secrets enable transit
vault write -f "transit/keys/$KEY" type=aes256-gcm96

log "policy $ROLE"
vault policy write "$ROLE" - <<EOF
path "transit/encrypt/$KEY" { capabilities = ["update"] }
path "transit/decrypt/$KEY" { capabilities = ["update"] }
path "transit/keys/$KEY"    { capabilities = ["read"] }
EOF

log "Kubernetes auth, role $ROLE for $PLUGIN_NAMESPACE/$PLUGIN_SA (audience $AUDIENCE)"
vault auth enable kubernetes
# In a pod, Vault takes the cluster's CA and its own token as the reviewer.
vault write auth/kubernetes/config kubernetes_host=https://kubernetes.default.svc
vault write "auth/kubernetes/role/$ROLE" \
  bound_service_account_names="$PLUGIN_SA" \
  bound_service_account_namespaces="$PLUGIN_NAMESPACE" \
  audience="$AUDIENCE" \
  token_policies="$ROLE" \
  token_ttl=1h token_max_ttl=4h

log "a token for the token method, at $TOKEN_PATH on every node of kind cluster $KIND_CLUSTER"
token=$(vault token create -policy="$ROLE" -ttl=4h -field=token)
nodes=$(kind get nodes --name "$KIND_CLUSTER")
if [[ -z "$nodes" ]]; then
  echo "no nodes in kind cluster $KIND_CLUSTER" >&2
  exit 1
fi
for node in $nodes; do
  printf '%s' "$token" | docker exec -i "$node" sh -c \
    "umask 077 && mkdir -p '$(dirname "$TOKEN_PATH")' && cat > '$TOKEN_PATH'"
done

log "Vault is ready for ct install"
