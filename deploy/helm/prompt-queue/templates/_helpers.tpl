{{/*
Helpers. The chart keeps to a small subset of Helm's template language (no variables, range only
over lists, a short list of functions) so that tests/test/k8s.test.ts can render it without a helm
binary; see tests/test/helm/render.ts for the subset.
*/}}

{{- define "pq.name" -}}
{{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pq.fullname" -}}
{{ printf "%s-%s" .Release.Name (include "pq.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of one app's objects; argument: dict "root" $ "app" "<app>" */}}
{{- define "pq.labels" -}}
app.kubernetes.io/name: {{ include "pq.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .app }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{- define "pq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pq.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .app }}
{{- end }}

{{/* Environment from Secrets, by reference only; argument: a list of { name, secretName, key } */}}
{{- define "pq.secretEnv" -}}
{{- range . }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required "secretEnv entries need a secretName" .secretName }}
      key: {{ required "secretEnv entries need a key" .key }}
{{- end }}
{{- end }}

{{/*
One app's Deployment; argument: dict "root" $ "app" "<app>" "spec" .Values.<app> "portEnv" "<VAR>"
"replicas" <count, or nil when an autoscaler owns it>
*/}}
{{- define "pq.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "pq.fullname" .root }}-{{ .app }}
  labels:
    {{- include "pq.labels" . | nindent 4 }}
spec:
  {{- if .replicas }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "pq.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "pq.selectorLabels" . | nindent 8 }}
      annotations:
        # A changed CONFIG_FILE rolls the pods (they read it once at start).
        checksum/config: {{ toYaml .root.Values.config | sha256sum }}
    spec:
      {{- with .root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ .spec.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml .root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .app }}
          image: {{ printf "%s-%s:%s" .root.Values.image.repository .app (default .root.Chart.AppVersion .root.Values.image.tag) | quote }}
          imagePullPolicy: {{ .root.Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .spec.port }}
              protocol: TCP
          env:
            - name: NODE_ENV
              value: production
            - name: CONFIG_FILE
              value: /etc/prompt-queue/config.yaml
            - name: {{ .portEnv }}
              value: {{ .spec.port | quote }}
            {{- if eq .app "worker" }}
            - name: WORKER_CONCURRENCY
              value: {{ .spec.concurrency | quote }}
            - name: SHUTDOWN_TIMEOUT_MS
              value: {{ .spec.shutdownTimeoutMs | quote }}
            {{- if .spec.maxHeapMiB }}
            - name: NODE_OPTIONS
              value: {{ printf "--max-old-space-size=%d" (int .spec.maxHeapMiB) | quote }}
            {{- end }}
            {{- end }}
            {{- if eq .app "producer" }}
            - name: WORKER_CONCURRENCY
              value: {{ .root.Values.worker.concurrency | quote }}
            {{- end }}
            {{- if and .root.Values.metricsToken.secretName (ne .app "dashboard") }}
            - name: METRICS_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ .root.Values.metricsToken.secretName }}
                  key: {{ .root.Values.metricsToken.key }}
            {{- end }}
            {{- include "pq.secretEnv" .root.Values.secretEnv | nindent 12 }}
            {{- include "pq.secretEnv" .spec.secretEnv | nindent 12 }}
            {{- with .root.Values.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with .spec.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 2
            failureThreshold: 30
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ .spec.preStopSeconds | quote }}]
          resources:
            {{- toYaml .spec.resources | nindent 12 }}
          securityContext:
            {{- toYaml .root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/prompt-queue
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: config
          configMap:
            name: {{ include "pq.fullname" .root }}-config
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
{{- end }}

{{/* One app's PodDisruptionBudget; argument: as pq.deployment */}}
{{- define "pq.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "pq.fullname" .root }}-{{ .app }}
  labels:
    {{- include "pq.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .spec.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "pq.selectorLabels" . | nindent 6 }}
{{- end }}

{{/* One app's Service; argument: as pq.deployment */}}
{{- define "pq.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "pq.fullname" .root }}-{{ .app }}
  labels:
    {{- include "pq.labels" . | nindent 4 }}
spec:
  type: {{ .spec.service.type }}
  selector:
    {{- include "pq.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .spec.port }}
      targetPort: http
      protocol: TCP
{{- end }}
