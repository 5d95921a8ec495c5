// Compile-time checks (run by `npm run typecheck` and by test/contract.test.ts): the client's
// hand-written wire types are the same types the server builds its answers from. A field added,
// removed or retyped on either side fails the build here, naming the type.
import type {
  ErrorCode as ServerErrorCode,
  JobEvent as ServerJobEvent,
  JobEventType as ServerJobEventType,
  JobStatus as ServerJobStatus,
  JobView as ServerJobView,
  WebhookEvent as ServerWebhookEvent,
} from '@prompt-queue/shared';
// The producer validates job requests with a zod schema of its own (apps/producer/src/requests.ts).
import type { JobRequest as ServerJobRequest } from '@prompt-queue/producer/dist/requests.js';
import type { ErrorCode, JobEvent, JobEventType, JobRequest, JobStatus, JobView, WebhookEvent } from '../src/index.js';

/** True only when A and B are mutually assignable. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export const contract = {
  errorCode: true satisfies Same<ErrorCode, ServerErrorCode>,
  jobStatus: true satisfies Same<JobStatus, ServerJobStatus>,
  jobView: true satisfies Same<JobView, ServerJobView>,
  jobEventType: true satisfies Same<JobEventType, ServerJobEventType>,
  jobEvent: true satisfies Same<JobEvent, ServerJobEvent>,
  jobRequest: true satisfies Same<JobRequest, ServerJobRequest>,
  webhookEvent: true satisfies Same<WebhookEvent, ServerWebhookEvent>,
};
