{{/*
Names, labels and images shared by every template.
*/}}

{{/* The CSI driver name is fixed by the architecture: StorageClasses, PVs and the CSIDriver object all name it. */}}
{{- define "cairn.driverName" -}}
csi.cairn.dev
{{- end -}}

{{- define "cairn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name: the release name alone when it already
contains the chart name, so `helm install cairn` gives cairn-operator and not cairn-cairn-operator.
*/}}
{{- define "cairn.fullname" -}}
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

{{/* A component's object name: <fullname>-<component>, kept within 63 characters. */}}
{{- define "cairn.componentName" -}}
{{- $full := include "cairn.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" -}}
{{- printf "%s-%s" $full .component -}}
{{- end -}}

{{- define "cairn.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable for the life of a release, so never the version. Takes (dict "root" $ "component" "x"). */}}
{{- define "cairn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cairn.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The Kubernetes recommended labels. Takes (dict "root" $ "component" "x"). */}}
{{- define "cairn.labels" -}}
{{ include "cairn.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: cairn
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "cairn.chart" .root }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The Cairn image: a digest wins over a tag; an empty tag means the chart's appVersion. */}}
{{- define "cairn.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A sidecar image from {repository, tag}. */}}
{{- define "cairn.sidecarImage" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "cairn.operatorName" -}}{{ include "cairn.componentName" (dict "root" . "component" "operator") }}{{- end -}}
{{- define "cairn.controllerName" -}}{{ include "cairn.componentName" (dict "root" . "component" "csi-controller") }}{{- end -}}
{{- define "cairn.nodeName" -}}{{ include "cairn.componentName" (dict "root" . "component" "csi-node") }}{{- end -}}

{{- define "cairn.leaseName" -}}
{{- default (include "cairn.operatorName" .) .Values.operator.leaderElection.leaseName -}}
{{- end -}}

{{/* Path of the node plugin's socket directory on the host; node-driver-registrar tells kubelet this path. */}}
{{- define "cairn.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.csi.kubeletDir) (include "cairn.driverName" .) -}}
{{- end -}}

{{/* The StorageClass name of one policy. Takes (dict "root" $ "policy" $policy). */}}
{{- define "cairn.storageClassName" -}}
{{- default (printf "cairn-%s" .policy.name) .policy.storageClass.name -}}
{{- end -}}

{{/* Pod and container security settings of every pod except the privileged node plugin. */}}
{{- define "cairn.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cairn.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
