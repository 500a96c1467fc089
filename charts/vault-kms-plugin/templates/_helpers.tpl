{{/*
Name of the chart, overridable with nameOverride.
*/}}
{{- define "vault-kms-plugin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources. The release name is used alone when it
already holds the chart name, as in `helm install vault-kms-plugin ...`.
*/}}
{{- define "vault-kms-plugin.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "vault-kms-plugin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. They are part of the DaemonSet's immutable selector: never
add to or change them, or upgrades fail.
*/}}
{{- define "vault-kms-plugin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vault-kms-plugin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "vault-kms-plugin.labels" -}}
helm.sh/chart: {{ include "vault-kms-plugin.chart" . }}
{{ include "vault-kms-plugin.selectorLabels" . }}
app.kubernetes.io/version: {{ include "vault-kms-plugin.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vault-kms-plugin
{{- end }}

{{/*
Name of the service account.
*/}}
{{- define "vault-kms-plugin.serviceAccountName" -}}
{{- default (include "vault-kms-plugin.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/*
Image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "vault-kms-plugin.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString }}
{{- end }}

{{/*
Image reference: repository@digest when a digest is given, else repository:tag.
*/}}
{{- define "vault-kms-plugin.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "vault-kms-plugin.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Directory of the socket on the node (and in the container), without a
trailing slash.
*/}}
{{- define "vault-kms-plugin.socketDir" -}}
{{- $d := trimSuffix "/" .Values.socket.hostDir }}
{{- if eq $d "" }}/{{ else }}{{ $d }}{{ end }}
{{- end }}

{{/*
Path of the socket file: the one path shared by the plugin, the helm test pod
and kube-apiserver's EncryptionConfiguration.
*/}}
{{- define "vault-kms-plugin.socketPath" -}}
{{- printf "%s/%s" (include "vault-kms-plugin.socketDir" . | trimSuffix "/") .Values.socket.file }}
{{- end }}

{{/*
The socket as a KMS endpoint, as VAULT_KMS_LISTEN and the
EncryptionConfiguration write it.
*/}}
{{- define "vault-kms-plugin.endpoint" -}}
unix://{{ include "vault-kms-plugin.socketPath" . }}
{{- end }}

{{/*
Where the projected service-account token is mounted (kubernetes auth).
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
Node files mounted one by one (hostPath type File), as a JSON list: the CA
certificate when it comes from the node, and the client certificate and key
of cert auth. They are mounted at the same path as on the node.
*/}}
{{- define "vault-kms-plugin.hostFiles" -}}
{{- $files := list }}
{{- if and (not .Values.caBundle) (index .Values "ca-cert") }}
{{- $files = append $files (index .Values "ca-cert") }}
{{- end }}
{{- if eq .Values.auth.method "cert" }}
{{- $files = append $files .Values.auth.cert.certFile }}
{{- $files = append $files .Values.auth.cert.keyFile }}
{{- end }}
{{- uniq $files | toJson }}
{{- end }}

{{/*
Node directories mounted whole (hostPath type Directory), as a JSON list: the
directories of the files the plugin re-reads (a Vault token, an AppRole
secret_id). A file mount would keep showing the old file once a new one is
renamed over it, as Vault Agent does; a directory mount sees the new one.
*/}}
{{- define "vault-kms-plugin.hostDirs" -}}
{{- $dirs := list }}
{{- if eq .Values.auth.method "token" }}
{{- $dirs = append $dirs (dir .Values.auth.token.tokenFile) }}
{{- end }}
{{- if eq .Values.auth.method "approle" }}
{{- $dirs = append $dirs (dir .Values.auth.approle.secretIdFile) }}
{{- end }}
{{- if and .Values.staticPod.enabled (eq .Values.auth.method "kubernetes") }}
{{- $dirs = append $dirs (dir (include "vault-kms-plugin.jwtFile" .)) }}
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
VAULT_KMS_HEALTH_ADDR: {{ printf "%s:%d" (include "vault-kms-plugin.healthHost" (dict "root" . "static" $static)) (int .Values.health.port) | quote }}
VAULT_KMS_LOG_LEVEL: {{ .Values.logLevel | quote }}
VAULT_KMS_LOG_FORMAT: {{ .Values.logFormat | quote }}
VAULT_KMS_AUTH_METHOD: {{ .Values.auth.method | quote }}
{{- with .Values.auth.mount }}
VAULT_KMS_AUTH_MOUNT: {{ . | quote }}
{{- end }}
{{- if eq .Values.auth.method "kubernetes" }}
VAULT_KMS_AUTH_ROLE: {{ .Values.auth.role | quote }}
{{- if $static }}
VAULT_KMS_SA_TOKEN_FILE: {{ include "vault-kms-plugin.jwtFile" . | quote }}
{{- else }}
VAULT_KMS_SA_TOKEN_FILE: {{ printf "%s/token" (include "vault-kms-plugin.saTokenDir" .) | quote }}
{{- end }}
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
Refuses values the DaemonSet cannot honour.
*/}}
{{- define "vault-kms-plugin.checkDaemonSet" -}}
{{- if include "vault-kms-plugin.jwtFile" . }}
{{- fail "auth.kubernetes.jwtFile is for the static pod only (staticPod.enabled): the DaemonSet logs in with its own projected service-account token. Remove it." }}
{{- end }}
{{- end }}

{{/*
Refuses values a static pod cannot honour. A static pod is started by the
kubelet from a file, before and without the apiserver: it can reference no
API object (no ServiceAccount, ConfigMap or Secret).
*/}}
{{- define "vault-kms-plugin.checkStaticPod" -}}
{{- if and (eq .Values.auth.method "kubernetes") (not (include "vault-kms-plugin.jwtFile" .)) }}
{{- fail "staticPod.enabled with auth.method kubernetes needs auth.kubernetes.jwtFile, a file on the node holding the JWT to log in with: a static pod has no service-account token. Or use auth.method approle or token, which need nothing from the cluster." }}
{{- end }}
{{- if .Values.caBundle }}
{{- fail "staticPod.enabled: caBundle is shipped in a ConfigMap, which a static pod cannot mount. Put the CA in a file on each control-plane node and set ca-cert to its path." }}
{{- end }}
{{- if .Values.imagePullSecrets }}
{{- fail "staticPod.enabled: imagePullSecrets name Secrets, which a static pod cannot use. Make the image pullable anonymously or pre-pull it on the node." }}
{{- end }}
{{- range $v := .Values.extraVolumes }}
{{- range $k := list "configMap" "secret" "projected" "persistentVolumeClaim" "ephemeral" }}
{{- if hasKey $v $k }}
{{- fail (printf "staticPod.enabled: extraVolumes %q is a %s volume, which a static pod cannot use: use a hostPath or an emptyDir." $v.name $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $e := .Values.extraEnv }}
{{- if and $e.valueFrom (or (hasKey $e.valueFrom "configMapKeyRef") (hasKey $e.valueFrom "secretKeyRef")) }}
{{- fail (printf "staticPod.enabled: extraEnv %s comes from a ConfigMap or a Secret, which a static pod cannot read: give its value inline." $e.name) }}
{{- end }}
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
