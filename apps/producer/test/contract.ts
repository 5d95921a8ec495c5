// Checks real HTTP answers against the OpenAPI document: the status must be documented for the
// route (or be the document's 405/404 for undocumented methods and paths), the content type must be
// one it lists, the body must validate against its schema (ajv, JSON Schema 2020-12, $refs resolved
// inside the document), and the headers it lists must be present. It also records what it saw, so
// a test can tell which documented answers were never exercised.
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Answer {
  status: number;
  headers: Headers;
  /** The raw body text. */
  text: string;
}

export class Contract {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
  private readonly compiled = new Map<string, ValidateFunction>();
  /** `METHOD path status` of every answer checked. */
  readonly seen = new Set<string>();

  constructor(readonly document: Json) {
    addFormats(this.ajv);
    this.ajv.addSchema(document, 'openapi');
  }

  /** Every documented `METHOD path status` of the routes. */
  documented(): string[] {
    return Object.entries(this.document.paths as Json).flatMap(([path, item]) =>
      Object.entries(item as Json).flatMap(([method, op]) => Object.keys((op as Json).responses).map((status) => `${method.toUpperCase()} ${path} ${status}`)),
    );
  }

  /** Throws, naming the disagreement, when the answer is not what the document describes. */
  check(method: string, url: string, answer: Answer): void {
    const where = `${method} ${url} → ${answer.status}`;
    const pathname = new URL(url, 'http://x').pathname;
    const template = this.templateOf(pathname);
    let response: Json;
    let pointer: string;
    if (!template) {
      if (answer.status !== 404) throw new Error(`${where}: an undocumented path must answer 404`);
      [response, pointer] = [this.document.components.responses.NotFound, '#/components/responses/NotFound'];
      this.seen.add(`* * 404`);
    } else {
      const op = this.document.paths[template][method.toLowerCase()];
      if (!op) {
        if (answer.status !== 405) throw new Error(`${where}: a method ${template} does not list must answer 405`);
        [response, pointer] = [this.document.components.responses.MethodNotAllowed, '#/components/responses/MethodNotAllowed'];
        this.seen.add(`* * 405`);
      } else {
        const key = [String(answer.status), `${String(answer.status)[0]}XX`, 'default'].find((k) => op.responses[k]);
        if (!key) throw new Error(`${where}: status not documented for ${method} ${template} (documented: ${Object.keys(op.responses).join(', ')}); body ${answer.text.slice(0, 300)}`);
        response = op.responses[key];
        pointer = `#/paths/${escapePointer(template)}/${method.toLowerCase()}/responses/${key}`;
        this.seen.add(`${method} ${template} ${key}`);
      }
    }

    for (const header of Object.keys(response.headers ?? {})) {
      if (!answer.headers.has(header)) throw new Error(`${where}: header ${header} is documented but missing`);
    }
    const content = (response.content ?? {}) as Json;
    if (Object.keys(content).length === 0) {
      if (answer.text !== '') throw new Error(`${where}: documented without a body, got ${answer.text.slice(0, 200)}`);
      return;
    }
    const type = (answer.headers.get('content-type') ?? '').split(';')[0]!.trim();
    if (!content[type]) throw new Error(`${where}: content type "${type}" not documented (documented: ${Object.keys(content).join(', ')})`);
    const mediaPointer = `${pointer}/content/${escapePointer(type)}`;
    if (type === 'application/json') {
      this.validate(`${mediaPointer}/schema`, JSON.parse(answer.text), where);
    } else if (type === 'text/event-stream') {
      const itemPointer = content[type]['x-itemSchema'] ? `${mediaPointer}/x-itemSchema` : undefined;
      for (const frame of parseFrames(answer.text)) {
        if (frame.data === undefined) continue;
        const data = JSON.parse(frame.data);
        if (itemPointer) this.validate(itemPointer, data, `${where} (event ${frame.id ?? '-'})`);
        if (frame.event !== data.type) throw new Error(`${where}: event: ${frame.event} but data.type ${data.type}`);
      }
    }
  }

  /** The validator of the schema at a JSON pointer into the document (`#/components/schemas/JobView`). */
  compile(pointer: string): ValidateFunction {
    let validate = this.compiled.get(pointer);
    if (!validate) {
      validate = this.ajv.compile({ $ref: `openapi${pointer}` });
      this.compiled.set(pointer, validate);
    }
    return validate;
  }

  private validate(pointer: string, value: unknown, where: string): void {
    const validate = this.compile(pointer);
    if (!validate(value)) {
      throw new Error(`${where}: body disagrees with ${pointer}: ${this.ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 600)}`);
    }
  }

  /** The documented path a request path falls under; literal paths win over templated ones, as in Express. */
  private templateOf(pathname: string): string | undefined {
    const paths = Object.keys(this.document.paths).sort((a, b) => Number(a.includes('{')) - Number(b.includes('{')));
    return paths.find((path) => new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(pathname));
  }
}

export interface Frame {
  id?: string;
  event?: string;
  data?: string;
}

export function parseFrames(text: string): Frame[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() && !block.startsWith(':'))
    .map((block) => {
      const frame: Frame = {};
      for (const line of block.split('\n')) {
        const [field, ...rest] = line.split(': ');
        if (field === 'id' || field === 'event' || field === 'data') frame[field] = rest.join(': ');
      }
      return frame;
    });
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}
