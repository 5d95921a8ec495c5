// The deployment files, checked without a Docker engine: docker-compose.yml and the Dockerfile
// must agree with each other, with the repository layout and with the config defaults.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema, loadConfig } from '@prompt-queue/shared';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const COMPOSE_FILE = join(ROOT, 'docker-compose.yml');
const DOCKERFILE = join(ROOT, 'Dockerfile');
const APP_SERVICES = ['producer', 'worker', 'dashboard'] as const;
const SERVICES = ['redis', ...APP_SERVICES, 'gemini-emulator'] as const;

// ---- docker-compose.yml ----

interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string; target?: string };
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: Array<string | number | { target: number; published?: string | number }>;
  volumes?: Array<string | { source?: string; target: string }>;
  container_name?: string;
  profiles?: string[];
  stop_grace_period?: string;
  healthcheck?: { test: string | string[] };
  depends_on?: string[] | Record<string, { condition?: string }>;
}

interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

// `merge: true` resolves the `<<: *anchor` keys the file uses for shared settings.
const compose = parseYaml(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as ComposeFile;

function service(name: string): ComposeService {
  const found = compose.services[name];
  if (!found) throw new Error(`docker-compose.yml has no service ${name}`);
  return found;
}

/** `${VAR:-default}`, `${VAR-default}`, `${VAR}` and `$VAR` as Compose would expand them with `env`. */
function interpolate(value: string, env: Record<string, string> = {}): string {
  return value
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}/g, (_all, name: string, op: string | undefined, fallback = '') => {
      const set = env[name];
      if (op === ':-') return set ? set : fallback;
      if (op === '-') return set ?? fallback;
      return set ?? '';
    })
    .replace(/\$\$/g, '$');
}

/** A service's environment with interpolations expanded as Compose would with `shell` (default: nothing set). */
function environment(name: string, shell: Record<string, string> = {}): Record<string, string> {
  const raw = service(name).environment ?? {};
  const entries = Array.isArray(raw)
    ? raw.map((item) => {
        const eq = item.indexOf('=');
        return eq < 0 ? [item, ''] : [item.slice(0, eq), item.slice(eq + 1)];
      })
    : Object.entries(raw).map(([key, value]) => [key, value === null ? '' : String(value)]);
  return Object.fromEntries(entries.map(([key, value]) => [key!, interpolate(value!, shell)]));
}

/** Container ports with the host ports they are published on (short and long syntax). */
function publishedPorts(name: string): Array<{ host?: string; container: number }> {
  return (service(name).ports ?? []).map((port) => {
    if (typeof port === 'object') return { host: port.published?.toString(), container: port.target };
    const parts = interpolate(String(port)).replace(/\/(tcp|udp)$/, '').split(':');
    return { host: parts.length > 1 ? parts.at(-2) : undefined, container: Number(parts.at(-1)) };
  });
}

function buildTarget(name: string): string | undefined {
  const build = service(name).build;
  return typeof build === 'object' ? build.target : undefined;
}

/** Compose durations (`40s`, `1m30s`, `500ms`) in milliseconds. */
function durationMs(value: string): number {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001 };
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|us|h|m|s)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== value) throw new Error(`bad duration ${value}`);
  return parts.reduce((total, [, amount, unit]) => total + Number(amount) * units[unit!]!, 0);
}

// ---- Dockerfile ----

interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  name: string;
  /** The image or earlier stage it starts from. */
  from: string;
  instructions: Instruction[];
}

/** Stages with their instructions; continuation lines joined, comments and parser directives dropped. */
function parseDockerfile(text: string): Stage[] {
  const lines = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = keyword.toUpperCase();
    if (upper === 'FROM') {
      const words = args.split(/\s+/).filter((word) => !word.startsWith('--'));
      const as = words.findIndex((word) => word.toUpperCase() === 'AS');
      stages.push({ name: as >= 0 ? words[as + 1]! : String(stages.length), from: words[0]!, instructions: [] });
    } else if (stages.length > 0) {
      stages.at(-1)!.instructions.push({ keyword: upper, args });
    }
  }
  return stages;
}

/** Arguments of an exec-form (`["a", "b"]`) or shell-form instruction. */
function words(args: string): string[] {
  return args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/).filter(Boolean);
}

const stages = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
const stageByName = new Map(stages.map((stage) => [stage.name, stage]));

/** A stage followed by the stages it is built FROM, nearest first. */
function ancestry(stage: Stage): Stage[] {
  const chain = [stage];
  for (let parent = stageByName.get(stage.from); parent; parent = stageByName.get(parent.from)) chain.push(parent);
  return chain;
}

/** The last value of `keyword` in a stage or, failing that, in the stages it builds on. */
function inherited(stage: Stage, keyword: string): string | undefined {
  for (const current of ancestry(stage)) {
    const found = current.instructions.filter((instruction) => instruction.keyword === keyword).at(-1);
    if (found) return found.args;
  }
  return undefined;
}

/** Build-context sources of every COPY/ADD without `--from`. */
function contextSources(): string[] {
  return stages.flatMap((stage) =>
    stage.instructions
      .filter((instruction) => instruction.keyword === 'COPY' || instruction.keyword === 'ADD')
      .map((instruction) => words(instruction.args))
      .filter((args) => !args.some((arg) => arg.startsWith('--from')))
      .flatMap((args) => args.filter((arg) => !arg.startsWith('--')).slice(0, -1)),
  );
}

const runtimeStages = SERVICES.filter((name) => name !== 'redis').map((name) => {
  const target = buildTarget(name);
  const stage = target ? stageByName.get(target) : undefined;
  return { name, target, stage };
});

// ---- the tests ----

describe('docker-compose.yml', () => {
  it('defines redis, producer, worker, dashboard and gemini-emulator', () => {
    expect(Object.keys(compose.services)).toEqual(expect.arrayContaining([...SERVICES]));
  });

  it('runs Redis with AOF (appendfsync everysec) on a named volume, with a healthcheck', () => {
    const redis = service('redis');
    const command = Array.isArray(redis.command) ? redis.command.join(' ') : (redis.command ?? '');
    expect(command).toMatch(/--appendonly\s+yes/);
    expect(command).toMatch(/--appendfsync\s+everysec/);
    const data = (redis.volumes ?? []).map((volume) =>
      typeof volume === 'string' ? { source: volume.split(':')[0], target: volume.split(':')[1] } : volume,
    );
    const mount = data.find((volume) => volume.target === '/data');
    expect(mount, 'a volume mounted at /data').toBeDefined();
    expect(Object.keys(compose.volumes ?? {}), 'a named volume, declared at the top level').toContain(mount!.source);
    expect(JSON.stringify(redis.healthcheck?.test)).toContain('ping');
  });

  it('starts the app services once Redis is healthy', () => {
    for (const name of APP_SERVICES) {
      const dependsOn = service(name).depends_on;
      expect(dependsOn && !Array.isArray(dependsOn) ? dependsOn.redis?.condition : undefined, name).toBe('service_healthy');
    }
  });

  it('lets the worker scale: no container_name, no host ports, a stop grace period longer than its shutdown timeout', () => {
    const worker = service('worker');
    expect(worker.container_name).toBeUndefined();
    expect(publishedPorts('worker').filter((port) => port.host !== undefined)).toEqual([]);
    expect(worker.stop_grace_period, 'stop_grace_period').toBeDefined();
    const shutdownTimeoutMs = Number(environment('worker').SHUTDOWN_TIMEOUT_MS || configSchema.parse({}).worker.shutdownTimeoutMs);
    expect(durationMs(worker.stop_grace_period!)).toBeGreaterThan(shutdownTimeoutMs);
  });

  it('puts the emulator under a profile, so a plain `up` talks to the real API', () => {
    expect(service('gemini-emulator').profiles).toEqual(expect.arrayContaining(['emulator']));
    for (const name of ['redis', ...APP_SERVICES]) expect(service(name).profiles, name).toBeUndefined();
  });

  it('points producer, worker and dashboard at the redis service', () => {
    for (const name of APP_SERVICES) {
      const url = new URL(environment(name).REDIS_URL ?? 'missing://');
      expect(url.protocol, name).toBe('redis:');
      expect(url.hostname, name).toBe('redis');
    }
  });

  it('gives the worker a Gemini key and base URL, defaulting to the emulator service', () => {
    const env = environment('worker');
    expect(env.GEMINI_API_KEY).toBeTruthy();
    expect(new URL(env.GEMINI_BASE_URL!).hostname).toBe('gemini-emulator');
    const emulator = environment('gemini-emulator');
    expect(new URL(env.GEMINI_BASE_URL!).port).toBe(emulator.EMULATOR_PORT);
    expect(emulator.EMULATOR_HOST).toBe('0.0.0.0');
    // The emulator's default keys are `emulator-key`, which the worker's default must match.
    expect((emulator.EMULATOR_API_KEYS || 'emulator-key').split(',')).toContain(env.GEMINI_API_KEY);
  });

  it('publishes the producer and dashboard on the ports the config defaults to', () => {
    const defaults = configSchema.parse({});
    const expected = { producer: ['PRODUCER_PORT', defaults.producer.port], dashboard: ['DASHBOARD_PORT', defaults.dashboard.port] } as const;
    for (const [name, [variable, port]] of Object.entries(expected)) {
      const configured = Number(environment(name)[variable] || port);
      expect(publishedPorts(name), name).toContainEqual({ host: String(configured), container: configured });
    }
  });

  it('gives the dashboard credentials (local defaults), so it starts', () => {
    const env = environment('dashboard');
    expect(env.DASHBOARD_USER).toBeTruthy();
    expect(env.DASHBOARD_PASSWORD).toBeTruthy();
  });

  it('starts every app service with its public local defaults in development, and refuses them in production', () => {
    for (const name of APP_SERVICES) {
      expect(environment(name).NODE_ENV, name).toBe('development');
      expect(() => loadConfig(environment(name)), name).not.toThrow();
    }
    const production = { NODE_ENV: 'production' };
    expect(() => loadConfig(environment('producer', production))).toThrow(/API_KEYS \(producer\.apiKeys\): in production every API key needs at least 16/);
    expect(() => loadConfig(environment('dashboard', production))).toThrow(/DASHBOARD_PASSWORD \(dashboard\.password\): in production/);
    // With secrets of one's own, production starts.
    expect(() => loadConfig(environment('producer', { ...production, API_KEYS: 'acme:0123456789abcdef0123' }))).not.toThrow();
    expect(() => loadConfig(environment('dashboard', { ...production, DASHBOARD_PASSWORD: 'a-long-dashboard-password' }))).not.toThrow();
    expect(() => loadConfig(environment('worker', production))).not.toThrow();
  });

  it('is valid for `docker compose config` (when the Docker CLI and its compose plugin are installed)', (context) => {
    const version = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
    if (version.error || version.status !== 0) {
      context.skip(`docker compose is not available here (${version.error?.message ?? version.stderr.trim()})`);
    }
    const result = spawnSync('docker', ['compose', '-f', COMPOSE_FILE, '--profile', 'emulator', 'config', '-q'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});

describe('Dockerfile', () => {
  it('has a stage for every build target compose uses', () => {
    for (const { name, target, stage } of runtimeStages) {
      expect(target, `${name} has a build target`).toBeTruthy();
      expect(stage, `FROM … AS ${target}`).toBeDefined();
    }
  });

  it('runs every service stage as a non-root user, in production mode', () => {
    for (const { name, stage } of runtimeStages) {
      const user = inherited(stage!, 'USER');
      expect(user, `${name}: USER`).toBeDefined();
      expect(['root', '0'], `${name}: USER ${user}`).not.toContain(user!.split(':')[0]);
      expect(ancestry(stage!).flatMap((s) => s.instructions).some((i) => i.keyword === 'ENV' && /NODE_ENV=production/.test(i.args)), name).toBe(
        true,
      );
    }
  });

  it('gives the HTTP services a HEALTHCHECK', () => {
    for (const { name, stage } of runtimeStages) expect(inherited(stage!, 'HEALTHCHECK'), name).toBeDefined();
  });

  it('copies only paths that exist in the repository', () => {
    const sources = contextSources();
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) expect(existsSync(join(ROOT, source)), source).toBe(true);
  });

  it('copies every workspace manifest before npm ci', () => {
    const workspaces = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces;
    const manifests = contextSources().filter((source) => source.endsWith('package.json') && source !== 'package.json');
    for (const manifest of manifests) expect(existsSync(join(ROOT, manifest)), manifest).toBe(true);
    // Every package.json matching a workspace glob is copied, or `npm ci` rejects the lockfile.
    for (const pattern of workspaces) {
      const base = pattern.replace(/\/\*$/, '');
      const dirs = pattern.endsWith('/*') ? readdirSync(join(ROOT, base)).map((dir) => `${base}/${dir}`) : [base];
      for (const dir of dirs) {
        if (existsSync(join(ROOT, dir, 'package.json'))) expect(manifests, dir).toContain(`${dir}/package.json`);
      }
    }
  });

  it.each(runtimeStages)('starts $name from a built script whose TypeScript source exists', ({ name, stage }) => {
    const command = words(inherited(stage!, 'CMD') ?? '[]');
    const script = command.find((word) => /\/dist\/.+\.js$/.test(word));
    expect(script, `${name}: CMD runs a dist/*.js script`).toBeDefined();
    const source = script!.replace('/dist/', '/src/').replace(/\.js$/, '.ts');
    expect(existsSync(join(ROOT, source)), `${name}: ${source}`).toBe(true);
    // The runtime stage must actually contain that script's build output.
    const distDir = script!.slice(0, script!.indexOf('/dist/') + '/dist'.length);
    const copied = ancestry(stage!)
      .flatMap((s) => s.instructions)
      .some((i) => i.keyword === 'COPY' && words(i.args).includes(distDir));
    expect(copied, `${name}: COPY ${distDir}`).toBe(true);
  });

  it('keeps dependencies and build output out of the build context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#'));
    for (const entry of ['node_modules', 'dist', '.turbo', '.git']) {
      expect(ignored.some((line) => line === entry || line === `**/${entry}`), entry).toBe(true);
    }
    // Nothing the Dockerfile copies may be excluded (top-level entries only: enough for this layout).
    for (const source of contextSources()) {
      const top = source.replace(/\/$/, '').split('/')[0]!;
      expect(ignored, source).not.toContain(top);
    }
  });
});
