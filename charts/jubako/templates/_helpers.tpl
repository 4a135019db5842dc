{{/* Names ---------------------------------------------------------------------- */}}
{{- define "jubako.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jubako.fullname" -}}
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

{{- define "jubako.registry.fullname" -}}{{ include "jubako.fullname" . | trunc 54 | trimSuffix "-" }}-registry{{- end -}}
{{- define "jubako.operator.fullname" -}}{{ include "jubako.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- define "jubako.operator.metricsName" -}}{{ include "jubako.fullname" . | trunc 46 | trimSuffix "-" }}-operator-metrics{{- end -}}
{{- define "jubako.registry.migrateName" -}}{{ include "jubako.fullname" . | trunc 46 | trimSuffix "-" }}-registry-migrate{{- end -}}
{{- define "jubako.registry.serviceAccountName" -}}
{{- if .Values.registry.serviceAccount.create -}}
{{- default (include "jubako.registry.fullname" .) .Values.registry.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.registry.serviceAccount.name -}}
{{- end -}}
{{- end -}}
{{- define "jubako.postgresql.fullname" -}}{{ include "jubako.fullname" . | trunc 52 | trimSuffix "-" }}-postgresql{{- end -}}

{{/* Labels ------------------------------------------------------------------------ */}}
{{- define "jubako.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "jubako.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jubako
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "registry") */}}
{{- define "jubako.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jubako.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "jubako.componentLabels" -}}
{{ include "jubako.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images -------------------------------------------------------------------------- */}}
{{- define "jubako.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "jubako.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Registry ----------------------------------------------------------------------- */}}
{{- define "jubako.registry.url" -}}
{{- if and (not .Values.registry.enabled) (not .Values.operator.registryUrl) -}}
{{- fail "registry.enabled=false needs operator.registryUrl: the operator would point at a registry this release does not install" -}}
{{- end -}}
{{- if .Values.operator.registryUrl -}}
{{- .Values.operator.registryUrl -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%d" (include "jubako.registry.fullname" .) .Release.Namespace (int .Values.registry.service.port) -}}
{{- end -}}
{{- end -}}

{{/* True when the registry keeps its metadata in PostgreSQL (external or in-chart). */}}
{{- define "jubako.registry.externalDatabase" -}}
{{- if or .Values.registry.database.existingSecret .Values.postgresql.enabled -}}true{{- end -}}
{{- end -}}

{{- define "jubako.registry.secretKeySecret" -}}
{{- default (include "jubako.registry.fullname" .) .Values.registry.secretKey.existingSecret -}}
{{- end -}}

{{- define "jubako.postgresql.secret" -}}
{{- default (include "jubako.postgresql.fullname" .) .Values.postgresql.existingSecret -}}
{{- end -}}

{{/* Environment shared by the registry Deployment and its migration Job. */}}
{{- define "jubako.registry.env" -}}
- name: JUBAKO_REGISTRY_ENVIRONMENT
  value: {{ .Values.registry.environment | quote }}
- name: JUBAKO_REGISTRY_DATA_DIR
  value: /data
- name: JUBAKO_REGISTRY_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "jubako.registry.secretKeySecret" . }}
      key: {{ .Values.registry.secretKey.key }}
{{- if .Values.registry.database.existingSecret }}
- name: JUBAKO_REGISTRY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.registry.database.existingSecret }}
      key: {{ .Values.registry.database.existingSecretKey }}
{{- else if .Values.postgresql.enabled }}
- name: JUBAKO_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "jubako.postgresql.secret" . }}
      key: password
- name: JUBAKO_REGISTRY_DATABASE_URL
  value: {{ printf "postgresql+psycopg2://%s:$(JUBAKO_POSTGRES_PASSWORD)@%s:5432/%s" .Values.postgresql.username (include "jubako.postgresql.fullname" .) .Values.postgresql.database | quote }}
{{- end }}
{{- if include "jubako.registry.externalDatabase" . }}
- name: JUBAKO_REGISTRY_MIGRATE
  value: {{ ternary "false" "true" .Values.registry.migrations.enabled | quote }}
{{- end }}
{{- with .Values.registry.s3 }}
{{- if .bucket }}
- name: JUBAKO_REGISTRY_STORAGE
  value: s3
- name: JUBAKO_REGISTRY_S3_BUCKET
  value: {{ .bucket | quote }}
- name: JUBAKO_REGISTRY_S3_REGION
  value: {{ .region | quote }}
- name: JUBAKO_REGISTRY_S3_ADDRESSING_STYLE
  value: {{ .addressingStyle | quote }}
- name: JUBAKO_REGISTRY_PRESIGN
  value: {{ .presign | quote }}
{{- with .endpoint }}
- name: JUBAKO_REGISTRY_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .publicEndpoint }}
- name: JUBAKO_REGISTRY_S3_PUBLIC_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .prefix }}
- name: JUBAKO_REGISTRY_S3_PREFIX
  value: {{ . | quote }}
{{- end }}
{{- if .existingSecret }}
- name: JUBAKO_REGISTRY_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: JUBAKO_REGISTRY_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.registry.publicUrl }}
- name: JUBAKO_REGISTRY_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.registry.bootstrapToken.existingSecret }}
- name: JUBAKO_REGISTRY_BOOTSTRAP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.registry.bootstrapToken.existingSecret }}
      key: {{ .Values.registry.bootstrapToken.key }}
{{- end }}
{{- with .Values.registry.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "jubako.securityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}
