import { PromptQueueError, WebhookUrlGuard, type Config } from '@prompt-queue/shared';
import type { Issue, PreparedJob } from './requests.js';

/**
 * The SSRF check of webhook URLs at enqueue: each distinct URL resolved once, every job with a
 * refused one listed, nothing enqueued. Here rather than in requests.ts because it does DNS; the
 * worker checks again before every delivery (DNS can change).
 */
export async function assertWebhookUrlsAllowed(guard: WebhookUrlGuard, jobs: readonly PreparedJob[], bulk: boolean): Promise<void> {
  const urls = [...new Set(jobs.flatMap((job) => (job.data.webhook ? [job.data.webhook.url] : [])))];
  if (urls.length === 0) return;
  const refusals = new Map<string, string>();
  await Promise.all(
    urls.map(async (url) => {
      try {
        await guard.check(url);
      } catch (error) {
        if (!(error instanceof PromptQueueError) || error.code !== 'WEBHOOK_URL_NOT_ALLOWED') throw error;
        refusals.set(url, error.message);
      }
    }),
  );
  const issues: Issue[] = jobs.flatMap((job, index) => {
    const message = job.data.webhook && refusals.get(job.data.webhook.url);
    return message ? [{ path: bulk ? `jobs[${index}].webhook.url` : 'webhook.url', message, code: 'WEBHOOK_URL_NOT_ALLOWED' as const }] : [];
  });
  const [first] = issues;
  if (!first) return;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  throw new PromptQueueError('WEBHOOK_URL_NOT_ALLOWED', `${first.path}: ${first.message}${more}`, { issues });
}

export function webhookUrlGuard(config: Config): WebhookUrlGuard {
  return new WebhookUrlGuard({ allowPrivate: config.webhooks.allowPrivate });
}
