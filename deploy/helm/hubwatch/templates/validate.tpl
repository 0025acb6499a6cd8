{{/*
What values.schema.json cannot say (conditions across keys): checked when the chart
renders, so `helm install` fails with the reason instead of a pod that crashes.
*/}}
{{- define "hubwatch.validate" -}}
{{- $v := .Values }}
{{- if eq $v.web.tls.clientAuthType "RequireAndVerifyClientCert" }}
{{- fail "web.tls.clientAuthType: RequireAndVerifyClientCert would refuse the kubelet's probes (they have no client certificate): use VerifyClientCertIfGiven with web.basicAuthUsers" }}
{{- end }}
{{- if and $v.web.basicAuthUsers (not $v.secrets.existingSecret) }}
{{- fail "web.basicAuthUsers name environment variables holding bcrypt hashes: give secrets.existingSecret with those keys" }}
{{- end }}
{{- if and (or $v.serviceMonitor.enabled $v.podMonitor.enabled) $v.web.basicAuthUsers (not (or $v.serviceMonitor.basicAuth $v.podMonitor.basicAuth)) }}
{{- fail "web.basicAuthUsers asks scrapes for a password: give serviceMonitor.basicAuth (or podMonitor.basicAuth), or Prometheus gets 401" }}
{{- end }}
{{- if and (eq $v.source.type "amqp") $v.source.fullyQualifiedNamespace (not $v.source.amqp.eventHub) }}
{{- fail "source.amqp.eventHub is required with source.fullyQualifiedNamespace (a connection string names its hub in EntityPath; a namespace does not)" }}
{{- end }}
{{- if and (eq $v.source.type "kafka") (not $v.source.kafka.topics) }}
{{- fail "source.kafka.topics: name at least one event hub to read" }}
{{- end }}
{{- if and $v.serviceAccount.workloadIdentity.enabled (not $v.serviceAccount.workloadIdentity.clientId) }}
{{- fail "serviceAccount.workloadIdentity.clientId: the managed identity's (or app's) client id is required with workload identity" }}
{{- end }}
{{- if and (or $v.source.fullyQualifiedNamespace $v.checkpoint.blob.containerUrl) (not $v.serviceAccount.workloadIdentity.enabled) (not $v.secrets.existingSecret) }}
{{- fail "Entra ID without workload identity needs credentials: enable serviceAccount.workloadIdentity, or give secrets.existingSecret with AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET" }}
{{- end }}
{{- if and (not $v.config.override) (or (not $v.source.fullyQualifiedNamespace) (not $v.checkpoint.blob.containerUrl)) (not $v.secrets.existingSecret) }}
{{- fail "secrets.existingSecret is required: without source.fullyQualifiedNamespace and checkpoint.blob.containerUrl (Entra ID), hubwatch reads EVENTHUB_CONNECTION_STRING and AZURE_STORAGE_CONNECTION_STRING from a Secret you create" }}
{{- end }}
{{- $names := dict }}
{{- range $v.sinks }}
{{- if hasKey $names .name }}{{ fail (printf "sinks: the name %q is used twice" .name) }}{{ end }}
{{- $_ := set $names .name true }}
{{- end }}
{{- range $v.routes }}
{{- range .sinks }}
{{- if not (hasKey $names .) }}{{ fail (printf "routes: sink %q is not among sinks[].name" .) }}{{ end }}
{{- end }}
{{- end }}
{{- if and $v.sinks (not $v.persistence.enabled) }}
{{- fail "sinks write rows whose positions are already committed (network sinks to their disk buffer, file sinks to their file): enable persistence (a volume per replica) so that a rescheduled pod does not lose them" }}
{{- end }}
{{- range $v.sinks }}
{{- if and (eq (toString .type) "file") (not (hasPrefix "/var/lib/hubwatch/" (toString .path))) }}
{{- fail (printf "sinks: file sink %q writes %q; only /var/lib/hubwatch/ is writable (the volume)" .name (toString .path)) }}
{{- end }}
{{- end }}
{{- if and $v.keda.enabled (include "hubwatch.networkSinks" .) }}
{{- fail (printf "keda.enabled with network sinks (%s): scaling in would strand a removed replica's disk buffer until that replica comes back; scale such a release with replicaCount, draining a replica's buffer before removing it" (include "hubwatch.networkSinks" .)) }}
{{- end }}
{{- if and $v.keda.enabled (or $v.source.fullyQualifiedNamespace $v.checkpoint.blob.containerUrl) (not $v.serviceAccount.workloadIdentity.enabled) }}
{{- fail "keda.enabled with Entra ID but without workload identity: KEDA's scaler authenticates with workload identity or connection strings only" }}
{{- end }}
{{- if and $v.prometheusRule.recordingRules $v.checkpoint.blob.globalResults }}
{{- fail "prometheusRule.recordingRules combine replicas' partial results; with checkpoint.blob.globalResults every replica exports the whole result and the combined sums would count it once per replica" }}
{{- end }}
{{- if and $v.serviceAccount.workloadIdentity.enabled (not $v.serviceAccount.create) }}
{{- fail "serviceAccount.workloadIdentity needs the chart's service account (serviceAccount.create), which it annotates; with your own, annotate it and label the pods (podLabels) yourself" }}
{{- end }}
{{- if and $v.keda.enabled (ne $v.source.type "amqp") }}
{{- fail "keda.enabled: the Event Hubs scaler reads blob checkpoints, which hubwatch writes for source.type amqp; with kafka, scale on consumer lag with KEDA's kafka scaler yourself" }}
{{- end }}
{{- if and $v.serviceMonitor.enabled $v.podMonitor.enabled }}
{{- fail "serviceMonitor and podMonitor both scrape every pod: enable one" }}
{{- end }}
{{- end }}
