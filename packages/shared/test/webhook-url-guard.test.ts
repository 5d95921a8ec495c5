import { describe, expect, it } from 'vitest';
import { classifyAddress, isValidAllowPrivateEntry, WebhookUrlGuard, webhookUrlRefusalOf, type WebhookResolver } from '../src/index.js';

/** A resolver that answers from a table, like a DNS server we control. */
function resolverOf(table: Record<string, string[]>): WebhookResolver {
  return async (hostname) => {
    const addresses = table[hostname];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
}

const resolve = resolverOf({
  'public.example': ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946'],
  'loopback.example': ['127.0.0.1'],
  'metadata.example': ['169.254.169.254'],
  'private.example': ['10.0.0.1'],
  'ipv6-loopback.example': ['::1'],
  'mixed.example': ['93.184.216.34', '10.0.0.1'],
  'mapped.example': ['::ffff:127.0.0.1'],
  'receiver.internal': ['10.1.2.3'],
});

async function refusal(guard: WebhookUrlGuard, url: string): Promise<string> {
  try {
    await guard.check(url);
  } catch (error) {
    expect((error as { code?: unknown }).code).toBe('WEBHOOK_URL_NOT_ALLOWED');
    return (error as Error).message;
  }
  throw new Error(`${url} was admitted`);
}

describe('classifyAddress', () => {
  it('names every non-public class, IPv4-mapped and NAT64 forms by their IPv4 address', () => {
    const cases: Record<string, string> = {
      '127.0.0.1': 'loopback',
      '127.255.0.9': 'loopback',
      '0.0.0.0': 'unspecified',
      '::': 'unspecified',
      '::1': 'loopback',
      '169.254.169.254': 'link-local',
      'fe80::1%eth0': 'link-local',
      'fd00:ec2::254': 'private',
      '10.0.0.1': 'private',
      '172.16.0.1': 'private',
      '172.31.255.255': 'private',
      '192.168.1.1': 'private',
      'fc00::1': 'private',
      '100.64.0.1': 'shared (CGNAT)',
      '224.0.0.1': 'multicast',
      'ff02::1': 'multicast',
      '255.255.255.255': 'reserved',
      '::ffff:127.0.0.1': 'loopback',
      '::ffff:7f00:1': 'loopback',
      '::ffff:169.254.169.254': 'link-local',
      '::ffff:10.0.0.1': 'private',
      '64:ff9b::10.0.0.1': 'private',
      '2002:a00:1::': 'private',
      '::127.0.0.1': 'loopback',
    };
    for (const [address, kind] of Object.entries(cases)) expect(classifyAddress(address), address).toBe(kind);
  });

  it('passes public addresses', () => {
    for (const address of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) {
      expect(classifyAddress(address), address).toBeUndefined();
    }
  });
});

describe('WebhookUrlGuard', () => {
  const guard = new WebhookUrlGuard({ resolve });

  it('refuses loopback, metadata, private and IPv6 loopback literals', async () => {
    expect(await refusal(guard, 'http://127.0.0.1:8080/hook')).toMatch(/loopback address \(127\.0\.0\.1\)/);
    expect(await refusal(guard, 'http://169.254.169.254/latest/meta-data/')).toMatch(/link-local/);
    expect(await refusal(guard, 'https://10.0.0.1/hook')).toMatch(/private/);
    expect(await refusal(guard, 'http://[::1]:3000/hook')).toMatch(/loopback/);
    expect(await refusal(guard, 'http://[::ffff:127.0.0.1]/hook')).toMatch(/loopback/);
    expect(await refusal(guard, 'http://[fd00:ec2::254]/')).toMatch(/private/);
    // WHATWG URL parsing turns these spellings of 127.0.0.1 into the literal: refused as well.
    expect(await refusal(guard, 'http://2130706433/')).toMatch(/loopback/);
    expect(await refusal(guard, 'http://0x7f.1/')).toMatch(/loopback/);
  });

  it('refuses hostnames that resolve to such addresses, any one of them', async () => {
    expect(await refusal(guard, 'https://loopback.example/hook')).toMatch(/loopback\.example resolves to 127\.0\.0\.1, a loopback address/);
    expect(await refusal(guard, 'https://metadata.example/')).toMatch(/169\.254\.169\.254/);
    expect(await refusal(guard, 'https://private.example/')).toMatch(/10\.0\.0\.1/);
    expect(await refusal(guard, 'https://ipv6-loopback.example/')).toMatch(/::1/);
    expect(await refusal(guard, 'https://mixed.example/')).toMatch(/10\.0\.0\.1/);
    expect(await refusal(guard, 'https://mapped.example/')).toMatch(/loopback/);
  });

  it('refuses localhost through the system resolver', async () => {
    expect(await refusal(new WebhookUrlGuard(), 'http://localhost:9/')).toMatch(/loopback/);
  });

  it('refuses other schemes, credentials and garbage before any lookup', async () => {
    expect(await refusal(guard, 'ftp://public.example/')).toMatch(/http:\/\/ or https:\/\//);
    expect(await refusal(guard, 'file:///etc/passwd')).toMatch(/http/);
    expect(await refusal(guard, 'https://user:pw@public.example/')).toMatch(/credentials/);
    expect(await refusal(guard, 'not a url')).toMatch(/not a URL/);
  });

  it('admits public hosts and connects to the first checked address', async () => {
    const target = await guard.check('https://public.example/hook?token=1');
    expect(target).toMatchObject({ hostname: 'public.example', address: '93.184.216.34', family: 4 });
    await expect(guard.check('https://93.184.216.34/')).resolves.toMatchObject({ address: '93.184.216.34' });
    await expect(guard.check('https://[2606:4700:4700::1111]/')).resolves.toMatchObject({ address: '2606:4700:4700::1111', family: 6 });
  });

  it('says an unknown host is unresolvable (may pass later), and a private one refused (final)', async () => {
    await expect(guard.check('https://nowhere.example/')).rejects.toSatisfy((error) => webhookUrlRefusalOf(error) === 'unresolvable');
    await expect(guard.check('https://private.example/')).rejects.toSatisfy((error) => webhookUrlRefusalOf(error) === 'refused');
  });

  it('admits what webhooks.allowPrivate lists: CIDRs (mapped IPv6 too) and exact hostnames', async () => {
    const allowing = new WebhookUrlGuard({ resolve, allowPrivate: ['127.0.0.1/32', 'receiver.internal'] });
    await expect(allowing.check('http://127.0.0.1:8080/')).resolves.toMatchObject({ address: '127.0.0.1' });
    await expect(allowing.check('http://[::ffff:127.0.0.1]/')).resolves.toMatchObject({ address: '::ffff:7f00:1' });
    await expect(allowing.check('http://loopback.example/')).resolves.toMatchObject({ address: '127.0.0.1' });
    await expect(allowing.check('http://receiver.internal/')).resolves.toMatchObject({ address: '10.1.2.3' });
    expect(await refusal(allowing, 'http://127.0.0.2/')).toMatch(/loopback/);
    expect(await refusal(allowing, 'http://private.example/')).toMatch(/private/);
  });

  it('validates allowPrivate entries', () => {
    for (const entry of ['127.0.0.1/32', '10.0.0.0/8', '127.0.0.1', 'fd00::/8', '::1', 'receiver.internal', 'localhost']) {
      expect(isValidAllowPrivateEntry(entry), entry).toBe(true);
    }
    for (const entry of ['10.0.0.0/33', '10.0.0', 'Receiver.Internal', 'http://x/', '::1/129', '']) {
      expect(isValidAllowPrivateEntry(entry), entry).toBe(false);
    }
  });
});
