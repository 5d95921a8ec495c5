/** One Server-Sent Event as parsed from the stream (https://html.spec.whatwg.org/#event-stream-interpretation). */
export interface SseMessage {
  /** The `id:` field, when the event had one. */
  id: string | undefined;
  /** `event:`; `message` when absent. */
  event: string;
  data: string;
}

/**
 * Turns a byte stream into events. Comments (`: ping`) and `retry:` are skipped; an event without
 * `data:` is not dispatched, as the spec says. Works on fetch's `ReadableStream` in Node and browsers.
 */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let id: string | undefined;
  let event = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        // A lone \r at the very end may be the first half of \r\n: wait for more bytes.
        if (buffer[newline] === '\r' && newline === buffer.length - 1 && !done) break;
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
        if (line === '') {
          if (data.length > 0) yield { id, event: event || 'message', data: data.join('\n') };
          event = '';
          data = [];
          id = undefined;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id' && !value.includes('\0')) id = value;
      }
      if (done) return;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
