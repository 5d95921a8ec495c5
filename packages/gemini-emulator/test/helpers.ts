import { GoogleGenerativeAI, GoogleGenerativeAIFetchError } from '@google/generative-ai';
import { createEmulator, type Emulator, type EmulatorOptions } from '../src/index.js';

export const KEY = 'emulator-key';

/** A clock tests move by hand. */
export class FakeClock {
  constructor(public t = 1_700_000_000_000) {}
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface Harness {
  emulator: Emulator;
  url: string;
  clock: FakeClock;
  genAI: GoogleGenerativeAI;
  model(name: string, extra?: { timeout?: number }): ReturnType<GoogleGenerativeAI['getGenerativeModel']>;
  close(): Promise<void>;
}

export async function startHarness(options: EmulatorOptions = {}): Promise<Harness> {
  const clock = new FakeClock();
  const emulator = createEmulator({ now: clock.now, ...options });
  const url = await emulator.listen(0);
  const genAI = new GoogleGenerativeAI(KEY);
  return {
    emulator,
    url,
    clock,
    genAI,
    model: (name, extra) => genAI.getGenerativeModel({ model: name }, { baseUrl: url, ...extra }),
    close: () => emulator.close(),
  };
}

/** Runs `fn`, expecting a GoogleGenerativeAIFetchError, and returns it. */
export async function fetchError(fn: () => Promise<unknown>): Promise<GoogleGenerativeAIFetchError> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof GoogleGenerativeAIFetchError) return e;
    throw e;
  }
  throw new Error('expected the call to fail');
}

type Detail = Record<string, unknown> & { '@type': string };

export function detail(err: GoogleGenerativeAIFetchError, type: string): Detail | undefined {
  return (err.errorDetails as Detail[] | undefined)?.find((d) => d['@type'] === `type.googleapis.com/google.rpc.${type}`);
}

/** Polls until `check` passes or the deadline hits (for effects that happen after a socket closes). */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not met in time');
}
