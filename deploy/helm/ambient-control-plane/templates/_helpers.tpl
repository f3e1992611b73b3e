{{/* Names and labels shared by the templates. */}}
{{- define "acp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "acp.devserverName" -}}
{{- printf "%s-devserver" (include "acp.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "acp.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{- define "acp.labels" -}}
{{ include "acp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "acp.devserverSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: devserver
{{- end -}}

{{/* The API server the control plane talks to: the devserver when enabled. */}}
{{- define "acp.apiUrl" -}}
{{- if .Values.devserver.enabled -}}
{{- printf "http://%s:%d" (include "acp.devserverName" .) (int .Values.devserver.httpPort) -}}
{{- else -}}
{{- .Values.api.url -}}
{{- end -}}
{{- end -}}

{{- define "acp.grpcAddr" -}}
{{- if .Values.devserver.enabled -}}
{{- printf "%s:%d" (include "acp.devserverName" .) (int .Values.devserver.grpcPort) -}}
{{- else -}}
{{- .Values.api.grpcAddr -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the static API token (the devserver's when enabled). */}}
{{- define "acp.tokenSecret" -}}
{{- if .Values.devserver.enabled -}}
{{- toYaml .Values.devserver.tokenSecret -}}
{{- else -}}
{{- toYaml .Values.api.tokenSecret -}}
{{- end -}}
{{- end -}}

{{- define "acp.tokenUrl" -}}
{{- if .Values.token.url -}}
{{- .Values.token.url -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%d/token" (include "acp.fullname" .) .Release.Namespace (int .Values.token.port) -}}
{{- end -}}
{{- end -}}

{{/* Restricted pod security (Pod Security Standards), uid of the images. */}}
{{- define "acp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "acp.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
