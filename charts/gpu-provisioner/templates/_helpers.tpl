{{/* Full name of the release's objects. */}}
{{- define "gpu-provisioner.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gpu-provisioner.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gpu-provisioner.labels" -}}
{{ include "gpu-provisioner.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "gpu-provisioner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gpu-provisioner.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* True when the pod should use Azure workload identity. */}}
{{- define "gpu-provisioner.workloadIdentity" -}}
{{- if and (eq .Values.provider "azure") (eq .Values.azure.credential "workload-identity") -}}true{{- end -}}
{{- end -}}

{{/* Fail early on an incomplete azure configuration. */}}
{{- define "gpu-provisioner.validate" -}}
{{- if eq .Values.provider "azure" -}}
{{- $_ := required "azure.subscriptionId is required when provider=azure" .Values.azure.subscriptionId -}}
{{- $_ := required "azure.resourceGroup is required when provider=azure" .Values.azure.resourceGroup -}}
{{- $_ := required "azure.clusterName is required when provider=azure" .Values.azure.clusterName -}}
{{- if include "gpu-provisioner.workloadIdentity" . -}}
{{- $_ := required "workloadIdentity.clientId is required when azure.credential=workload-identity" .Values.workloadIdentity.clientId -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.provider "local" -}}
{{- $_ := required "local.agentUrl is required when provider=local (hack/local-cluster.sh info prints NODE_AGENT)" .Values.local.agentUrl -}}
{{- $_ := required "local.tokenSecret.name is required when provider=local" .Values.local.tokenSecret.name -}}
{{- end -}}
{{- end -}}
