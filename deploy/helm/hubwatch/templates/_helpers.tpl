{{/* Names and labels, as the chart starter and prometheus-community charts name them. */}}
{{- define "hubwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hubwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hubwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hubwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hubwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hubwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hubwatch
{{- end }}

{{- define "hubwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hubwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hubwatch.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A StatefulSet when replicas keep a volume (disk buffers), else a Deployment. */}}
{{- define "hubwatch.kind" -}}
{{- if .Values.persistence.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/* Sink types that stand behind a disk buffer. */}}
{{- define "hubwatch.networkSinks" -}}
{{- $n := list }}
{{- range .Values.sinks }}{{ if ne (toString .type) "file" }}{{ $n = append $n .name }}{{ end }}{{ end }}
{{- join "," $n }}
{{- end }}

{{/*
TOML rendering of values. Helm reads YAML numbers as floats, which would print 500 as
500.0 (a float hubwatch refuses where it wants an integer): integral numbers print as
integers. Strings print as JSON strings, which are TOML basic strings.
*/}}
{{- define "hubwatch.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "hubwatch.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) }}
{{- if eq (float64 (int64 $v)) (float64 $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if kindIs "slice" $v }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "hubwatch.tomlValue" $e }}{{ end }}]
{{- else if kindIs "map" $v }}{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ include "hubwatch.tomlKey" $k }} = {{ include "hubwatch.tomlValue" (get $v $k) }}{{ end }} }
{{- else }}{{ fail (printf "cannot write %v (%s) as TOML" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* One [[name]] table per map of the list. */}}
{{- define "hubwatch.tomlTables" -}}
{{- $name := index . 0 }}
{{- range (index . 1) }}
{{- $t := . }}

[[{{ $name }}]]
{{- range $k := list "type" "name" }}{{ if hasKey $t $k }}
{{ $k }} = {{ include "hubwatch.tomlValue" (get $t $k) }}
{{- end }}{{ end }}
{{- range $k := omit $t "type" "name" | keys | sortAlpha }}
{{ include "hubwatch.tomlKey" $k }} = {{ include "hubwatch.tomlValue" (get $t $k) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Entra ID through workload identity, when the service account has it. */}}
{{- define "hubwatch.auth" -}}
{{- if .Values.serviceAccount.workloadIdentity.enabled }}workload_identity{{ else }}default{{ end }}
{{- end }}

{{/* The generated hubwatch.toml. */}}
{{- define "hubwatch.config" -}}
{{- $v := .Values -}}
# Rendered by the hubwatch Helm chart ({{ .Chart.Version }}); values: source, checkpoint,
# limits, sinks, routes, config.extra. Secrets come from the environment (${NAME}).
query_files = [{{ if $v.config.amlQueries }}"aml-queries.toml"{{ if $v.config.queryPacks }}, {{ end }}{{ end }}{{ range $i, $k := keys $v.config.queryPacks | sortAlpha }}{{ if $i }}, {{ end }}{{ printf "%s.toml" $k | toJson }}{{ end }}]
{{- with $v.config.extra }}

# config.extra (its top-level keys stay top-level: the tables below start after it)
{{ . | trim }}
{{- end }}

[export]
listen = "0.0.0.0:{{ $v.service.port }}"
{{- if not $v.web.queryApi }}
query_api = false
{{- end }}
{{- with $v.web.tls.secretName }}

[export.tls]
cert_file = "/etc/hubwatch-tls/tls.crt"
key_file = "/etc/hubwatch-tls/tls.key"
{{- if ne $v.web.tls.clientAuthType "NoClientCert" }}
client_ca_file = "/etc/hubwatch-tls/ca.crt"
client_auth_type = {{ $v.web.tls.clientAuthType | toJson }}
{{- end }}
min_version = {{ $v.web.tls.minVersion | toJson }}
{{- end }}
{{- with $v.web.basicAuthUsers }}

# Hashes from the environment (secrets.existingSecret).
[export.basic_auth_users]
{{- range $u := keys . | sortAlpha }}
{{ include "hubwatch.tomlKey" $u }} = "${ {{- get $v.web.basicAuthUsers $u -}} }"
{{- end }}
{{- end }}

[dead_letter]
path = "/var/lib/hubwatch/dead-letter.ndjson"
{{- with $v.limits }}

[limits]
{{- range $k := keys . | sortAlpha }}
{{ include "hubwatch.tomlKey" $k }} = {{ include "hubwatch.tomlValue" (get $v.limits $k) }}
{{- end }}
{{- end }}

[checkpoint]
interval = {{ $v.checkpoint.interval | toJson }}
global_results = {{ $v.checkpoint.blob.globalResults }}

[checkpoint.blob]
{{- if $v.checkpoint.blob.containerUrl }}
container_url = {{ $v.checkpoint.blob.containerUrl | toJson }}
auth = {{ include "hubwatch.auth" . | toJson }}
{{- else }}
connection_string = "${AZURE_STORAGE_CONNECTION_STRING}"
container = {{ $v.checkpoint.blob.container | toJson }}
{{- end }}

[[sources]]
type = {{ $v.source.type | toJson }}
name = {{ $v.source.name | toJson }}
start = {{ $v.source.start | toJson }}
{{- if $v.source.fullyQualifiedNamespace }}
fully_qualified_namespace = {{ $v.source.fullyQualifiedNamespace | toJson }}
auth = {{ include "hubwatch.auth" . | toJson }}
{{- else }}
connection_string = "${EVENTHUB_CONNECTION_STRING}"
{{- end }}
{{- if eq $v.source.type "amqp" }}
{{- with $v.source.amqp }}
{{- if .eventHub }}
event_hub = {{ .eventHub | toJson }}
{{- end }}
consumer_group = {{ .consumerGroup | toJson }}
prefetch = {{ include "hubwatch.tomlValue" .prefetch }}
owner_id = "${POD_NAME}"
ownership_interval = {{ .ownershipInterval | toJson }}
ownership_expiry = {{ .ownershipExpiry | toJson }}
{{- end }}
{{- else }}
{{- with $v.source.kafka }}
topics = {{ include "hubwatch.tomlValue" .topics }}
group_id = {{ .groupId | toJson }}
commit_interval = {{ .commitInterval | toJson }}
{{- end }}
{{- end }}
{{- $sinks := list }}
{{- range $v.sinks }}
{{- $s := deepCopy . }}
{{- if ne (toString $s.type) "file" }}
{{- $buffer := deepCopy (default dict $s.buffer) }}
{{- if not (hasKey $buffer "dir") }}{{ $_ := set $buffer "dir" (printf "/var/lib/hubwatch/buffers/%s" $s.name) }}{{ end }}
{{- $_ := set $s "buffer" $buffer }}
{{- end }}
{{- $sinks = append $sinks $s }}
{{- end }}
{{- include "hubwatch.tomlTables" (list "sinks" $sinks) }}
{{- include "hubwatch.tomlTables" (list "routes" $v.routes) }}
{{- end }}

{{/* A probe from values, over HTTPS when the admin port serves TLS. Args: (list $ probe). */}}
{{- define "hubwatch.probe" -}}
{{- $root := index . 0 -}}
{{- $probe := deepCopy (index . 1) -}}
{{- if and $root.Values.web.tls.secretName $probe.httpGet -}}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end }}

{{/* The scrape endpoint's scheme, tlsConfig and basicAuth. Args: (list $ monitor-values). */}}
{{- define "hubwatch.scrapeSecurity" -}}
{{- $root := index . 0 -}}
{{- $m := index . 1 -}}
{{- if $root.Values.web.tls.secretName }}
scheme: https
{{- with $m.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- with $m.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
