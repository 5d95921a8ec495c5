import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createLogger, createRedis, QueueName, type AuditLog, type Config, type StoredContent } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { createPromptWorker } from '../src/worker.js';
import { enqueue, promptData, testConfig, waitForJob } from './helpers.js';

const FILES_URI = 'https://generativelanguage.googleapis.com/v1beta/files/abc-123';
const CLOUD_METADATA = 'http://169.254.169.254/latest/meta-data/iam/security-credentials/';

/**
 * Defect 4 of issue 14, in the worker: jobs already in the queue (an older producer, a config
 * change) may carry any file URI. A link never receives one it may not take: the job fails alone
 * with FILE_URI_NOT_ALLOWED before any call. A capture server stands in both for an
 * OpenAI-compatible backend (vLLM, LiteLLM, which fetch `image_url` themselves) and for the
 * "internal" address a tenant points at, so a forwarded or fetched URL would show up in its log.
 */
describe('file URIs a link may not take (real Redis, worker, capture server, emulator)', () => {
  let redisServer: TestRedis;
  let emulator: EmulatorProcess;
  let capture: Server;
  let captureUrl: string;
  /** Every request the capture server received: method, path and body. */
  let captured: { method: string; path: string; body: string }[];
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    [redisServer, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess()]);
    capture = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        captured.push({ method: req.method ?? '', path: req.url ?? '', body: Buffer.concat(chunks).toString('utf8') });
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            model: 'captured-model',
            choices: [{ message: { content: 'An answer from the capture server' }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 5, completion_tokens: 6, total_tokens: 11 },
          }),
        );
      });
    });
    await new Promise<void>((resolve) => capture.listen(0, '127.0.0.1', resolve));
    captureUrl = `http://127.0.0.1:${(capture.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    capture?.closeAllConnections();
    await new Promise((resolve) => capture?.close(resolve));
    await Promise.all([emulator?.stop(), redisServer?.stop()]);
  });
  beforeEach(async () => {
    captured = [];
    await emulator.client.reset();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function setup(adjust: (config: Config) => void) {
    const config = testConfig({
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('files'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      RESPONSE_CACHE: 'false',
    });
    adjust(config);
    const audit: AuditLog = { write: () => {}, close: async () => {} };
    const worker = createPromptWorker({ config, logger: createLogger({ service: 'worker-test', level: 'error' }), audit });
    cleanups.push(() => worker.close(1_000));
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    return { config, queue };
  }

  const openaiChain = (config: Config) => {
    config.chains = { default: [{ provider: 'openai', name: 'vllm', model: 'llava', baseUrl: `${captureUrl}/v1` }] };
  };
  const withFile = (fileUri: string, mimeType = 'image/png'): { contents: StoredContent[] } => ({
    contents: [{ role: 'user', parts: [{ text: 'Describe this.' }, { fileData: { mimeType, fileUri } }] }],
  });

  it('an OpenAI-compatible link never receives the metadata URL, an internal URL or a Files API URI; a text job beside them completes', async () => {
    const { config, queue } = setup(openaiChain);
    const internal = `${captureUrl}/latest/meta-data/`;
    const refused = [CLOUD_METADATA, internal, FILES_URI];
    const refusedIds = await Promise.all(refused.map((uri) => enqueue(queue, config, promptData(withFile(uri)))));
    const plainId = await enqueue(queue, config, promptData({ text: 'No file here.' }));

    for (const id of refusedIds) {
      const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
      expect(state).toBe('failed');
      expect(job.failedReason).toMatch(/^\[FILE_URI_NOT_ALLOWED\] vllm \(OpenAI-compatible\) may not receive the fileUri of contents\[0\]\.parts\[1\]/);
      expect(job.attemptsMade).toBe(1);
      for (const uri of refused) expect(job.failedReason).not.toContain(uri);
    }
    const plain = await waitForJob(queue, plainId, ['completed', 'failed']);
    expect(plain.state).toBe('completed');

    // The backend got exactly the text job's call, and nobody fetched the "internal" address.
    expect(captured.map((request) => `${request.method} ${request.path}`)).toEqual(['POST /v1/chat/completions']);
    const sent = captured.map((request) => request.body).join('\n');
    expect(sent).toContain('No file here.');
    for (const uri of [...refused, '169.254.169.254', 'meta-data', 'generativelanguage']) expect(sent).not.toContain(uri);
  });

  it('fileUris.allow: an allowlisted image URL reaches the OpenAI-compatible link as image_url; the metadata URL still does not', async () => {
    const allowed = `${captureUrl}/public/cat.png`;
    const { config, queue } = setup((c) => {
      openaiChain(c);
      c.fileUris.allow = [`${captureUrl}/public/`];
    });
    const okId = await enqueue(queue, config, promptData(withFile(allowed)));
    const badId = await enqueue(queue, config, promptData(withFile(CLOUD_METADATA)));
    expect((await waitForJob(queue, okId, ['completed', 'failed'])).state).toBe('completed');
    const bad = await waitForJob(queue, badId, ['completed', 'failed']);
    expect(bad.job.failedReason).toMatch(/^\[FILE_URI_NOT_ALLOWED\] /);

    expect(captured).toHaveLength(1);
    const body = JSON.parse(captured[0]!.body) as { messages: { content: unknown }[] };
    expect(body.messages[0]!.content).toEqual([
      { type: 'text', text: 'Describe this.' },
      { type: 'image_url', image_url: { url: allowed } },
    ]);
  });

  it('a Gemini link takes a Files API URI but not the metadata URL, which fails its job without a call', async () => {
    const { config, queue } = setup(() => {});
    const filesId = await enqueue(queue, config, promptData(withFile(FILES_URI, 'application/pdf')));
    const metadataId = await enqueue(queue, config, promptData(withFile(CLOUD_METADATA)));
    expect((await waitForJob(queue, filesId, ['completed', 'failed'])).state).toBe('completed');
    const metadata = await waitForJob(queue, metadataId, ['completed', 'failed']);
    expect(metadata.state).toBe('failed');
    expect(metadata.job.failedReason).toMatch(/^\[FILE_URI_NOT_ALLOWED\] gemini may not receive the fileUri of contents\[0\]\.parts\[1\]/);
    expect((await emulator.client.counters()).totalCalls).toBe(1);
  });
});
