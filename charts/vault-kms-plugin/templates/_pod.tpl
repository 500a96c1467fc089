{{/*
Pieces of the plugin pod, written once for the DaemonSet and the static pod
(the security contexts for the helm test pod too). Where the two differ, it is
because a static pod runs without the apiserver; those pieces take (dict
"root" $ "static" <bool>). Each piece starts at its first line and is placed
with nindent.
*/}}

{{/*
Where the projected service-account token is mounted (kubernetes auth, and
jwt auth without auth.jwt.jwtFile).
*/}}
{{- define "vault-kms-plugin.saTokenDir" -}}
/var/run/secrets/vault-kms-plugin
{{- end }}

{{/*
Where the caBundle ConfigMap is mounted.
*/}}
{{- define "vault-kms-plugin.caBundleDir" -}}
/etc/vault-kms-plugin/ca
{{- end }}

{{/*
VAULT_CACERT: the mounted caBundle when given, else the node's ca-cert path.
*/}}
{{- define "vault-kms-plugin.caCertPath" -}}
{{- if .Values.caBundle }}
{{- printf "%s/ca.crt" (include "vault-kms-plugin.caBundleDir" .) }}
{{- else }}
{{- index .Values "ca-cert" }}
{{- end }}
{{- end }}

{{/*
Node directories mounted whole (hostPath type Directory), as a JSON list: the
directories of the files the plugin re-reads (a Vault token, an AppRole
secret_id, the CA certificate when it comes from the node, the client
certificate and key of cert auth). A file mount would keep showing the old
file once a new one is renamed over it, as Vault Agent and certificate
renewals do; a directory mount sees the new one. So the directory must hold
nothing else of the node's: checkHostDirs refuses the shared ones. Each is
mounted at the same path as on the node.
*/}}
{{- define "vault-kms-plugin.hostDirs" -}}
{{- $dirs := list }}
{{- if and (not .Values.caBundle) (index .Values "ca-cert") }}
{{- $dirs = append $dirs (dir (index .Values "ca-cert")) }}
{{- end }}
{{- if eq .Values.auth.method "cert" }}
{{- $dirs = append $dirs (dir .Values.auth.cert.certFile) }}
{{- $dirs = append $dirs (dir .Values.auth.cert.keyFile) }}
{{- end }}
{{- if eq .Values.auth.method "token" }}
{{- $dirs = append $dirs (dir .Values.auth.token.tokenFile) }}
{{- end }}
{{- if eq .Values.auth.method "approle" }}
{{- $dirs = append $dirs (dir .Values.auth.approle.secretIdFile) }}
{{- end }}
{{- if and .Values.staticPod.enabled (has .Values.auth.method (list "kubernetes" "jwt")) }}
{{- $dirs = append $dirs (dir (include "vault-kms-plugin.loginJWTFile" (dict "root" . "static" true))) }}
{{- end }}
{{- uniq $dirs | toJson }}
{{- end }}

{{/*
auth.kubernetes.jwtFile, or "" when auth.kubernetes is not set at all.
*/}}
{{- define "vault-kms-plugin.jwtFile" -}}
{{- (.Values.auth.kubernetes | default dict).jwtFile | default "" }}
{{- end }}

{{/*
auth.jwt.jwtFile, or "" when auth.jwt is not set at all.
*/}}
{{- define "vault-kms-plugin.jwtMethodFile" -}}
{{- (.Values.auth.jwt | default dict).jwtFile | default "" }}
{{- end }}

{{/*
The JWT file the kubernetes and jwt methods log in with
(VAULT_KMS_SA_TOKEN_FILE), "" for the other methods. Call it with (dict
"root" $ "static" <bool>): auth.jwt.jwtFile when given, else the static
pod's auth.kubernetes.jwtFile on the node, else the projected token.
*/}}
{{- define "vault-kms-plugin.loginJWTFile" -}}
{{- $static := .static }}
{{- with .root }}
{{- $file := "" }}
{{- if eq .Values.auth.method "jwt" }}
{{- $file = include "vault-kms-plugin.jwtMethodFile" . }}
{{- else if and $static (eq .Values.auth.method "kubernetes") }}
{{- $file = include "vault-kms-plugin.jwtFile" . }}
{{- end }}
{{- if has .Values.auth.method (list "kubernetes" "jwt") }}
{{- $file | default (printf "%s/token" (include "vault-kms-plugin.saTokenDir" .)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"true" when the pod logs in with its projected service-account token, which
only the DaemonSet has. Same dict as loginJWTFile.
*/}}
{{- define "vault-kms-plugin.projectedToken" -}}
{{- if and (not .static) (eq (include "vault-kms-plugin.loginJWTFile" .) (printf "%s/token" (include "vault-kms-plugin.saTokenDir" .root))) }}true{{ end }}
{{- end }}

{{/*
The plugin's settings as the environment variables the binary reads
(`vault-kms-plugin --help` lists them), one `NAME: "value"` line each. The
DaemonSet gets them from the ConfigMap, the static pod inline. Call it with
(dict "root" $ "static" <bool>): the static pod differs in two variables
only, the health address (the node's loopback, since it shares the node's
network) and the service-account JWT (a file on the node, since a static pod
has no projected token).
*/}}
{{- define "vault-kms-plugin.env" -}}
{{- $static := .static }}
{{- with .root -}}
VAULT_ADDR: {{ .Values.addr | quote }}
VAULT_KMS_KEY_NAMES: {{ join "," .Values.keyNames | quote }}
VAULT_KMS_TRANSIT_PATH: {{ .Values.transitPath | quote }}
VAULT_KMS_LISTEN: {{ include "vault-kms-plugin.endpoint" . | quote }}
VAULT_KMS_SOCKET_MODE: {{ .Values.socket.mode | quote }}
{{- if not (kindIs "invalid" .Values.socket.group) }}
VAULT_KMS_SOCKET_GROUP: {{ int .Values.socket.group | toString | quote }}
{{- end }}
{{- with .Values.statusGrace }}
VAULT_KMS_STATUS_GRACE: {{ . | quote }}
{{- end }}
VAULT_KMS_HEALTH_ADDR: {{ printf "%s:%d" (include "vault-kms-plugin.healthHost" (dict "root" . "static" $static)) (int .Values.health.port) | quote }}
VAULT_KMS_LOG_LEVEL: {{ .Values.logLevel | quote }}
VAULT_KMS_LOG_FORMAT: {{ .Values.logFormat | quote }}
VAULT_KMS_AUTH_METHOD: {{ .Values.auth.method | quote }}
{{- with .Values.auth.mount }}
VAULT_KMS_AUTH_MOUNT: {{ . | quote }}
{{- end }}
{{- if has .Values.auth.method (list "kubernetes" "jwt") }}
VAULT_KMS_AUTH_ROLE: {{ .Values.auth.role | quote }}
VAULT_KMS_SA_TOKEN_FILE: {{ include "vault-kms-plugin.loginJWTFile" (dict "root" . "static" $static) | quote }}
{{- else if eq .Values.auth.method "approle" }}
VAULT_KMS_APPROLE_ROLE_ID: {{ .Values.auth.approle.roleId | quote }}
VAULT_KMS_APPROLE_SECRET_ID_FILE: {{ .Values.auth.approle.secretIdFile | quote }}
{{- else if eq .Values.auth.method "token" }}
VAULT_KMS_TOKEN_FILE: {{ .Values.auth.token.tokenFile | quote }}
{{- else if eq .Values.auth.method "cert" }}
{{- with .Values.auth.role }}
VAULT_KMS_AUTH_ROLE: {{ . | quote }}
{{- end }}
VAULT_CLIENT_CERT: {{ .Values.auth.cert.certFile | quote }}
VAULT_CLIENT_KEY: {{ .Values.auth.cert.keyFile | quote }}
{{- end }}
{{- with include "vault-kms-plugin.caCertPath" . }}
VAULT_CACERT: {{ . | quote }}
{{- end }}
{{- with .Values.tlsServerName }}
VAULT_TLS_SERVER_NAME: {{ . | quote }}
{{- end }}
{{- if .Values.tlsSkipVerify }}
VAULT_SKIP_VERIFY: "true"
{{- end }}
{{- with .Values.vaultNamespace }}
VAULT_NAMESPACE: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The static pod's env: the settings of vault-kms-plugin.env inline, since a
static pod can read no ConfigMap, then GOMEMLIMIT, then extraEnv. A setting
that extraEnv also names is left out, so that extraEnv wins, as it does over
the DaemonSet's envFrom.
*/}}
{{- define "vault-kms-plugin.inlineEnv" -}}
{{- $env := include "vault-kms-plugin.env" (dict "root" . "static" true) | fromYaml }}
{{- range .Values.extraEnv }}
{{- $_ := unset $env .name }}
{{- end -}}
env:
  {{- range $name, $value := $env }}
  - name: {{ $name }}
    value: {{ $value | quote }}
  {{- end }}
  {{- with include "vault-kms-plugin.memoryLimitEnv" . }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
GOMEMLIMIT from the container's memory limit, as env entries, when
resources.limits.memory is set and extraEnv does not set GOMEMLIMIT itself.
The downward API gives the limit in MiB (divisor 1Mi), and GOMEMLIMIT reads
that number followed by six zeros as bytes: 10^6/2^20, 95.4% of the limit.
No closer fraction can be written: the divisor must be a unit, and
GOMEMLIMIT knows no decimal unit (MB).
*/}}
{{- define "vault-kms-plugin.memoryLimitEnv" -}}
{{- $limits := (.Values.resources | default dict).limits | default dict }}
{{- $own := false }}
{{- range .Values.extraEnv }}
{{- if eq .name "GOMEMLIMIT" }}{{ $own = true }}{{ end }}
{{- end }}
{{- if and $limits.memory (not $own) -}}
- name: MEMORY_LIMIT_MIB
  valueFrom:
    resourceFieldRef:
      containerName: vault-kms-plugin
      resource: limits.memory
      divisor: 1Mi
- name: GOMEMLIMIT
  value: "$(MEMORY_LIMIT_MIB)000000"
{{- end }}
{{- end }}

{{/*
Checksum of the settings, so that a change rolls the pods.
*/}}
{{- define "vault-kms-plugin.configChecksum" -}}
{{- $cfg := include (print $.Template.BasePath "/configmap.yaml") . }}
{{- $ca := include (print $.Template.BasePath "/configmap-ca.yaml") . }}
{{- print $cfg $ca | sha256sum }}
{{- end }}

{{/*
The pod's securityContext: root (uid 0), because the socket directory on the
node is root's and kube-apiserver, root too, must open the 0600 socket. What
root may do is taken back in the container's securityContext.
*/}}
{{- define "vault-kms-plugin.podSecurityContext" -}}
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The container's securityContext: no privilege escalation, a read-only root
filesystem, every capability dropped.
*/}}
{{- define "vault-kms-plugin.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
The plugin container's volumeMounts, as a list. Call it with (dict "root" $
"static" <bool>): the static pod mounts no volume backed by an API object (the
projected token, the caBundle ConfigMap), only directories of the node.
*/}}
{{- define "vault-kms-plugin.volumeMounts" -}}
{{- $static := .static }}
{{- with .root -}}
- name: socket-dir
  mountPath: {{ include "vault-kms-plugin.socketDir" . }}
{{- if include "vault-kms-plugin.projectedToken" (dict "root" . "static" $static) }}
- name: sa-token
  mountPath: {{ include "vault-kms-plugin.saTokenDir" . }}
  readOnly: true
{{- end }}
{{- if not $static }}
{{- if .Values.caBundle }}
- name: ca-bundle
  mountPath: {{ include "vault-kms-plugin.caBundleDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- range $i, $d := include "vault-kms-plugin.hostDirs" . | fromJsonArray }}
- name: host-dir-{{ $i }}
  mountPath: {{ $d }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod's volumes, as a list, one for each mount of vault-kms-plugin.volumeMounts
(same dict). Host directories keep their path on the node.
*/}}
{{- define "vault-kms-plugin.volumes" -}}
{{- $static := .static }}
{{- with .root -}}
# The socket's directory on the node, shared with kube-apiserver.
- name: socket-dir
  hostPath:
    path: {{ include "vault-kms-plugin.socketDir" . }}
    type: DirectoryOrCreate
{{- if include "vault-kms-plugin.projectedToken" (dict "root" . "static" $static) }}
# A token the kubelet requests and refreshes for this pod: no Secret,
# so it is there before the apiserver can decrypt Secrets.
- name: sa-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: {{ .Values.auth.tokenExpirationSeconds }}
          {{- with .Values.auth.audience }}
          audience: {{ . | quote }}
          {{- end }}
{{- end }}
{{- if not $static }}
{{- if .Values.caBundle }}
- name: ca-bundle
  configMap:
    name: {{ include "vault-kms-plugin.fullname" . }}-ca
{{- end }}
{{- end }}
{{- range $i, $d := include "vault-kms-plugin.hostDirs" . | fromJsonArray }}
- name: host-dir-{{ $i }}
  hostPath:
    path: {{ $d }}
    type: Directory
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The plugin's command and arguments.
*/}}
{{- define "vault-kms-plugin.command" -}}
command:
  - /vault-kms-plugin
args:
  - serve
  {{- range .Values.extraArgs }}
  - {{ . | quote }}
  {{- end }}
{{- end }}

{{/*
The address the health server (/livez, /readyz, /metrics) listens on, without
the port. Call it with (dict "root" $ "static" <bool>). On the node's network
(hostNetwork, and always for the static pod) it is the node's loopback unless
health.bindAddress says otherwise, so that /metrics is not served to the
node's network, and the probes then name host 127.0.0.1. A DaemonSet with the
metrics Service or ServiceMonitor asks for /metrics on the network and gets
every address. On the pod's network it is every address of the pod, where
the kubelet probes it.
*/}}
{{- define "vault-kms-plugin.healthHost" -}}
{{- $root := .root }}
{{- $scraped := and (not .static) (or $root.Values.metrics.service.enabled $root.Values.metrics.serviceMonitor.enabled) }}
{{- if $root.Values.health.bindAddress }}
{{- $root.Values.health.bindAddress }}
{{- else if or .static (and $root.Values.hostNetwork (not $scraped)) }}
{{- print "127.0.0.1" }}
{{- end }}
{{- end }}

{{/*
The liveness and readiness probes on the health server. Call it with (dict
"root" $ "static" <bool>): the DaemonSet's pod probes its named port, the
static pod the port number; both name host 127.0.0.1 when the health server
listens on the node's loopback only (healthHost). Readiness is /livez, which
needs no Vault, unless rollout.readinessFollowsVault: the DaemonSet
controller replaces unready pods all at once, so a readiness on Vault turns
an upgrade during a Vault outage into every plugin restarting together.
*/}}
{{- define "vault-kms-plugin.probes" -}}
{{- $static := .static }}
{{- with .root -}}
{{- $port := "http" }}
{{- if $static }}
{{- $port = int .Values.health.port }}
{{- end -}}
livenessProbe:
  httpGet:
    {{- if eq (include "vault-kms-plugin.healthHost" (dict "root" . "static" $static)) "127.0.0.1" }}
    host: 127.0.0.1
    {{- end }}
    path: /livez
    port: {{ $port }}
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    {{- if eq (include "vault-kms-plugin.healthHost" (dict "root" . "static" $static)) "127.0.0.1" }}
    host: 127.0.0.1
    {{- end }}
    path: {{ ternary "/readyz" "/livez" .Values.rollout.readinessFollowsVault }}
    port: {{ $port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}
{{- end }}
