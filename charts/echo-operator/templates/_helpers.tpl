{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "echo-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "echo-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "echo-operator.labels" -}}
{{ include "echo-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "echo-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "echo-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The operator's permissions, and no more: it reads Echoes from its cache (list, watch), writes
their status with server-side apply (patch), applies Deployments (server-side apply: create when
missing, patch otherwise), deletes one only to recreate it when an immutable selector differs,
and records Events (create).
*/}}
{{- define "echo-operator.rules" -}}
- apiGroups: [example.com]
  resources: [echoes]
  verbs: [list, watch]
- apiGroups: [example.com]
  resources: [echoes/status]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end -}}
