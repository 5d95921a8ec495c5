// The package as a user gets it: `npm pack`, installed into an empty folder (its CLI dependencies
// come from the registry), then the README's example and the CLI run against the whole stack.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY, root, startStack, type Stack } from './stack.js';

const packageDir = join(root, 'packages/client');

/** The first ```js block after `heading` in a markdown file. */
function exampleBlock(markdown: string, heading: RegExp): string {
  const start = markdown.search(heading);
  expect(start, `${heading} in the README`).toBeGreaterThanOrEqual(0);
  const match = /```js\n([\s\S]*?)```/.exec(markdown.slice(start));
  expect(match, `a js block after ${heading}`).not.toBeNull();
  return match![1]!;
}

let stack: Stack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pq-pack-'));
  stack = await startStack();
});

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('npm pack of @prompt-queue/client', () => {
  it('installs into an empty folder and runs the README example and the CLI against the stack', async () => {
    const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: packageDir, encoding: 'utf8' })) as {
      filename: string;
      files: { path: string }[];
    }[];
    const files = packed!.files.map((file) => file.path);
    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js']));
    expect(files.filter((file) => file.startsWith('test/') || file.startsWith('src/') || file.endsWith('.map'))).toEqual([]);

    const app = join(dir, 'app');
    mkdirSync(app);
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, packed!.filename)], { cwd: app, encoding: 'utf8', stdio: 'pipe' });
    const installed = JSON.parse(readFileSync(join(app, 'node_modules/@prompt-queue/client/package.json'), 'utf8')) as Record<string, unknown>;
    expect(installed.private).toBeUndefined();
    expect(Object.keys(installed.dependencies as object).sort()).toEqual(['cli-progress', 'commander']);

    // The same example in the package README and the root README's "Use it from your service".
    const example = exampleBlock(readFileSync(join(packageDir, 'README.md'), 'utf8'), /^## Quick start/m);
    expect(exampleBlock(readFileSync(join(root, 'README.md'), 'utf8'), /^## Use it from your service/m)).toBe(example);
    writeFileSync(join(app, 'example.mjs'), example);
    const env = { ...process.env, PROMPT_QUEUE_URL: stack.url, PROMPT_QUEUE_KEY: KEY };
    const run = spawnSync(process.execPath, ['example.mjs'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^completed \S.* \$0\.\d+\n$/);

    // The bin, with the dependencies npm installed.
    writeFileSync(join(app, 'prompts.jsonl'), '{"prompt":"one"}\n{"prompt":"two"}\n');
    const cli = spawnSync(join(app, 'node_modules/.bin/prompt-queue'), ['run', 'prompts.jsonl', '-o', 'results.jsonl'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    expect(cli.stderr).toContain('Done: 2 of 2 lines have a result in results.jsonl');
    expect(cli.status).toBe(0);
  }, 180_000);
});
