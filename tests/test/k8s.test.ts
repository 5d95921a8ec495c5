// The Helm chart (deploy/helm/prompt-queue), checked without a cluster: rendered (by the subset
// renderer in helm/render.ts; by `helm template` too when helm is on PATH), every object validated
// against the Kubernetes schemas (kubernetes-models) and the KEDA CRDs' (@kubernetes-models/keda),
// and the deployment requirements of issue 12 asserted on the objects.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import { loadConfig } from '@prompt-queue/shared';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { renderChart, type RenderOptions } from './helm/render.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHART = join(ROOT, 'deploy', 'helm', 'prompt-queue');
const APPS = ['producer', 'worker', 'dashboard'] as const;

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: Record<string, unknown>; data?: Record<string, string> };

/** The schema of each kind the chart may render; anything else fails the test. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
};

const VARIANTS: Record<string, RenderOptions> = {
  defaults: {},
  'hpa on CPU': { values: { keda: { enabled: false }, hpa: { enabled: true } } },
  'hpa on an external metric': { values: { keda: { enabled: false }, hpa: { enabled: true, external: { metricName: 'prompt_queue_backlog' } } } },
  'no autoscaler, no metrics token, no dashboard': {
    values: { keda: { enabled: false }, metricsToken: { secretName: '' }, dashboard: { enabled: false } },
  },
  'with a CONFIG_FILE and extra env': {
    releaseName: 'prod',
    namespace: 'llm',
    values: {
      config: { limits: { 'gemini-3.6-flash': { rpm: 4000, tpm: 4_000_000 } }, batching: { size: 8 } },
      env: [{ name: 'LOG_LEVEL', value: 'debug' }],
      worker: { concurrency: 256, env: [{ name: 'BATCH_MAX_WAIT_MS', value: '10' }] },
      imagePullSecrets: [{ name: 'registry' }],
    },
  },
};

function render(options: RenderOptions = {}): K8sObject[] {
  return renderChart(CHART, options) as K8sObject[];
}

function byKind(objects: K8sObject[], kind: string): K8sObject[] {
  return objects.filter((object) => object.kind === kind);
}

function deployment(objects: K8sObject[], app: string): K8sObject {
  const found = byKind(objects, 'Deployment').find((object) => object.metadata.labels?.['app.kubernetes.io/component'] === app);
  if (!found) throw new Error(`no ${app} Deployment`);
  return found;
}

interface PodSpec {
  containers: IContainer[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; emptyDir?: object }[];
}

function podSpec(object: K8sObject): PodSpec {
  return (object.spec as { template: { spec: PodSpec } }).template.spec;
}

function env(container: IContainer, name: string): IEnvVar | undefined {
  return container.env?.find((entry) => entry.name === name);
}

describe('Helm chart deploy/helm/prompt-queue', () => {
  for (const [variant, options] of Object.entries(VARIANTS)) {
    it(`renders (${variant}) objects that validate against the Kubernetes and KEDA schemas`, () => {
      const objects = render(options);
      expect(objects.length).toBeGreaterThan(0);
      for (const object of objects) {
        const Model = MODELS[`${object.apiVersion}/${object.kind}`];
        expect(Model, `a schema for ${object.apiVersion} ${object.kind}`).toBeDefined();
        expect(() => new Model!(object as never).validate(), `${object.kind} ${object.metadata.name}`).not.toThrow();
        expect(object.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      }
      const names = objects.map((object) => `${object.kind}/${object.metadata.name}`);
      expect(new Set(names).size, 'no two objects share a kind and name').toBe(names.length);
    });
  }

  it('the schemas are strict enough to catch a broken object', () => {
    const [scaled] = byKind(render(), 'ScaledObject');
    const broken = structuredClone(scaled!) as K8sObject;
    delete (broken.spec as Record<string, unknown>).scaleTargetRef;
    expect(() => new ScaledObject(broken as never).validate()).toThrow(/scaleTargetRef/);
    const worker = structuredClone(deployment(render(), 'worker'));
    podSpec(worker).containers[0]!.ports![0]!.containerPort = '3002' as never;
    expect(() => new Deployment(worker as never).validate()).toThrow(/containerPort/);
  });

  it('probes /healthz (liveness, startup) and /readyz (readiness) on every app, which each app serves', () => {
    const objects = render();
    for (const app of APPS) {
      const [container] = podSpec(deployment(objects, app)).containers;
      expect(container!.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
      expect(container!.startupProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
      expect(container!.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
      const port = container!.ports!.find((candidate) => candidate.name === 'http')!.containerPort;
      const portVariable = `${app.toUpperCase()}_PORT`;
      expect(env(container!, portVariable)?.value, `${portVariable} matches the container port`).toBe(String(port));
    }
    // Each app's own tests call both routes: apps/producer/test/health.test.ts,
    // apps/worker/test/health.test.ts, apps/dashboard/test/app.test.ts.
  });

  it('gives the worker a grace period longer than its preStop plus its shutdown bound', () => {
    const objects = render();
    const pod = podSpec(deployment(objects, 'worker'));
    const [container] = pod.containers;
    const shutdownMs = Number(env(container!, 'SHUTDOWN_TIMEOUT_MS')?.value);
    expect(shutdownMs).toBe(loadConfig({}).worker.shutdownTimeoutMs); // the chart keeps the app's default
    const preStop = container!.lifecycle?.preStop?.exec?.command ?? [];
    expect(preStop[0]).toBe('sleep');
    const preStopSeconds = Number(preStop[1]);
    expect(preStopSeconds).toBeGreaterThan(0);
    expect(pod.terminationGracePeriodSeconds!).toBeGreaterThan(preStopSeconds + shutdownMs / 1000);
    // And the chart refuses values that would let the kubelet kill jobs mid-call.
    expect(() => render({ values: { worker: { shutdownTimeoutMs: 60_000 } } })).toThrow(/terminationGracePeriodSeconds must exceed/);
    for (const app of ['producer', 'dashboard']) {
      expect(podSpec(deployment(objects, app)).containers[0]!.lifecycle?.preStop?.exec?.command?.[0]).toBe('sleep');
    }
  });

  it("caps the worker's heap below its memory limit, and leaves it to Node when unset", () => {
    const container = podSpec(deployment(render(), 'worker')).containers[0]!;
    const heapMiB = Number(/^--max-old-space-size=(\d+)$/.exec(env(container, 'NODE_OPTIONS')?.value ?? '')?.[1]);
    const limitMiB = Number(/^(\d+)Mi$/.exec(String(container.resources?.limits?.memory))?.[1]);
    expect(heapMiB).toBeGreaterThan(0);
    expect(heapMiB).toBeLessThan(limitMiB);
    const uncapped = podSpec(deployment(render({ values: { worker: { maxHeapMiB: 0 } } }), 'worker')).containers[0]!;
    expect(env(uncapped, 'NODE_OPTIONS')).toBeUndefined();
  });

  it('has a PodDisruptionBudget selecting each app', () => {
    const objects = render();
    const budgets = byKind(objects, 'PodDisruptionBudget');
    for (const app of APPS) {
      const selector = (deployment(objects, app).spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
      const budget = budgets.find((candidate) => JSON.stringify((candidate.spec as { selector: unknown }).selector) === JSON.stringify({ matchLabels: selector }));
      expect(budget, `a PDB for ${app}`).toBeDefined();
      expect((budget!.spec as { maxUnavailable?: unknown }).maxUnavailable).toBeDefined();
    }
  });

  it('runs every container non-root, read-only, without capabilities, with requests and limits, and /tmp on an emptyDir', () => {
    for (const options of Object.values(VARIANTS)) {
      for (const object of byKind(render(options), 'Deployment')) {
        const pod = podSpec(object);
        expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
        for (const container of pod.containers) {
          expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
          expect(Object.keys(container.resources?.requests ?? {}).sort()).toEqual(['cpu', 'memory']);
          expect(Object.keys(container.resources?.limits ?? {}).sort()).toEqual(['cpu', 'memory']);
          const tmp = container.volumeMounts?.find((mount) => mount.mountPath === '/tmp');
          expect(pod.volumes?.find((volume) => volume.name === tmp?.name)?.emptyDir).toBeDefined();
        }
      }
    }
  });

  it('takes secrets only by reference: no Secret object, every secret-looking variable from a secretKeyRef', () => {
    for (const options of Object.values(VARIANTS)) {
      const objects = render(options);
      expect(byKind(objects, 'Secret')).toEqual([]);
      for (const object of byKind(objects, 'Deployment')) {
        for (const container of podSpec(object).containers) {
          for (const entry of container.env ?? []) {
            if (/KEY|TOKEN|PASSWORD|SECRET|REDIS_URL|_USER$/.test(entry.name)) {
              expect(entry.value, `${entry.name} has no inline value`).toBeUndefined();
              expect(Object.keys(entry.valueFrom ?? {}), `${entry.name} comes from a Secret`).toEqual(['secretKeyRef']);
            }
          }
        }
      }
    }
    // The defaults reference each secret the apps need.
    const objects = render();
    const secretVariables = (app: string): string[] =>
      (podSpec(deployment(objects, app)).containers[0]!.env ?? []).filter((entry) => entry.valueFrom?.secretKeyRef).map((entry) => entry.name).sort();
    expect(secretVariables('producer')).toEqual(['API_KEYS', 'METRICS_TOKEN', 'REDIS_URL']);
    expect(secretVariables('worker')).toEqual(['GEMINI_API_KEY', 'METRICS_TOKEN', 'REDIS_URL']);
    expect(secretVariables('dashboard')).toEqual(['DASHBOARD_PASSWORD', 'DASHBOARD_USER', 'REDIS_URL']);
  });

  it('configures every app through a ConfigMap mounted as CONFIG_FILE, which the config loader accepts', () => {
    const options = VARIANTS['with a CONFIG_FILE and extra env']!;
    const objects = render(options);
    const [configMap] = byKind(objects, 'ConfigMap');
    const dir = mkdtempSync(join(tmpdir(), 'pq-chart-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, configMap!.data!['config.yaml']!);
    const config = loadConfig({ CONFIG_FILE: file });
    expect(config.limits['gemini-3.6-flash']).toMatchObject({ rpm: 4000, tpm: 4_000_000 });
    expect(config.batching.size).toBe(8);
    for (const app of APPS) {
      const pod = podSpec(deployment(objects, app));
      const [container] = pod.containers;
      expect(env(container!, 'CONFIG_FILE')?.value).toBe('/etc/prompt-queue/config.yaml');
      const mount = container!.volumeMounts!.find((candidate) => candidate.mountPath === '/etc/prompt-queue');
      expect(mount?.readOnly).toBe(true);
      expect(env(container!, 'LOG_LEVEL')?.value).toBe('debug');
    }
    // The producer's scaler divides by the workers' concurrency: both get the same number.
    const concurrency = (app: string) => env(podSpec(deployment(objects, app)).containers[0]!, 'WORKER_CONCURRENCY')?.value;
    expect(concurrency('worker')).toBe('256');
    expect(concurrency('producer')).toBe('256');
  });

  it('scales workers with a KEDA metrics-api trigger on the producer’s GET /scaling, authenticated by the metrics token', () => {
    const objects = render({ releaseName: 'prod', namespace: 'llm' });
    const [scaled] = byKind(objects, 'ScaledObject');
    const spec = scaled!.spec as {
      scaleTargetRef: { name: string };
      minReplicaCount: number;
      maxReplicaCount: number;
      fallback: { replicas: number };
      triggers: { type: string; metricType: string; metadata: Record<string, string>; authenticationRef?: { name: string } }[];
    };
    const worker = deployment(objects, 'worker');
    expect(spec.scaleTargetRef.name).toBe(worker.metadata.name);
    expect(worker.spec!.replicas, 'KEDA owns the replica count').toBeUndefined();
    const [trigger] = spec.triggers;
    const producerService = byKind(objects, 'Service').find((service) => service.metadata.name.endsWith('-producer'))!;
    const port = (producerService.spec as { ports: { port: number }[] }).ports[0]!.port;
    expect(trigger).toMatchObject({ type: 'metrics-api', metricType: 'AverageValue' });
    expect(trigger!.metadata).toEqual({
      url: `http://${producerService.metadata.name}.llm.svc:${port}/scaling`,
      valueLocation: 'recommendedWorkers',
      targetValue: '1',
      authMode: 'bearer',
    });
    const [auth] = byKind(objects, 'TriggerAuthentication');
    expect(trigger!.authenticationRef?.name).toBe(auth!.metadata.name);
    const producerToken = env(podSpec(deployment(objects, 'producer')).containers[0]!, 'METRICS_TOKEN')!.valueFrom!.secretKeyRef!;
    expect((auth!.spec as { secretTargetRef: unknown[] }).secretTargetRef).toEqual([{ parameter: 'token', name: producerToken.name, key: producerToken.key }]);
    expect(spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    expect(spec.maxReplicaCount).toBeGreaterThan(spec.minReplicaCount);
    expect(spec.fallback.replicas).toBeGreaterThanOrEqual(1);
    expect(byKind(objects, 'HorizontalPodAutoscaler')).toEqual([]);
  });

  it('falls back to an HPA without KEDA, and refuses both at once', () => {
    const cpu = render(VARIANTS['hpa on CPU']);
    expect(byKind(cpu, 'ScaledObject')).toEqual([]);
    const [hpa] = byKind(cpu, 'HorizontalPodAutoscaler');
    expect(hpa!.spec).toMatchObject({
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment(cpu, 'worker').metadata.name },
      metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } } }],
    });
    expect(deployment(cpu, 'worker').spec!.replicas).toBeUndefined();
    const external = byKind(render(VARIANTS['hpa on an external metric']), 'HorizontalPodAutoscaler')[0]!;
    expect((external.spec as { metrics: unknown[] }).metrics).toEqual([
      { type: 'External', external: { metric: { name: 'prompt_queue_backlog' }, target: { type: 'AverageValue', averageValue: '64' } } },
    ]);
    expect(deployment(render(VARIANTS['no autoscaler, no metrics token, no dashboard']), 'worker').spec!.replicas).toBe(2);
    expect(() => render({ values: { hpa: { enabled: true } } })).toThrow(/only one of keda.enabled and hpa.enabled/);
  });

  it('renders the same objects with `helm template`, and passes `helm lint`, when helm is installed', (ctx) => {
    if (spawnSync('helm', ['version'], { encoding: 'utf8' }).error) ctx.skip('helm is not on PATH; the subset renderer alone rendered the chart');
    for (const options of Object.values(VARIANTS)) {
      const dir = mkdtempSync(join(tmpdir(), 'pq-values-'));
      const values = join(dir, 'values.json');
      writeFileSync(values, JSON.stringify(options.values ?? {}));
      const lint = spawnSync('helm', ['lint', '--strict', CHART, '-f', values], { encoding: 'utf8' });
      expect(lint.status, lint.stdout + lint.stderr).toBe(0);
      const args = ['template', options.releaseName ?? 'pq', CHART, '--namespace', options.namespace ?? 'default', '-f', values];
      const result = spawnSync('helm', args, { encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(0);
      const fromHelm = parseAllDocuments(result.stdout).map((document) => document.toJS() as unknown).filter(Boolean);
      const key = (object: unknown) => `${(object as K8sObject).kind}/${(object as K8sObject).metadata.name}`;
      const sort = (objects: unknown[]) => [...objects].sort((a, b) => key(a).localeCompare(key(b)));
      expect(sort(render(options))).toEqual(sort(fromHelm));
    }
  });
});
