import { fileUriRefusal, ProviderError, type FileUriTarget } from '@prompt-queue/shared';
import type { ProviderContent } from './provider.js';

/**
 * The worker's own check of file URIs, right before a link's call: the producer refuses what no
 * link may take, but a job queued before a config change (or by an older producer) carries what it
 * carries. A URI the link may not take fails the job alone, without a call, with
 * FILE_URI_NOT_ALLOWED (`fail`: the same job would be refused again; the breaker ignores it).
 * Rules in packages/shared/src/queue/file-uris.ts.
 */
export function fileUriNotAllowed(providerName: string, where: string, refusal: string): ProviderError {
  // The URI itself stays out of the message: it may carry a signed token, and messages are stored.
  return new ProviderError('FILE_URI_NOT_ALLOWED', `${providerName} may not receive the fileUri of ${where}: it ${refusal}`, { disposition: 'fail' });
}

/** Throws {@link fileUriNotAllowed} for the first `fileData` part a link of kind `target` may not receive. */
export function checkFileUris(contents: readonly ProviderContent[], target: FileUriTarget, allow: readonly string[], providerName: string): void {
  contents.forEach((content, c) =>
    content.parts.forEach((part, p) => {
      if (!('fileData' in part)) return;
      const refusal = fileUriRefusal(part.fileData.fileUri, target, allow);
      if (refusal !== undefined) throw fileUriNotAllowed(providerName, `contents[${c}].parts[${p}]`, refusal);
    }),
  );
}
