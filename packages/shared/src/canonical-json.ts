// Canonical JSON: the one serialization behind every request hash (idempotency, response cache,
// audit), so that two requests differing only in key order hash the same.

/**
 * JSON with object keys sorted at every level, so key order in the request does not matter.
 * The sorted copy is built first and stringified without a replacer (a replacer takes
 * JSON.stringify off its fast path); the output is byte for byte what
 * `JSON.stringify(value, sortingReplacer)` gives, so hashes of stored jobs still match.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortedCopy(value, ''));
}

function sortedCopy(value: unknown, key: string): unknown {
  // As JSON.stringify does before it looks at a value: toJSON first (Dates, Buffers, ...).
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON(key: string): unknown }).toJSON(key);
  }
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item, index) => sortedCopy(item, String(index)));
  const record = value as Record<string, unknown>;
  // fromEntries, not assignment: an own "__proto__" key stays a plain key.
  return Object.fromEntries(
    Object.keys(record)
      .sort(compareKeys)
      .map((name) => [name, sortedCopy(record[name], name)]),
  );
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
