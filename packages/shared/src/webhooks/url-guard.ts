import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { PromptQueueError } from '../errors.js';

/**
 * The SSRF guard of webhook URLs. A webhook makes our worker send a POST to a URL a tenant chose,
 * from inside our network: without a guard, `http://169.254.169.254/…` or `http://10.0.0.5:6379`
 * would turn the worker into the tenant's proxy. So a URL is http(s) without credentials, and every
 * address its host resolves to must be public, unless `webhooks.allowPrivate` admits it (CIDRs or
 * exact hostnames, CONFIG_FILE only). Checked at enqueue (a clear 400) and again before every
 * delivery (DNS can change), where the request then connects to exactly the address that was
 * checked (`pinnedLookup`), so a rebind between check and connect cannot slip through.
 */

/** One resolved address, as `dns.lookup(host, { all: true })` gives them. */
export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a hostname to all its addresses; injectable so tests can point a name anywhere. */
export type WebhookResolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

export const systemResolver: WebhookResolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** Why an address is not public. */
export type AddressKind = 'unspecified' | 'loopback' | 'private' | 'shared (CGNAT)' | 'link-local' | 'multicast' | 'reserved';

/** A URL the guard admitted: where to connect, and the host the request still names (Host, TLS SNI). */
export interface CheckedWebhookTarget {
  url: URL;
  /** Lowercase, without brackets or a trailing dot. */
  hostname: string;
  /** The address the request must connect to: the first one resolved, all of them checked. */
  address: string;
  family: 4 | 6;
}

/** Why `check` refused: `refused` is final (the URL or its addresses), `unresolvable` may pass later. */
export type WebhookUrlRefusal = 'refused' | 'unresolvable';

/** A refused webhook URL: code WEBHOOK_URL_NOT_ALLOWED, `details.refusal` says whether it is final. */
export function webhookUrlError(message: string, refusal: WebhookUrlRefusal): PromptQueueError {
  return new PromptQueueError('WEBHOOK_URL_NOT_ALLOWED', message, { refusal });
}

export function webhookUrlRefusalOf(error: unknown): WebhookUrlRefusal | undefined {
  const refusal = (error as { code?: unknown; details?: { refusal?: unknown } } | undefined)?.details?.refusal;
  return (error as { code?: unknown } | undefined)?.code === 'WEBHOOK_URL_NOT_ALLOWED' && (refusal === 'refused' || refusal === 'unresolvable')
    ? refusal
    : undefined;
}

/** Longest accepted webhook URL, characters. */
export const MAX_WEBHOOK_URL_LENGTH = 2_048;

/**
 * What is wrong with a URL before any DNS, or undefined: not a URL, not http(s), credentials in it,
 * no host, too long. Pure: the producer's request validation uses it too.
 */
export function webhookUrlSyntaxRefusal(raw: string): string | undefined {
  if (raw.length > MAX_WEBHOOK_URL_LENGTH) return `must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http:// or https:// URL';
  // Credentials would be sent to the receiver in every request and shown wherever the URL is.
  if (url.username !== '' || url.password !== '') return 'must not contain credentials (user:password@)';
  if (url.hostname === '') return 'must name a host';
  return undefined;
}

/** The URL without its query string and fragment, for logs and the dashboard (a query may hold a token). */
export function displayWebhookUrl(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

function hostnameOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase();
}

// --- Addresses -----------------------------------------------------------------------------

/** An address as 4 or 16 bytes, or undefined when it is not an IP literal. */
export function addressBytes(address: string): number[] | undefined {
  const plain = address.split('%')[0]!; // fe80::1%eth0: the zone does not change the class
  if (isIP(plain) === 4) return plain.split('.').map(Number);
  if (isIP(plain) !== 6) return undefined;
  let text = plain;
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4Tail) {
    const [a, b, c, d] = v4Tail[1]!.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4Tail.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const groupsOf = (part: string) => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const headGroups = groupsOf(head);
  const tailGroups = tail === undefined ? [] : groupsOf(tail);
  const groups = [...headGroups, ...new Array<number>(8 - headGroups.length - tailGroups.length).fill(0), ...tailGroups];
  return groups.flatMap((group) => [group >> 8, group & 0xff]);
}

function inPrefix(bytes: readonly number[], prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < bits; i += 8) {
    const take = Math.min(8, bits - i);
    const mask = (0xff << (8 - take)) & 0xff;
    if (((bytes[i / 8] ?? 0) & mask) !== ((prefix[i / 8] ?? 0) & mask)) return false;
  }
  return true;
}

/** A CIDR as bytes and prefix length; a bare address is a /32 or /128. */
interface Cidr {
  bytes: number[];
  bits: number;
}

function parseCidr(text: string): Cidr | undefined {
  const [address = '', bitsText] = text.split('/');
  const bytes = addressBytes(address);
  if (!bytes || address.includes('%')) return undefined;
  const max = bytes.length * 8;
  if (bitsText === undefined) return { bytes, bits: max };
  if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > max) return undefined;
  return { bytes, bits: Number(bitsText) };
}

const cidr = (text: string): Cidr => parseCidr(text)!;

const IPV4_RANGES: readonly [Cidr, AddressKind][] = [
  [cidr('0.0.0.0/8'), 'unspecified'],
  [cidr('127.0.0.0/8'), 'loopback'],
  [cidr('10.0.0.0/8'), 'private'],
  [cidr('172.16.0.0/12'), 'private'],
  [cidr('192.168.0.0/16'), 'private'],
  [cidr('100.64.0.0/10'), 'shared (CGNAT)'],
  // 169.254.169.254 is the cloud metadata service.
  [cidr('169.254.0.0/16'), 'link-local'],
  [cidr('224.0.0.0/4'), 'multicast'],
  [cidr('240.0.0.0/4'), 'reserved'], // 255.255.255.255 (broadcast) included
  [cidr('192.0.0.0/24'), 'reserved'],
  [cidr('192.0.2.0/24'), 'reserved'],
  [cidr('198.18.0.0/15'), 'reserved'],
  [cidr('198.51.100.0/24'), 'reserved'],
  [cidr('203.0.113.0/24'), 'reserved'],
];

const IPV6_RANGES: readonly [Cidr, AddressKind][] = [
  [cidr('::/128'), 'unspecified'],
  [cidr('::1/128'), 'loopback'],
  [cidr('fe80::/10'), 'link-local'],
  // Unique local, fd00:ec2::254 (the AWS metadata service over IPv6) included.
  [cidr('fc00::/7'), 'private'],
  [cidr('fec0::/10'), 'private'], // deprecated site-local
  [cidr('ff00::/8'), 'multicast'],
  [cidr('100::/64'), 'reserved'],
  [cidr('2001:db8::/32'), 'reserved'],
];

/**
 * IPv6 forms that carry an IPv4 address the packet ends up at: mapped (`::ffff:127.0.0.1`),
 * compatible (`::127.0.0.1`), NAT64 (`64:ff9b::10.0.0.1`) and 6to4 (`2002:0a00:0001::`).
 */
function embeddedIpv4(bytes: readonly number[]): number[] | undefined {
  if (bytes.length !== 16) return undefined;
  if (inPrefix(bytes, cidr('::ffff:0:0/96').bytes, 96) || inPrefix(bytes, cidr('64:ff9b::/96').bytes, 96)) return bytes.slice(12);
  if (inPrefix(bytes, cidr('::/96').bytes, 96) && !bytes.slice(12, 15).every((byte) => byte === 0)) return bytes.slice(12);
  if (inPrefix(bytes, cidr('2002::/16').bytes, 16)) return bytes.slice(2, 6);
  return undefined;
}

/** Why an address is not public, or undefined when it is. Not an IP literal: `reserved`. */
export function classifyAddress(address: string): AddressKind | undefined {
  const bytes = addressBytes(address);
  if (!bytes) return 'reserved';
  const v4 = bytes.length === 4 ? bytes : embeddedIpv4(bytes);
  const [ranges, subject] = v4 ? [IPV4_RANGES, v4] : [IPV6_RANGES, bytes];
  return ranges.find(([range]) => inPrefix(subject, range.bytes, range.bits))?.[1];
}

// --- The allowlist -------------------------------------------------------------------------

/** An entry of `webhooks.allowPrivate`: a CIDR (`10.1.0.0/16`), an address, or an exact hostname. */
export function isValidAllowPrivateEntry(entry: string): boolean {
  if (parseCidr(entry)) return true;
  // Something that meant to be an address or a CIDR but is not one is an error, not a hostname.
  if (/[/:]/.test(entry) || /^[\d.]+$/.test(entry)) return false;
  return /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/.test(entry);
}

class AllowList {
  private readonly hosts = new Set<string>();
  private readonly ranges: Cidr[] = [];

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const range = parseCidr(entry);
      if (range) this.ranges.push(range);
      else this.hosts.add(entry.toLowerCase().replace(/\.$/, ''));
    }
  }

  admitsHost(hostname: string): boolean {
    return this.hosts.has(hostname);
  }

  admitsAddress(address: string): boolean {
    const bytes = addressBytes(address);
    if (!bytes) return false;
    const v4 = bytes.length === 16 ? embeddedIpv4(bytes) : undefined;
    return this.ranges.some(
      (range) =>
        (range.bytes.length === bytes.length && inPrefix(bytes, range.bytes, range.bits)) ||
        // An IPv4 range admits the same address written as mapped IPv6.
        (v4 !== undefined && range.bytes.length === 4 && inPrefix(v4, range.bytes, range.bits)),
    );
  }
}

// --- The guard -----------------------------------------------------------------------------

export interface WebhookUrlGuardOptions {
  /** `webhooks.allowPrivate`: CIDRs, addresses and exact hostnames that may be non-public. @defaultValue [] */
  allowPrivate?: readonly string[];
  /** @defaultValue `dns.lookup(host, { all: true })` */
  resolve?: WebhookResolver;
}

export class WebhookUrlGuard {
  private readonly allow: AllowList;
  private readonly resolve: WebhookResolver;

  constructor(options: WebhookUrlGuardOptions = {}) {
    this.allow = new AllowList(options.allowPrivate ?? []);
    this.resolve = options.resolve ?? systemResolver;
  }

  /**
   * Admits the URL and says where to connect, or throws WEBHOOK_URL_NOT_ALLOWED. Every resolved
   * address must pass: a name with one public and one private address is refused, since the
   * client could reach either.
   */
  async check(raw: string): Promise<CheckedWebhookTarget> {
    const syntax = webhookUrlSyntaxRefusal(raw);
    if (syntax) throw webhookUrlError(`The webhook URL ${syntax}.`, 'refused');
    const url = new URL(raw);
    const hostname = hostnameOf(url);
    let addresses: readonly ResolvedAddress[];
    if (isIP(hostname)) {
      addresses = [{ address: hostname, family: isIP(hostname) }];
    } else {
      try {
        addresses = await this.resolve(hostname);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        throw webhookUrlError(`The webhook host ${hostname} does not resolve (${typeof code === 'string' ? code : 'lookup failed'}).`, 'unresolvable');
      }
      if (addresses.length === 0) throw webhookUrlError(`The webhook host ${hostname} does not resolve.`, 'unresolvable');
    }
    const hostAdmitted = this.allow.admitsHost(hostname);
    for (const { address } of addresses) {
      const kind = classifyAddress(address);
      if (kind === undefined || hostAdmitted || this.allow.admitsAddress(address)) continue;
      const via = address === hostname ? '' : `${hostname} resolves to ${address}, `;
      throw webhookUrlError(
        `The webhook URL points to ${via}a ${kind} address${address === hostname ? ` (${address})` : ''}; only public addresses are allowed unless webhooks.allowPrivate admits it.`,
        'refused',
      );
    }
    const first = addresses[0]!;
    return { url, hostname, address: first.address, family: first.family === 6 ? 6 : 4 };
  }
}

/**
 * `lookup` for http.request: answers every lookup with the address the guard checked, whatever DNS
 * says now. Node asks with `all: true` when it tries several families (autoSelectFamily).
 */
export function pinnedLookup(target: CheckedWebhookTarget): LookupFunction {
  const lookup = (_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void): void => {
    if (options?.all) callback(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  return lookup as unknown as LookupFunction;
}
