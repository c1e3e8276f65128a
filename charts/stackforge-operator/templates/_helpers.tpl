{{/*
Names. Namespaced objects keep the names manifests/ gives them (one operator
per namespace, and tenant NetworkPolicies expect the operator's labels).
Cluster-scoped objects carry the release's namespace and name, so two
releases, or a release and `kubectl apply -k manifests/`, never fight over
one ClusterRole.
*/}}
{{- define "stackforge-operator.name" -}}
stackforge-operator
{{- end }}

{{- define "stackforge-operator.clusterName" -}}
{{- printf "stackforge-operator:%s:%s" .Release.Namespace .Release.Name | trunc 253 -}}
{{- end }}

{{- define "stackforge-operator.kubeletReaderClusterName" -}}
{{- printf "stackforge-kubelet-reader:%s:%s" .Release.Namespace .Release.Name | trunc 253 -}}
{{- end }}

{{/* Admission policy names are DNS subdomains: no colons. */}}
{{- define "stackforge-operator.policyName" -}}
{{- printf "stackforge-tenant-namespace.%s.%s" .Release.Namespace .Release.Name | trunc 253 -}}
{{- end }}

{{- define "stackforge-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stackforge-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stackforge-operator.labels" -}}
{{ include "stackforge-operator.selectorLabels" . }}
app.kubernetes.io/part-of: stackforge
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "stackforge-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{/* images.overrides as the catalog file the operator reads (STACKFORGE_IMAGE_CATALOG). */}}
{{- define "stackforge-operator.imageCatalog" -}}
{{- toYaml .Values.images.overrides }}
{{- end }}

{{- define "stackforge-operator.imageCatalogDir" -}}
/etc/stackforge/images
{{- end }}

{{- define "stackforge-operator.imageCatalogPath" -}}
{{- include "stackforge-operator.imageCatalogDir" . }}/catalog.yaml
{{- end }}

{{/* kopf's liveness endpoint; fixed, as in manifests/deployment.yaml. */}}
{{- define "stackforge-operator.healthzPort" -}}
8080
{{- end }}

{{/* Several replicas only work with kopf peering (one active replica). */}}
{{- define "stackforge-operator.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- end }}
