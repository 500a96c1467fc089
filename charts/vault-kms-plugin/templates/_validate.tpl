{{/*
Checks of values that the schema cannot express. Every `fail` of the chart
is here, so that the refusals read as one list.
*/}}

{{/*
Refuses values the DaemonSet cannot honour.
*/}}
{{- define "vault-kms-plugin.checkDaemonSet" -}}
{{- include "vault-kms-plugin.checkHostDirs" . }}
{{- include "vault-kms-plugin.checkSocket" . }}
{{- include "vault-kms-plugin.checkJWT" . }}
{{- with include "vault-kms-plugin.jwtMethodFile" . }}
{{- $file := . }}
{{- $mounted := false }}
{{- range $.Values.extraVolumeMounts }}
{{- if hasPrefix (printf "%s/" (trimSuffix "/" .mountPath)) $file }}{{ $mounted = true }}{{ end }}
{{- end }}
{{- if not $mounted }}
{{- fail (printf "auth.jwt.jwtFile %s is in no volume of the DaemonSet: mount the volume that holds it (a hostPath, or the CSI volume of a SPIFFE or hosted control plane's agent) with extraVolumes and extraVolumeMounts, or leave auth.jwt.jwtFile empty to log in with the pod's projected service-account token." $file) }}
{{- end }}
{{- end }}
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
{{- include "vault-kms-plugin.checkHostDirs" . }}
{{- include "vault-kms-plugin.checkSocket" . }}
{{- include "vault-kms-plugin.checkJWT" . }}
{{- if and (eq .Values.auth.method "jwt") (not (include "vault-kms-plugin.jwtMethodFile" .)) }}
{{- fail "staticPod.enabled with auth.method jwt needs auth.jwt.jwtFile, a file on the node holding the JWT to log in with: a static pod has no service-account token." }}
{{- end }}
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
Refuses the jwt method without a role. Not in the schema, so that the
message can say where the role comes from.
*/}}
{{- define "vault-kms-plugin.checkJWT" -}}
{{- if and (eq .Values.auth.method "jwt") (not .Values.auth.role) }}
{{- fail "auth.method jwt needs auth.role: set it to the role on Vault's jwt auth mount (auth.mount, default jwt) whose bound_audiences holds auth.audience and whose bound_subject is this chart's service account, system:serviceaccount:<namespace>:<serviceAccount name>." }}
{{- end }}
{{- end }}

{{/*
Directories of the node that hold far more than one credential; the binary
refuses the same (SharedHostDirs and SharedHostTrees in
src/internal/config/hostdirs.go). A directory in the first list is refused
itself; in the second, it and everything below it.
*/}}
{{- define "vault-kms-plugin.sharedHostDirs" -}}
["/", "/bin", "/boot", "/etc", "/etc/cni", "/etc/kubernetes", "/etc/kubernetes/manifests", "/etc/rancher", "/etc/ssl", "/etc/ssl/certs", "/home", "/lib", "/opt", "/root", "/run", "/sbin", "/srv", "/tmp", "/usr", "/var", "/var/lib", "/var/lib/docker", "/var/lib/rancher", "/var/log", "/var/run", "/var/tmp"]
{{- end }}
{{- define "vault-kms-plugin.sharedHostTrees" -}}
["/dev", "/proc", "/sys", "/etc/kubernetes/pki", "/var/lib/etcd", "/var/lib/kubelet", "/var/lib/containerd", "/run/containerd", "/var/run/containerd", "/run/crio", "/var/run/crio", "/run/k3s", "/var/run/k3s"]
{{- end }}

{{/*
Refuses a node directory the chart would mount whole (the socket's, and
those of the files the plugin re-reads: credentials, CA and client
certificates) when it is shared with the node's
other files: mounted into a root container, /run holds the container
runtime's socket, /etc/kubernetes the cluster's keys.
*/}}
{{- define "vault-kms-plugin.checkHostDirs" -}}
{{- $mounts := list (list "socket.hostDir" (include "vault-kms-plugin.socketDir" .) "socket.sock") }}
{{- if eq .Values.auth.method "token" }}
{{- $mounts = append $mounts (list "auth.token.tokenFile" (dir .Values.auth.token.tokenFile) "token") }}
{{- end }}
{{- if eq .Values.auth.method "approle" }}
{{- $mounts = append $mounts (list "auth.approle.secretIdFile" (dir .Values.auth.approle.secretIdFile) "token") }}
{{- end }}
{{- if and .Values.staticPod.enabled (eq .Values.auth.method "kubernetes") (include "vault-kms-plugin.jwtFile" .) }}
{{- $mounts = append $mounts (list "auth.kubernetes.jwtFile" (dir (include "vault-kms-plugin.jwtFile" .)) "token") }}
{{- end }}
{{- if and .Values.staticPod.enabled (eq .Values.auth.method "jwt") (include "vault-kms-plugin.jwtMethodFile" .) }}
{{- $mounts = append $mounts (list "auth.jwt.jwtFile" (dir (include "vault-kms-plugin.jwtMethodFile" .)) "jwt/token") }}
{{- end }}
{{- if and (not .Values.caBundle) (index .Values "ca-cert") }}
{{- $mounts = append $mounts (list "ca-cert" (dir (index .Values "ca-cert")) "tls/ca.crt") }}
{{- end }}
{{- if eq .Values.auth.method "cert" }}
{{- $mounts = append $mounts (list "auth.cert.certFile" (dir .Values.auth.cert.certFile) "tls/tls.crt") }}
{{- $mounts = append $mounts (list "auth.cert.keyFile" (dir .Values.auth.cert.keyFile) "tls/tls.key") }}
{{- end }}
{{- $dirs := include "vault-kms-plugin.sharedHostDirs" . | fromJsonArray }}
{{- $trees := include "vault-kms-plugin.sharedHostTrees" . | fromJsonArray }}
{{- range $m := $mounts }}
{{- $setting := index $m 0 }}
{{- $d := clean (printf "/%s" (index $m 1)) }}
{{- $shared := has $d $dirs }}
{{- range $tree := $trees }}
{{- if or (eq $d $tree) (hasPrefix (printf "%s/" $tree) $d) }}{{ $shared = true }}{{ end }}
{{- end }}
{{- if $shared }}
{{- fail (printf "%s: the chart would mount the node's directory %s whole into a root container, and %s is shared with the node's other files (the container runtime's socket, the cluster's keys, other pods' volumes). Put the file in a directory of its own, e.g. /var/lib/vault-kms-plugin/%s." $setting $d $d (index $m 2)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuses a socket group that the socket's mode gives no access to.
*/}}
{{- define "vault-kms-plugin.checkSocket" -}}
{{- if and (not (kindIs "invalid" .Values.socket.group)) (ne (int .Values.socket.group) 0) }}
{{- $groupBits := regexFind "[0-7]$" (trimSuffix (regexFind "[0-7]$" .Values.socket.mode) .Values.socket.mode) }}
{{- if not (has $groupBits (list "6" "7")) }}
{{- fail (printf "socket.group %d gets no access with socket.mode %q: give the group read and write, e.g. socket.mode \"0660\"." (int .Values.socket.group) .Values.socket.mode) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuses an upgrade that moves the socket, unless socket.moveAcknowledged:
kube-apiserver's EncryptionConfiguration names the old path and it would
decrypt nothing until that file is changed too. Call it with (dict "root" $
"previous" <the release's ConfigMap in the cluster, from lookup>). Without a
cluster (helm template, --dry-run) lookup finds nothing and nothing is
compared.
*/}}
{{- define "vault-kms-plugin.checkSocketMove" -}}
{{- $root := .root }}
{{- $was := (.previous | default dict).data | default dict }}
{{- $now := include "vault-kms-plugin.endpoint" $root }}
{{- if and $root.Release.IsUpgrade $was.VAULT_KMS_LISTEN (ne $was.VAULT_KMS_LISTEN $now) (not $root.Values.socket.moveAcknowledged) }}
{{- fail (printf "socket.hostDir/socket.file move the plugin's socket from %s to %s, but kube-apiserver's EncryptionConfiguration names %s: after this upgrade it could decrypt nothing until that file changes too. Keep the old socket.hostDir and socket.file, or, to move it on purpose (see the chart's README, \"Moving the socket\"), set socket.moveAcknowledged=true for this upgrade." $was.VAULT_KMS_LISTEN $now $was.VAULT_KMS_LISTEN) }}
{{- end }}
{{- end }}
