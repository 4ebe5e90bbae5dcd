{{/* The chart name (nameOverride wins). */}}
{{- define "stashlet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: fullnameOverride, else the release name when it already holds the
chart name (release "stashlet" gives "stashlet-operator", "stashlet-kubedump" ...), else
"<release>-<chart>". Cut so that the longest suffix ("-operator-grants") still fits in 63 characters.
*/}}
{{- define "stashlet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "stashlet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; "component" names the part (operator, pushgateway, rbac). */}}
{{- define "stashlet.labels" -}}
helm.sh/chart: {{ include "stashlet.chart" .root }}
{{ include "stashlet.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: stashlet
{{- end }}

{{- define "stashlet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stashlet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "stashlet.operatorName" -}}
{{- printf "%s-operator" (include "stashlet.fullname" .) }}
{{- end }}

{{- define "stashlet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stashlet.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stashlet.pushgatewayName" -}}
{{- printf "%s-pushgateway" (include "stashlet.fullname" .) }}
{{- end }}

{{- define "stashlet.kubedumpRoleName" -}}
{{- printf "%s-kubedump" (include "stashlet.fullname" .) }}
{{- end }}

{{/* Where the agents push metrics: pushgateway.url, else the chart's own Service, else nothing. */}}
{{- define "stashlet.pushgatewayURL" -}}
{{- if .Values.pushgateway.url }}
{{- .Values.pushgateway.url }}
{{- else if .Values.pushgateway.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "stashlet.pushgatewayName" .) .Release.Namespace (int .Values.pushgateway.service.port) }}
{{- end }}
{{- end }}

{{- define "stashlet.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The pod-level security context of both pods: non-root, seccomp RuntimeDefault. */}}
{{- define "stashlet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The container-level security context of both containers. */}}
{{- define "stashlet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Scheduling shared by both pods. */}}
{{- define "stashlet.scheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
