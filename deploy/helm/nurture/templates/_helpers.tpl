{{/* Names, labels and the pieces every workload shares. */}}

{{- define "nurture.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nurture.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "nurture.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "nurture.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "nurture.component" (dict "root" $ "component" "ingest") */}}
{{- define "nurture.componentName" -}}
{{- printf "%s-%s" (include "nurture.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nurture.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nurture.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "nurture.labels" -}}
{{ include "nurture.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: nurture
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of resources that belong to no one component. */}}
{{- define "nurture.commonLabels" -}}
{{ include "nurture.labels" (dict "root" . "component" "nurture") }}
{{- end -}}

{{- define "nurture.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nurture.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image: global.imageRegistry (an umbrella chart's) wins over image.registry. */}}
{{- define "nurture.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if eq $tag "latest" -}}{{- fail "image.tag must not be latest: pin a version or a digest" -}}{{- end -}}
{{- $registry := default .Values.image.registry (.Values.global).imageRegistry -}}
{{- $repository := ternary (printf "%s/%s" $registry .Values.image.repository) .Values.image.repository (ne $registry "") -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Topic names with the prefix: "nurture.topic" (dict "root" $ "name" "nurture.events.v1") */}}
{{- define "nurture.topic" -}}
{{- printf "%s%s" .root.Values.kafka.topicPrefix .name -}}
{{- end -}}

{{/* The restricted container security context. */}}
{{- define "nurture.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "nurture.kafkaUserName" -}}
{{- printf "%s-%s" (include "nurture.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Env every service reads: logging and how to reach Kafka (per component for SASL users). */}}
{{- define "nurture.commonEnv" -}}
{{- include "nurture.validate" .root -}}
{{- $v := .root.Values -}}
- name: NURTURE_LOG_LEVEL
  value: {{ $v.logging.level | quote }}
- name: NURTURE_LOG_FORMAT
  value: {{ $v.logging.format | quote }}
- name: NURTURE_TOPIC_PREFIX
  value: {{ $v.kafka.topicPrefix | quote }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if $v.strimzi.users.enabled }}
{{- /* SCRAM over SASL_SSL / SASL_PLAINTEXT only: nurture.validate fails otherwise */}}
- name: KAFKA_SASL_MECHANISM
  value: "SCRAM-SHA-512"
- name: KAFKA_SASL_USERNAME
  value: {{ include "nurture.kafkaUserName" . | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "nurture.kafkaUserName" . }}
      key: password
{{- else if $v.kafka.saslMechanism }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.saslMechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ $v.kafka.sasl.username | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.passwordSecret.name is required with kafka.saslMechanism" $v.kafka.sasl.passwordSecret.name }}
      key: {{ $v.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- if $v.kafka.caSecret.name }}
- name: KAFKA_SSL_CAFILE
  value: /etc/nurture/kafka-ca/ca.crt
{{- end }}
{{- end -}}

{{/* env from a secret reference {name, key, optional}: "nurture.secretEnv" (list "VAR" $ref) */}}
{{- define "nurture.secretEnv" -}}
{{- $ref := index . 1 -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
      {{- if $ref.optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* Free-form extra env of a component: a map of NAME: value. */}}
{{- define "nurture.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* envFrom of a component: its extraEnvVarsCM (a ConfigMap) and extraEnvVarsSecret (a Secret). */}}
{{- define "nurture.envFrom" -}}
{{- if or .extraEnvVarsCM .extraEnvVarsSecret }}
envFrom:
  {{- with .extraEnvVarsCM }}
  - configMapRef: {name: {{ . }}}
  {{- end }}
  {{- with .extraEnvVarsSecret }}
  - secretRef: {name: {{ . }}}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Volumes and mounts every workload has: /tmp, and the Kafka CA when set. */}}
{{- define "nurture.baseVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret.name }}
    items:
      - key: {{ .Values.kafka.caSecret.key }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "nurture.baseMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/nurture/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod-level fields of a component's values: scheduling, priority, init containers. */}}
{{- define "nurture.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .initContainers }}
initContainers:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Checksum of the marketers' files a component mounts, so a change rolls the pods. */}}
{{- define "nurture.configChecksum" -}}
{{- $root := .root -}}
{{- $sum := "" -}}
{{- range .globs -}}
{{- range $path, $_ := $root.Files.Glob . -}}
{{- $sum = printf "%s%s%s" $sum $path ($root.Files.Get $path | sha256sum) -}}
{{- end -}}
{{- end -}}
{{- $sum | sha256sum -}}
{{- end -}}

{{/* Fails on settings that cannot work together. */}}
{{- define "nurture.validate" -}}
{{- $sasl := list "SASL_SSL" "SASL_PLAINTEXT" -}}
{{- $protocol := .Values.kafka.securityProtocol -}}
{{- if and .Values.strimzi.users.enabled (not (has $protocol $sasl)) -}}
{{- fail (printf "strimzi.users.enabled gives each service SCRAM credentials, which the Kafka clients only use over SASL: set kafka.securityProtocol to SASL_SSL (or SASL_PLAINTEXT), not %s" $protocol) -}}
{{- end -}}
{{- if and .Values.kafka.saslMechanism (not .Values.strimzi.users.enabled) (not (has $protocol $sasl)) -}}
{{- fail (printf "kafka.saslMechanism is only used over SASL: set kafka.securityProtocol to SASL_SSL (or SASL_PLAINTEXT), not %s" $protocol) -}}
{{- end -}}
{{- if and (has $protocol $sasl) (not .Values.strimzi.users.enabled) (not .Values.kafka.saslMechanism) -}}
{{- fail (printf "kafka.securityProtocol %s needs credentials: enable strimzi.users or set kafka.saslMechanism and kafka.sasl" $protocol) -}}
{{- end -}}
{{- if ge (int .Values.shutdownGraceSeconds) (int .Values.terminationGracePeriodSeconds) -}}
{{- fail "shutdownGraceSeconds must be below terminationGracePeriodSeconds (pods are killed at the end of the grace period)" -}}
{{- end -}}
{{- if and .Values.strimzi.topics.enabled (gt (int .Values.scoring.autoscaling.maxReplicas) (int .Values.strimzi.topics.partitions)) -}}
{{- fail "scoring.autoscaling.maxReplicas exceeds strimzi.topics.partitions: extra replicas would get no partition" -}}
{{- end -}}
{{- if and .Values.strimzi.topics.enabled (gt (int .Values.dispatch.autoscaling.maxReplicas) (int .Values.strimzi.topics.partitions)) -}}
{{- fail "dispatch.autoscaling.maxReplicas exceeds strimzi.topics.partitions: extra replicas would get no partition" -}}
{{- end -}}
{{- end -}}
