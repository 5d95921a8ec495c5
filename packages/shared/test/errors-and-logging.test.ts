import { describe, expect, it } from 'vitest';
import winston from 'winston';
import { Writable } from 'node:stream';
import { createLogger, formatFailedReason, parseFailedReason, redact } from '../src/index.js';

describe('failed reasons', () => {
  it('round-trips a code through BullMQ’s message-only failedReason', () => {
    expect(parseFailedReason(formatFailedReason('PROVIDER_BAD_REQUEST', 'bad field'))).toEqual({
      code: 'PROVIDER_BAD_REQUEST',
      message: 'bad field',
      retryable: false,
    });
    expect(parseFailedReason('[PROVIDER_UNAVAILABLE] overloaded').retryable).toBe(true);
  });

  it("reads BullMQ's stall-limit reason as JOB_STALLED", () => {
    expect(parseFailedReason('job stalled more than allowable limit')).toMatchObject({ code: 'JOB_STALLED', retryable: true });
  });

  it('reports unclassified reasons as INTERNAL', () => {
    expect(parseFailedReason('job crashed').code).toBe('INTERNAL');
    expect(parseFailedReason('[NOT_A_CODE] x').code).toBe('INTERNAL');
    expect(parseFailedReason(undefined).code).toBe('INTERNAL');
  });
});

describe('logging', () => {
  it('redacts prompt fields and keys by name, recursively, and key-shaped strings anywhere', () => {
    const out = redact({
      jobId: 'j1',
      prompt: 'secret prompt',
      nested: { contents: [{ parts: [{ text: 'x' }] }], apiKey: 'k', count: 3 },
      note: 'called with AIzaSyA1234567890abcdefghijklmnopqrstuv',
    });
    expect(out).toEqual({
      jobId: 'j1',
      prompt: '[redacted]',
      nested: { contents: '[redacted]', apiKey: '[redacted]', count: 3 },
      note: 'called with [redacted]',
    });
  });

  it('never writes prompt text or keys to the log stream', () => {
    const lines: string[] = [];
    const logger = createLogger({ service: 'test', json: true });
    logger.clear();
    logger.add(
      new winston.transports.Stream({
        stream: new Writable({
          write(chunk, _enc, done) {
            lines.push(String(chunk));
            done();
          },
        }),
      }),
    );
    logger.info('job done Bearer abc123', { prompt: 'tell me a secret', tenant: 'acme', request: { text: 'hidden' } });
    const line = lines.join('');
    expect(line).toContain('acme');
    expect(line).not.toContain('tell me a secret');
    expect(line).not.toContain('hidden');
    expect(line).not.toContain('abc123');
  });

  it('colours readable lines only on a terminal: log files and pipes get no ANSI codes', () => {
    const written = (options: { color?: boolean }) => {
      const lines: string[] = [];
      const logger = createLogger({ service: 'test', ...options });
      logger.clear();
      const stream = new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      });
      logger.add(new winston.transports.Stream({ stream }));
      logger.warn('disk almost full');
      return lines.join('');
    };
    const ESC = '\u001b[';
    const tty = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
    try {
      Object.defineProperty(process.stderr, 'isTTY', { value: false, configurable: true });
      expect(written({})).toMatch(/ warn \[test\] disk almost full/);
      expect(written({})).not.toContain(ESC);
      Object.defineProperty(process.stderr, 'isTTY', { value: true, configurable: true });
      expect(written({})).toContain(ESC);
      expect(written({ color: false })).not.toContain(ESC);
    } finally {
      if (tty) Object.defineProperty(process.stderr, 'isTTY', tty);
      else delete (process.stderr as { isTTY?: boolean }).isTTY;
    }
  });
});
