/**
 * Every Redis key prompt-queue writes outside BullMQ's own, built in one place. BullMQ's keys use
 * the same prefix (`<prefix>:<queue>:…`).
 */
export function blobKey(prefix: string, sha256: string): string {
  return `${prefix}:blob:${sha256}`;
}

/** Marker kept after a job is cancelled, so `GET /v1/jobs/:id` can say `cancelled`. */
export function cancelledJobKey(prefix: string, jobId: string): string {
  return `${prefix}:cancelled:${jobId}`;
}
