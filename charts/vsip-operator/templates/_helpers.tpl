{{/* Chart name. */}}
{{- define "vsip.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name of the operator's objects. */}}
{{- define "vsip.fullname" -}}
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

{{- define "vsip.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object the chart renders. */}}
{{- define "vsip.labels" -}}
helm.sh/chart: {{ include "vsip.chart" . }}
{{ include "vsip.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: vsip
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of the operator pods (distinct from the proxies': component=proxy). */}}
{{- define "vsip.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vsip.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "vsip.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vsip.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vsip.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The proxies' image: fleet.image, else the operator's image. */}}
{{- define "vsip.proxyImage" -}}
{{- $repo := default .Values.image.repository .Values.fleet.image.repository -}}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.fleet.image.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{/* Restricted Pod Security Standard, container level. */}}
{{- define "vsip.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
