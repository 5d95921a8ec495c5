import { Agent, setGlobalDispatcher } from 'undici';

/**
 * The worker's HTTP connection pool to its providers: one undici Agent for the whole process,
 * installed as the global dispatcher, so every SDK that calls `fetch` (@google/generative-ai,
 * @google/genai, openai) shares it. Connections are kept alive and reused per origin; their number
 * is not capped (the worker's concurrency bounds the calls in flight, one connection each), and an
 * idle one stays open `keepAliveMs`, or less if the server says so (Node's default, without a hint
 * from the server, is 4 s: shorter than a quota wait).
 * Process-wide state: the worker's entry point installs it once, before any call.
 */
export function installProviderHttpPool(options: { keepAliveMs: number }): Agent {
  const agent = new Agent({
    // Without a `Keep-Alive: timeout` from the server, this; with one, the shorter of the two.
    keepAliveTimeout: options.keepAliveMs,
    keepAliveMaxTimeout: options.keepAliveMs,
    // One request per connection at a time: HTTP/1.1 pipelining would queue calls behind slow ones.
    pipelining: 1,
  });
  setGlobalDispatcher(agent);
  return agent;
}
