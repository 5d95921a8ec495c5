import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { textTokens } from '../src/index.js';
import { KEY, startHarness, type Harness } from './helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(() => h.emulator.reset());

interface ChatBody {
  id: string;
  object: string;
  model: string;
  choices: { index: number; message: { role: string; content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}
interface ChunkBody {
  choices: { delta?: { content?: string }; finish_reason: string | null }[];
}

function chat(body: unknown, key: string | undefined = KEY): Promise<Response> {
  return fetch(`${h.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
}

describe('OpenAI-compatible chat completions', () => {
  it('answers any model with usage', async () => {
    const res = await chat({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'Be kind' }, { role: 'user', content: 'Hello' }] });
    expect(res.status).toBe(200);
    const body = (await res.json()) as ChatBody;
    expect(body).toMatchObject({ object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'stop' }] });
    expect(body.id).toMatch(/^chatcmpl-/);
    const content = body.choices[0]!.message.content;
    expect(content).toMatch(/^Emulated answer from gpt-4o-mini: /);
    const prompt = textTokens('Be kind') + textTokens('Hello');
    expect(body.usage).toEqual({ prompt_tokens: prompt, completion_tokens: textTokens(content), total_tokens: prompt + textTokens(content) });
  });

  it('max_tokens truncates with finish_reason length', async () => {
    const res = await chat({ model: 'llama3', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    const body = (await res.json()) as ChatBody;
    expect(body.choices[0]!).toMatchObject({ finish_reason: 'length', message: { content: 'Emulated' } });
    expect(body.usage.completion_tokens).toBe(2);
  });

  it('streams chunks ending in [DONE]', async () => {
    const res = await chat({ model: 'llama3', messages: [{ role: 'user', content: 'Hi' }], stream: true });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const text = await res.text();
    expect(text.trim().endsWith('data: [DONE]')).toBe(true);
    const events = text.split('\n\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)) as ChunkBody);
    const content = events.map((e) => e.choices[0]?.delta?.content ?? '').join('');
    expect(content).toMatch(/^Emulated answer from llama3/);
    expect(events.at(-1)!.choices[0]!.finish_reason).toBe('stop');
  });

  it('missing or invalid bearer -> 401 invalid_api_key', async () => {
    for (const key of ['', 'nope']) {
      const res = await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] }, key);
      expect(res.status).toBe(401);
      const body = (await res.json()) as { error: Record<string, unknown> };
      expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
      expect(JSON.stringify(body)).not.toContain('nope');
    }
  });

  it('faults and quotas answer in OpenAI shape', async () => {
    h.emulator.addFault({ kind: 'unavailable', model: 'gpt-4o-mini', count: 1 });
    const r503 = await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
    expect(r503.status).toBe(503);
    expect(((await r503.json()) as { error: { type: string } }).error.type).toBe('server_error');

    h.emulator.setQuotas({ 'gpt-4o-mini': { rpm: 1 } });
    expect((await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] })).status).toBe(200);
    h.clock.advance(30_500);
    const r429 = await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
    expect(r429.status).toBe(429);
    expect(r429.headers.get('retry-after')).toBe('30');
    expect(((await r429.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded');
    const c = h.emulator.counters().byModel['gpt-4o-mini']!;
    expect(c).toMatchObject({ calls: 3, successes: 1, errors5xx: 1, quota429: 1 });
  });

  it('rejects bad requests with 400', async () => {
    expect((await chat({ model: 'x', messages: [] })).status).toBe(400);
    expect((await chat({ messages: [{ role: 'user', content: 'hi' }] })).status).toBe(400);
  });
});
