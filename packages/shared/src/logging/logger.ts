import winston from 'winston';

/**
 * Field names whose values never reach a log line: prompt text, image data and secrets. Log
 * metadata is redacted by name (recursively) before formatting, so a careless
 * `logger.info('x', { job })` cannot leak a prompt.
 */
const REDACTED_FIELDS = new Set([
  'prompt',
  'text',
  'contents',
  'parts',
  'systeminstruction',
  'data',
  'inlinedata',
  'images',
  'apikey',
  'apikeys',
  'key',
  'keys',
  'authorization',
  'password',
  'token',
  'x-goog-api-key',
]);

/** Google API keys (AIza…) and bearer tokens that slipped into a message string. */
const SECRET_PATTERNS = [/AIza[0-9A-Za-z_-]{30,}/g, /Bearer\s+[^\s"']+/gi];

export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactString(value);
  if (value === null || typeof value !== 'object' || depth > 6) return value;
  if (value instanceof Error) return { name: value.name, message: redactString(value.message) };
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [field, inner] of Object.entries(value)) {
    out[field] = REDACTED_FIELDS.has(field.toLowerCase()) ? '[redacted]' : redact(inner, depth + 1);
  }
  return out;
}

function redactString(text: string): string {
  return SECRET_PATTERNS.reduce((acc, pattern) => acc.replace(pattern, '[redacted]'), text);
}

const redactFormat = winston.format((info) => {
  for (const field of Object.keys(info)) {
    if (field === 'level' || field === 'timestamp' || field === 'service') continue;
    info[field] =
      field === 'message' ? redactString(String(info[field])) : REDACTED_FIELDS.has(field.toLowerCase()) ? '[redacted]' : redact(info[field]);
  }
  return info;
});

export interface LoggerOptions {
  service: string;
  level?: string;
  /** JSON lines in production, one readable line per entry otherwise. */
  json?: boolean;
  /**
   * Colour the level of readable lines (ANSI codes). Only a terminal shows them: in a file or a
   * pipe (`npm start > run.log`, a log collector) they are noise.
   * @defaultValue whether stderr, where every line goes, is a terminal
   */
  color?: boolean;
}

export function createLogger({ service, level = 'info', json = false, color = process.stderr.isTTY === true }: LoggerOptions): winston.Logger {
  const readable = winston.format.printf(({ level: lvl, message, timestamp, service: svc, ...rest }) => {
    const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
    return `${String(timestamp)} ${lvl} [${String(svc)}] ${String(message)}${extra}`;
  });
  return winston.createLogger({
    level,
    defaultMeta: { service },
    format: winston.format.combine(
      redactFormat(),
      winston.format.timestamp(),
      json ? winston.format.json() : color ? winston.format.combine(winston.format.colorize(), readable) : readable,
    ),
    // stderr keeps stdout free for the one-line "listening on" messages scripts parse.
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] })],
  });
}

export type Logger = winston.Logger;
