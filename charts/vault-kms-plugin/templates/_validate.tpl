{{/*
Checks of values that the schema cannot express. Every `fail` of the chart
is here, so that the refusals read as one list.
*/}}

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
