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
Labels of the helm test pod: the common labels, but never the DaemonSet's
selector (its app.kubernetes.io/name is <name>-test). A pod that matches the
selector is adopted by the DaemonSet controller, which deletes it as a
surplus pod on its node: `helm test` then fails before the probe runs.
*/}}
{{- define "vault-kms-plugin.testLabels" -}}
helm.sh/chart: {{ include "vault-kms-plugin.chart" . }}
app.kubernetes.io/name: {{ include "vault-kms-plugin.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
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
