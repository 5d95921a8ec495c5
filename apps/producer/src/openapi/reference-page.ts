import { createHash } from 'node:crypto';

/**
 * The API reference at `/docs`: the OpenAPI document rendered to plain HTML on the server, once.
 * No script at all (so no CDN and nothing to bundle), one inline stylesheet allowed by its hash in
 * the Content-Security-Policy. Schemas are shown as the document holds them, with links for $refs.
 */

const STYLE = `
body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2rem auto;padding:0 1rem;color:#1b1f24}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}
.op{border:1px solid #d0d7de;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#0969da}.post{color:#1a7f37}.delete{color:#cf222e}
code,pre{font:13px ui-monospace,monospace;background:#f6f8fa}
pre{padding:.6rem;overflow:auto;border-radius:6px}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.2rem .5rem;text-align:left;vertical-align:top}
`;

/** The CSP for the page: nothing but its own inline stylesheet. */
export const REFERENCE_PAGE_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; frame-ancestors 'none'`;

type Json = Record<string, unknown>;

export function renderReferencePage(document: Json): string {
  const info = (document.info ?? {}) as Json;
  const paths = (document.paths ?? {}) as Record<string, Record<string, Json>>;
  const webhooks = (document.webhooks ?? {}) as Record<string, Record<string, Json>>;
  const schemas = ((document.components as Json | undefined)?.schemas ?? {}) as Record<string, unknown>;
  const operations = (items: Record<string, Record<string, Json>>) =>
    Object.entries(items)
      .flatMap(([path, item]) => Object.entries(item).map(([method, op]) => operation(method, path, op)))
      .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(String(info.title))} API reference</title><style>${STYLE}</style></head>
<body>
<h1>${esc(String(info.title))} API <small>v${esc(String(info.version))}</small></h1>
<p>The machine-readable document: <a href="/openapi.json">/openapi.json</a> (OpenAPI ${esc(String(document.openapi))}).</p>
${paragraphs(String(info.description ?? ''))}
<h2>Routes</h2>
${operations(paths)}
<h2>Webhooks</h2>
${operations(webhooks)}
<h2>Schemas</h2>
${Object.entries(schemas)
  .map(([name, schema]) => `<h3 id="schema-${esc(name)}">${esc(name)}</h3>\n<pre>${schemaHtml(schema)}</pre>`)
  .join('\n')}
</body></html>
`;
}

function operation(method: string, path: string, op: Json): string {
  const parameters = (op.parameters ?? []) as Json[];
  const body = ((op.requestBody as Json | undefined)?.content ?? {}) as Record<string, Json>;
  const responses = (op.responses ?? {}) as Record<string, Json>;
  const secured = Array.isArray(op.security) && op.security.some((s) => Object.keys(s as Json).length > 0);
  return `<div class="op" id="${esc(String(op.operationId ?? `${method}-${path}`))}">
<h3><span class="m ${esc(method)}">${esc(method)}</span> <code>${esc(path)}</code></h3>
<p><strong>${esc(String(op.summary ?? ''))}</strong>${secured ? ' · <code>Authorization: Bearer</code>' : ''}</p>
${paragraphs(String(op.description ?? ''))}
${
  parameters.length
    ? `<table><tr><th>Parameter</th><th>In</th><th>Schema</th><th></th></tr>${parameters
        .map((p) => `<tr><td><code>${esc(String(p.name))}</code>${p.required ? ' (required)' : ''}</td><td>${esc(String(p.in))}</td><td><code>${schemaHtml(p.schema)}</code></td><td>${esc(String(p.description ?? ''))}</td></tr>`)
        .join('')}</table>`
    : ''
}
${Object.entries(body)
  .map(([type, media]) => `<p>Body (<code>${esc(type)}</code>): <code>${schemaHtml(media.schema)}</code></p>`)
  .join('')}
<table><tr><th>Status</th><th>Answer</th><th>Body</th></tr>${Object.entries(responses)
    .map(([status, response]) => {
      const content = (response.content ?? {}) as Record<string, Json>;
      const shown = Object.entries(content)
        .map(([type, media]) => `<code>${esc(type)}</code> ${schemaHtml(media['x-itemSchema'] ?? media.schema)}`)
        .join('<br>');
      return `<tr><td>${esc(status)}</td><td>${esc(String(response.description ?? ''))}</td><td>${shown}</td></tr>`;
    })
    .join('')}</table>
</div>`;
}

/** A schema as indented JSON, each `$ref` a link to its schema on this page. */
function schemaHtml(schema: unknown): string {
  if (schema === undefined) return '';
  const text = esc(JSON.stringify(schema, null, 2) ?? '');
  return text.replace(/&quot;#\/components\/schemas\/([A-Za-z0-9_]+)&quot;/g, '<a href="#schema-$1">$1</a>');
}

function paragraphs(text: string): string {
  return text
    .split(/\n{2,}/)
    .filter((p) => p.trim())
    .map((p) => `<p>${esc(p).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`)
    .join('\n');
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
