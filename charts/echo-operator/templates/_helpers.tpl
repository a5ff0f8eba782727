{{/* The chart's name, or nameOverride: the app.kubernetes.io/name label. */}}
{{- define "echo-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's full name, at most 63 characters (a DNS label): fullnameOverride, else the release
name with the chart's name (or nameOverride) unless it already contains it.
*/}}
{{- define "echo-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A label value: at most 63 characters, `+` (semver build metadata, invalid in a label) as `_`,
as Helm's scaffold does, and starting and ending with a letter or digit.
*/}}
{{- define "echo-operator.labelValue" -}}
{{- . | replace "+" "_" | trunc 63 | trimAll "-_." -}}
{{- end -}}

{{- define "echo-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "echo-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "echo-operator.labels" -}}
{{ include "echo-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "echo-operator.labelValue" .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "echo-operator.labelValue" (printf "%s-%s" .Chart.Name .Chart.Version) | quote }}
{{- end -}}

{{/*
The pod's labels: the selector labels win over podLabels (a pod the selector misses is refused),
and podLabels over the other common labels.
*/}}
{{- define "echo-operator.podLabels" -}}
{{- $selector := include "echo-operator.selectorLabels" . | fromYaml -}}
{{- toYaml (merge $selector (deepCopy (.Values.podLabels | default dict)) (include "echo-operator.labels" . | fromYaml)) -}}
{{- end -}}

{{/* The image: repository@digest when a digest is set (the tag is then ignored), else repository:tag. */}}
{{- define "echo-operator.image" -}}
{{- with .Values.image -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (.tag | default $.Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}
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
# The Deployments' owner references set blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift) allows only with this.
- apiGroups: [example.com]
  resources: [echoes/finalizers]
  verbs: [update]
# get: a Deployment the label-filtered cache does not hold may still exist; it is read before
# one is created, so that nobody else's is taken over.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/*
"true" when the operator elects a leader through a Lease, else empty: leaderElection.enabled
when true or false, otherwise (null) more than one replica.
*/}}
{{- define "echo-operator.leaderElection" -}}
{{- $enabled := .Values.leaderElection.enabled -}}
{{- if kindIs "bool" $enabled -}}
{{- if $enabled }}true{{ end -}}
{{- else if gt (int .Values.replicaCount) 1 -}}
true
{{- end -}}
{{- end -}}

{{/*
"true" when the replicas share the Echoes (--sharding): sharding.enabled with more than one
replica. One replica has no one to share with, so it runs as without sharding.
*/}}
{{- define "echo-operator.sharding" -}}
{{- if and (.Values.sharding | default dict).enabled (gt (int .Values.replicaCount) 1) }}true{{ end -}}
{{- end -}}

{{/*
Fails on leader election values the operator would refuse at start, which values.schema.json
cannot check (it compares no two values), and on several replicas with election forced off,
which the schema refuses too but can be skipped. Included once, by deployment.yaml.
*/}}
{{- define "echo-operator.validateLeaderElection" -}}
{{- $election := .Values.leaderElection -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "echo-operator.leaderElection" .)) -}}
{{- fail "leaderElection.enabled is false with more than one replica: every replica would reconcile; set it to true or null, or replicaCount to 1" -}}
{{- end -}}
{{- if include "echo-operator.leaderElection" . -}}
{{- $lease := include "echo-operator.seconds" $election.leaseDuration | int -}}
{{- $renew := include "echo-operator.seconds" $election.renewDeadline | int -}}
{{- $retry := include "echo-operator.seconds" $election.retryPeriod | int -}}
{{- if le $lease $renew -}}
{{- fail (printf "leaderElection.leaseDuration (%s) must be longer than leaderElection.renewDeadline (%s)" (include "echo-operator.duration" $election.leaseDuration) (include "echo-operator.duration" $election.renewDeadline)) -}}
{{- end -}}
{{- if le (mul $renew 10) (mul $retry 12) -}}
{{- fail (printf "leaderElection.renewDeadline (%s) must be longer than 1.2 × leaderElection.retryPeriod (%s)" (include "echo-operator.duration" $election.renewDeadline) (include "echo-operator.duration" $election.retryPeriod)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A duration value as the operator's flag takes it: a string as given; a number (--set 90, or a
values file, where Helm reads numbers as floats: 3e+06) as whole seconds.
*/}}
{{- define "echo-operator.duration" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ int64 . }}{{ end -}}
{{- end -}}

{{/* A duration as the operator reads it (90, 90s, 15m, 1h) in seconds. */}}
{{- define "echo-operator.seconds" -}}
{{- $duration := include "echo-operator.duration" . -}}
{{- $unit := regexFind "[smh]$" $duration -}}
{{- mul (trimSuffix $unit $duration | int64) (get (dict "" 1 "s" 1 "m" 60 "h" 3600) $unit) -}}
{{- end -}}

{{/*
Fails on an operator duration longer than Node's timers hold (2^31 - 1 ms, about 24.8 days): the
operator would take it, and Node would fire the timer every millisecond instead.
*/}}
{{- define "echo-operator.validateDurations" -}}
{{- $durations := dict "operator.resyncPeriod" .Values.operator.resyncPeriod -}}
{{- with .Values.leaderElection -}}
{{- $_ := set $durations "leaderElection.leaseDuration" .leaseDuration -}}
{{- $_ := set $durations "leaderElection.renewDeadline" .renewDeadline -}}
{{- $_ := set $durations "leaderElection.retryPeriod" .retryPeriod -}}
{{- end -}}
{{- range $name, $value := $durations -}}
{{- if gt (include "echo-operator.seconds" $value | int64) 2147483 -}}
{{- fail (printf "%s (%s) must be at most 596h: Node's timers hold no more than 24.8 days" $name (include "echo-operator.duration" $value)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A Prometheus duration (1h30m, 15s, 500ms, 1d) in milliseconds. */}}
{{- define "echo-operator.promMillis" -}}
{{- $ms := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|[smhdwy])" (toString .) -1 -}}
{{- $unit := regexFind "(ms|[smhdwy])$" . -}}
{{- $total = add $total (mul (trimSuffix $unit . | int64) (get $ms $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* The metrics port's name, on the container and the Service: https-metrics, or http-metrics when not secure. */}}
{{- define "echo-operator.metricsPortName" -}}
{{- if .Values.metrics.secure }}https-metrics{{ else }}http-metrics{{ end -}}
{{- end -}}

{{/* Where metrics.certSecret is mounted: the operator's --metrics-cert-dir. */}}
{{- define "echo-operator.metricsCertDir" -}}
/etc/echo-operator/metrics-certs
{{- end -}}

{{/*
Fails on metrics values the operator would refuse at start, which values.schema.json cannot
compare: the metrics port on the health port, a certificate for plain metrics. Included once, by
deployment.yaml.
*/}}
{{- define "echo-operator.validateMetrics" -}}
{{- if eq (int .Values.metrics.port) (int .Values.service.port) -}}
{{- fail (printf "metrics.port (%d) must differ from service.port: the probes stay on service.port and /metrics has a port of its own" (int .Values.metrics.port)) -}}
{{- end -}}
{{- if and .Values.metrics.certSecret (not .Values.metrics.secure) -}}
{{- fail "metrics.certSecret is set but metrics.secure is false: plain metrics use no certificate" -}}
{{- end -}}
{{- end -}}
