import { describe, expect, it } from 'vitest';
import { constantTimeEqual, parseBasicAuthorization } from '../src/auth.js';

const basic = (value: string) => `Basic ${Buffer.from(value).toString('base64')}`;

describe('parseBasicAuthorization', () => {
  it('splits at the first colon, so passwords may contain colons', () => {
    expect(parseBasicAuthorization(basic('admin:a:b:c'))).toEqual({ user: 'admin', password: 'a:b:c' });
  });

  it('accepts any case of the scheme and an empty password', () => {
    expect(parseBasicAuthorization(basic('admin:').replace('Basic', 'basic'))).toEqual({ user: 'admin', password: '' });
  });

  it('rejects other schemes, a missing colon and a missing header', () => {
    expect(parseBasicAuthorization('Bearer abc')).toBeUndefined();
    expect(parseBasicAuthorization(basic('no-colon'))).toBeUndefined();
    expect(parseBasicAuthorization(undefined)).toBeUndefined();
  });
});

describe('constantTimeEqual', () => {
  it('compares strings of any lengths', () => {
    expect(constantTimeEqual('secret', 'secret')).toBe(true);
    expect(constantTimeEqual('secret', 'secreT')).toBe(false);
    expect(constantTimeEqual('short', 'a much longer string')).toBe(false);
    expect(constantTimeEqual('', '')).toBe(true);
  });
});
