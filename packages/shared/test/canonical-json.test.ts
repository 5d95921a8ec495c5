import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../src/index.js';

/** The definition the fast version must match byte for byte (stored request hashes depend on it). */
const reference = (value: unknown) =>
  JSON.stringify(value, (_key, inner: unknown) =>
    inner !== null && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : inner,
  );

describe('canonicalJson', () => {
  it('sorts keys at every depth, keeps array order and drops undefined fields', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: undefined } })).toBe('{"a":{"d":[3,{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson({ x: 1, y: 2 })).toBe(canonicalJson({ y: 2, x: 1 }));
  });

  it('matches the replacer-based definition on awkward inputs', () => {
    const inputs: unknown[] = [
      JSON.parse('{"__proto__":{"a":1},"b":[null,true,"s"]}'),
      { date: new Date(0), n: -0, big: 1e21, nested: { '10': 1, '9': 2, a: undefined } },
      [undefined, () => 1, { k: Symbol('s') }],
      'plain',
      null,
    ];
    for (const input of inputs) expect(canonicalJson(input)).toBe(reference(input));
  });
});
