{{/* Names ------------------------------------------------------------------------------ */}}
{{- define "trainserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trainserve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "trainserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "trainserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api") */}}
{{- define "trainserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trainserve.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every pod of the release carries this; NetworkPolicies admit peers by it. */}}
{{- define "trainserve.releaseSelector" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trainserve.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "trainserve.rayClusterName" -}}
{{- printf "%s-ray" (include "trainserve.fullname" .) -}}
{{- end -}}

{{/* KubeRay names the head's Service <cluster>-head-svc. */}}
{{- define "trainserve.rayHeadService" -}}
{{- printf "%s-head-svc" (include "trainserve.rayClusterName" .) -}}
{{- end -}}

{{- define "trainserve.redisHost" -}}
{{- printf "%s-redis" (include "trainserve.fullname" .) -}}
{{- end -}}

{{/* The Redis URL, without the password: that comes from TRAINSERVE_REDIS_PASSWORD
     ("trainserve.redisPasswordEnv"), so it is in no command line. */}}
{{- define "trainserve.redisUrl" -}}
{{- printf "redis://%s:%d/0" (include "trainserve.redisHost" .) (int .Values.redis.port) -}}
{{- end -}}

{{/* Redis's password, for the processes that connect to Redis themselves (the job API and
     the dispatcher; Ray's workers get the URL with each job). */}}
{{- define "trainserve.redisPasswordEnv" -}}
{{- if .Values.redis.auth.enabled }}
- name: TRAINSERVE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "trainserve.redisSecret" . }}
      key: redis-password
{{- end }}
{{- end -}}

{{- define "trainserve.redisSecret" -}}
{{- default (printf "%s-redis" (include "trainserve.fullname" .)) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "trainserve.rayAuthSecret" -}}
{{- default (printf "%s-ray-auth" (include "trainserve.fullname" .)) .Values.ray.auth.existingSecret -}}
{{- end -}}

{{- define "trainserve.inferenceTokensSecret" -}}
{{- default (printf "%s-inference-tokens" (include "trainserve.fullname" .)) .Values.inference.auth.existingSecret -}}
{{- end -}}

{{- define "trainserve.apiAdminSecret" -}}
{{- default (printf "%s-api-admin" (include "trainserve.fullname" .)) .Values.api.auth.existingSecret -}}
{{- end -}}

{{- define "trainserve.tlsSecret" -}}
{{- default (printf "%s-tls" (include "trainserve.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "trainserve.storageClaim" -}}
{{- default (printf "%s-storage" (include "trainserve.fullname" .)) .Values.storage.pvc.existingClaim -}}
{{- end -}}

{{- define "trainserve.storageDir" -}}
{{- printf "%s/storage" (trimSuffix "/" .Values.storage.mountPath) -}}
{{- end -}}

{{- define "trainserve.trackingCredentialsFile" -}}
/etc/trainserve/mlflow/credentials
{{- end -}}

{{/* The MLflow credentials Secret (dispatcher.tracking.credentialsSecret), mounted
     read-only where the dispatcher and the workers read it (docs/tracking.md). */}}
{{- define "trainserve.trackingCredentialsMount" -}}
{{- if .Values.dispatcher.tracking.credentialsSecret }}
- name: mlflow-credentials
  mountPath: /etc/trainserve/mlflow
  readOnly: true
{{- end }}
{{- end -}}

{{- define "trainserve.trackingCredentialsVolume" -}}
{{- with .Values.dispatcher.tracking.credentialsSecret }}
- name: mlflow-credentials
  secret:
    secretName: {{ . }}
    items:
      - key: credentials
        path: credentials
{{- end }}
{{- end -}}

{{- define "trainserve.inferenceTokenFile" -}}
/etc/trainserve/inference-tokens/tokens
{{- end -}}

{{- define "trainserve.publicHttp" -}}
{{- default (printf "%s-inference.%s.svc:%d" (include "trainserve.fullname" .) .Release.Namespace (int .Values.inference.httpPort)) .Values.inference.publicHttp -}}
{{- end -}}

{{- define "trainserve.publicGrpc" -}}
{{- default (printf "%s-inference.%s.svc:%d" (include "trainserve.fullname" .) .Release.Namespace (int .Values.inference.grpcPort)) .Values.inference.publicGrpc -}}
{{- end -}}

{{/* Refuse storage settings the service cannot use. */}}
{{- define "trainserve.checkStorage" -}}
{{- if eq .Values.storage.type "s3" -}}
{{- fail "storage.type=s3: trainserve reads its storage as a filesystem path (TRAINSERVE_STORAGE_DIR / --storage-dir) and has no object-store URI setting yet; mount the bucket as a ReadWriteMany volume with a CSI driver (e.g. Mountpoint for S3, s3fs, JuiceFS) and use storage.type=pvc with storage.pvc.existingClaim" -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by every trainserve process (API, dispatcher, Ray nodes). */}}
{{- define "trainserve.env" -}}
- name: TRAINSERVE_STORAGE_DIR
  value: {{ include "trainserve.storageDir" . | quote }}
- name: PYTHONUNBUFFERED
  value: "1"
{{- end -}}

{{/* The root filesystem is read-only (containerSecurityContext): what Ray, Python and the
     libraries write goes to these emptyDir volumes. */}}
{{- define "trainserve.writableVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end -}}

{{- define "trainserve.writableMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/ray
{{- end -}}

{{/* Ray authentication for the Ray nodes and every Ray driver (the dispatcher). */}}
{{- define "trainserve.rayAuthEnv" -}}
{{- if eq .Values.ray.auth.mode "token" }}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "trainserve.rayAuthSecret" . }}
      key: auth-token
{{- else }}
- name: RAY_AUTH_MODE
  value: disabled
{{- end }}
{{- end -}}

{{- define "trainserve.storageVolume" -}}
- name: storage
  persistentVolumeClaim:
    claimName: {{ include "trainserve.storageClaim" . }}
{{- end -}}

{{- define "trainserve.storageMount" -}}
- name: storage
  mountPath: {{ .Values.storage.mountPath }}
{{- end -}}

{{- define "trainserve.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The names the console answers to (its --public-host flags), as a JSON list: its
     Service's names, then console.publicHosts. */}}
{{- define "trainserve.consoleHosts" -}}
{{- $svc := printf "%s-console" (include "trainserve.fullname" .) -}}
{{- $ns := .Release.Namespace -}}
{{- concat (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) .Values.console.publicHosts | toJson -}}
{{- end -}}

{{- define "trainserve.consoleTlsSecret" -}}
{{- default (printf "%s-console-tls" (include "trainserve.fullname" .)) .Values.console.tlsSecret -}}
{{- end -}}
