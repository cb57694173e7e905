{{/* Names are truncated at 63 characters: Kubernetes names of Services and labels are DNS labels. */}}
{{- define "kaito-workspace.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kaito-workspace.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kaito-workspace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kaito-workspace.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kaito-workspace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kaito-workspace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kaito-workspace.serviceAccountName" -}}
{{- include "kaito-workspace.fullname" . }}
{{- end }}

{{- define "kaito-workspace.webhookServiceName" -}}
{{- printf "%s-webhook" (include "kaito-workspace.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kaito-workspace.webhookSecretName" -}}
{{- printf "%s-webhook-cert" (include "kaito-workspace.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The ValidatingWebhookConfiguration name is fixed: the controller patches its caBundle. */}}
{{- define "kaito-workspace.webhookConfigName" -}}
validation.workspace.kaito.sh
{{- end }}

{{/* Controller settings as KAITO_CONTROLLER_* variables (kaito_controller/settings.py). */}}
{{- define "kaito-workspace.env" -}}
- name: KAITO_CONTROLLER_RELEASE_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: KAITO_CONTROLLER_NODE_AUTO_PROVISIONING
  value: {{ .Values.nodeAutoProvisioning | quote }}
- name: KAITO_CONTROLLER_CLOUD_PROVIDER
  value: {{ .Values.cloudProvider | quote }}
- name: KAITO_CONTROLLER_NODE_IMAGE_FAMILY
  value: {{ .Values.nodeImageFamily | quote }}
{{- $template := deepCopy .Values.nodeClaimTemplate }}
{{- if not $template.nodeClassRef.group }}{{- $_ := unset $template "nodeClassRef" }}{{- end }}
{{- if not $template.expireAfter }}{{- $_ := unset $template "expireAfter" }}{{- end }}
- name: KAITO_CONTROLLER_NODECLAIM_TEMPLATE
  value: {{ $template | toJson | quote }}
- name: KAITO_CONTROLLER_INFERENCE_IMAGE
  value: {{ .Values.workload.inferenceImage | quote }}
- name: KAITO_CONTROLLER_TUNING_IMAGE
  value: {{ .Values.workload.tuningImage | quote }}
- name: KAITO_CONTROLLER_ADAPTER_PULLER_IMAGE
  value: {{ .Values.workload.adapterPullerImage | quote }}
- name: KAITO_CONTROLLER_IMAGE_PULL_POLICY
  value: {{ .Values.workload.imagePullPolicy | quote }}
{{- with .Values.workload.inferenceBackend }}
- name: KAITO_CONTROLLER_INFERENCE_BACKEND
  value: {{ . | quote }}
{{- end }}
{{- with .Values.workload.modelOverride }}
- name: KAITO_CONTROLLER_MODEL_OVERRIDE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.workload.modelOverrideImage }}
- name: KAITO_CONTROLLER_MODEL_OVERRIDE_IMAGE
  value: {{ . | quote }}
{{- end }}
- name: KAITO_CONTROLLER_REGISTRY_PLAIN_HTTP
  value: {{ .Values.workload.registryPlainHTTP | quote }}
- name: KAITO_CONTROLLER_NODE_WEIGHTS_CACHE
  value: {{ .Values.workload.nodeWeightsCache | quote }}
- name: KAITO_CONTROLLER_WEBHOOK_ENABLED
  value: {{ .Values.webhook.enabled | quote }}
- name: KAITO_CONTROLLER_WEBHOOK_PORT
  value: {{ .Values.webhook.port | quote }}
- name: KAITO_CONTROLLER_WEBHOOK_HOSTS
  value: {{ list (printf "%s.%s.svc" (include "kaito-workspace.webhookServiceName" .) .Release.Namespace) (printf "%s.%s.svc.cluster.local" (include "kaito-workspace.webhookServiceName" .) .Release.Namespace) "127.0.0.1" "localhost" | toJson | quote }}
- name: KAITO_CONTROLLER_WEBHOOK_CONFIG_NAME
  value: {{ include "kaito-workspace.webhookConfigName" . | quote }}
- name: KAITO_CONTROLLER_WEBHOOK_CERT_SECRET
  value: {{ include "kaito-workspace.webhookSecretName" . | quote }}
- name: KAITO_CONTROLLER_WEBHOOK_CERT_DAYS
  value: {{ .Values.webhook.certDays | quote }}
- name: KAITO_CONTROLLER_WEBHOOK_RENEW_BEFORE_DAYS
  value: {{ .Values.webhook.renewBeforeDays | quote }}
- name: KAITO_CONTROLLER_WORKERS
  value: {{ .Values.controller.workers | quote }}
- name: KAITO_CONTROLLER_RESYNC_SECONDS
  value: {{ .Values.controller.resyncSeconds | quote }}
- name: KAITO_CONTROLLER_NOT_READY_REQUEUE_SECONDS
  value: {{ .Values.controller.notReadyRequeueSeconds | quote }}
- name: KAITO_CONTROLLER_LEADER_ELECTION
  value: {{ .Values.leaderElection.enabled | quote }}
- name: KAITO_CONTROLLER_LEADER_ELECTION_LEASE_NAME
  value: {{ include "kaito-workspace.fullname" . | quote }}
- name: KAITO_CONTROLLER_LEADER_ELECTION_LEASE_DURATION_SECONDS
  value: {{ .Values.leaderElection.leaseDurationSeconds | quote }}
- name: KAITO_CONTROLLER_LEADER_ELECTION_RENEW_DEADLINE_SECONDS
  value: {{ .Values.leaderElection.renewDeadlineSeconds | quote }}
- name: KAITO_CONTROLLER_LEADER_ELECTION_RETRY_PERIOD_SECONDS
  value: {{ .Values.leaderElection.retryPeriodSeconds | quote }}
- name: KAITO_CONTROLLER_LOG_LEVEL
  value: {{ .Values.controller.logLevel | quote }}
- name: KAITO_CONTROLLER_LOG_FORMAT
  value: {{ .Values.controller.logFormat | quote }}
{{- end }}
