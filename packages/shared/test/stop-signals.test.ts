import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { onStopSignals, SAME_STOP_REQUEST_MS } from '../src/service/lifecycle.js';

describe('onStopSignals (fake clock)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function setup() {
    const target = new EventEmitter();
    const calls: string[] = [];
    const dispose = onStopSignals({
      target,
      stop: (signal) => calls.push(`stop ${signal}`),
      force: (signal) => calls.push(`force ${signal}`),
      repeated: (signal, ms) => calls.push(`repeated ${signal} +${ms}`),
    });
    return { target, calls, dispose };
  }

  it('one Ctrl-C under a supervisor (SIGINT from the terminal, SIGTERM and SIGINT forwarded) is one graceful stop', () => {
    const { target, calls } = setup();
    target.emit('SIGINT', 'SIGINT');
    vi.advanceTimersByTime(3);
    target.emit('SIGTERM', 'SIGTERM');
    vi.advanceTimersByTime(40);
    target.emit('SIGINT', 'SIGINT');
    expect(calls).toEqual(['stop SIGINT', 'repeated SIGTERM +3', 'repeated SIGINT +43']);
  });

  it(`a signal ${SAME_STOP_REQUEST_MS} ms or more after the first forces the exit`, () => {
    const { target, calls } = setup();
    target.emit('SIGTERM', 'SIGTERM');
    vi.advanceTimersByTime(SAME_STOP_REQUEST_MS - 1);
    target.emit('SIGTERM', 'SIGTERM');
    vi.advanceTimersByTime(1);
    target.emit('SIGINT', 'SIGINT');
    expect(calls).toEqual(['stop SIGTERM', `repeated SIGTERM +${SAME_STOP_REQUEST_MS - 1}`, 'force SIGINT']);
  });

  it('dispose removes its listeners', () => {
    const { target, calls, dispose } = setup();
    dispose();
    expect(target.listenerCount('SIGTERM') + target.listenerCount('SIGINT')).toBe(0);
    target.emit('SIGTERM', 'SIGTERM');
    expect(calls).toEqual([]);
  });
});
