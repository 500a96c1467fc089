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
{{- uniq $dirs | toJson }}
{{- end }}

{{/*
Checksum of the settings, so that a change rolls the pods.
*/}}
{{- define "vault-kms-plugin.configChecksum" -}}
{{- $cfg := include (print $.Template.BasePath "/configmap.yaml") . }}
{{- $ca := include (print $.Template.BasePath "/configmap-ca.yaml") . }}
{{- print $cfg $ca | sha256sum }}
{{- end }}
