/**
 * "Did you mean …?" for configuration typos: the valid key closest to an unknown one by edit
 * distance, ignoring case (`dailyUSD` → `dailyUsd`, `concurency` → `concurrency`, `workers` →
 * `worker`). None when nothing is close enough to be a plausible typo.
 */
export function closestKey(unknown: string, valid: readonly string[]): string | undefined {
  const target = unknown.toLowerCase();
  // A typo changes a few characters; past a third of the word it is another word.
  const maxDistance = Math.max(2, Math.floor(target.length / 3));
  let best: { key: string; distance: number } | undefined;
  for (const key of valid) {
    const distance = editDistance(target, key.toLowerCase());
    if (distance <= maxDistance && (best === undefined || distance < best.distance)) best = { key, distance };
  }
  return best?.key;
}

/** Levenshtein distance: insertions, deletions and substitutions, each costing 1. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}
