import type { Response } from 'express';

/**
 * Largest backlog of unsent bytes a client may build up, bytes. A client that reads slower than its
 * events arrive is cut off instead of growing the producer's memory; it reconnects with
 * `Last-Event-ID` and replays what it missed from Redis.
 */
const MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * One Server-Sent Events response (text/event-stream). Headers go out with the first event, comment
 * or `open()`, so a route can still answer with a status of its own until then. A `: ping` comment
 * every `heartbeatMs` keeps proxies from closing an idle stream.
 */
export class SseStream {
  private heartbeat: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(
    private readonly res: Response,
    private readonly heartbeatMs: number,
  ) {
    res.on('close', () => this.stop());
  }

  /** Nothing was written yet: the route may still answer otherwise. */
  get opened(): boolean {
    return this.res.headersSent;
  }

  get closed(): boolean {
    return this.ended;
  }

  open(): void {
    if (this.res.headersSent || this.ended) return;
    this.res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      // nginx buffers responses unless told not to.
      'X-Accel-Buffering': 'no',
    });
    this.res.flushHeaders();
    this.heartbeat = setInterval(() => this.write(': ping\n\n'), this.heartbeatMs);
    this.heartbeat.unref();
  }

  /** One event; `data` is one line of JSON (JSON.stringify escapes newlines). */
  send(event: { id?: string; event: string; data: unknown }): void {
    const id = event.id === undefined ? '' : `id: ${event.id}\n`;
    this.write(`${id}event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`);
  }

  comment(text: string): void {
    this.write(`: ${text}\n\n`);
  }

  /** Ends the response (idempotent); an empty stream is still a stream, so EventSource reconnects. */
  end(): void {
    if (this.ended) return;
    this.open();
    this.stop();
    this.res.end();
  }

  private write(chunk: string): void {
    if (this.ended) return;
    this.open();
    this.res.write(chunk);
    if (this.res.writableLength > MAX_BUFFERED_BYTES) this.end();
  }

  private stop(): void {
    this.ended = true;
    clearInterval(this.heartbeat);
  }
}
