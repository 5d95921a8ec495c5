// Magic bytes and base64 rules, without Redis.
import { describe, expect, it } from 'vitest';
import { base64DecodedBytes, isBase64, matchesMagicBytes } from '../src/images.js';
import { IMAGES } from './harness.js';

describe('matchesMagicBytes', () => {
  it('recognises each supported type and refuses the others', () => {
    expect(matchesMagicBytes('image/png', IMAGES.png)).toBe(true);
    expect(matchesMagicBytes('image/jpeg', IMAGES.jpeg)).toBe(true);
    expect(matchesMagicBytes('image/webp', IMAGES.webp)).toBe(true);
    expect(matchesMagicBytes('image/heic', IMAGES.heic)).toBe(true);
    expect(matchesMagicBytes('image/png', IMAGES.jpeg)).toBe(false);
    expect(matchesMagicBytes('image/jpeg', IMAGES.png)).toBe(false);
    expect(matchesMagicBytes('image/webp', Buffer.from('RIFF\0\0\0\0WAVEfmt '))).toBe(false);
    expect(matchesMagicBytes('image/png', Buffer.alloc(0))).toBe(false);
  });

  it('accepts HEIC and HEIF brands under either MIME type, by major or compatible brand', () => {
    const ftyp = (major: string, ...compatible: string[]) => {
      const box = Buffer.concat([Buffer.alloc(4), Buffer.from(`ftyp${major}`), Buffer.alloc(4), Buffer.from(compatible.join(''))]);
      box.writeUInt32BE(box.length, 0);
      return box;
    };
    for (const brand of ['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1', 'msf1', 'heif']) {
      expect(matchesMagicBytes('image/heic', ftyp(brand)), brand).toBe(true);
      expect(matchesMagicBytes('image/heif', ftyp(brand)), brand).toBe(true);
    }
    expect(matchesMagicBytes('image/heif', ftyp('isom', 'mp41', 'mif1'))).toBe(true);
    expect(matchesMagicBytes('image/heic', ftyp('isom', 'mp41'))).toBe(false); // an MP4 video
  });
});

describe('base64', () => {
  it('takes only standard padded base64', () => {
    expect(isBase64(Buffer.from('hello!').toString('base64'))).toBe(true);
    expect(isBase64('aGVsbG8=')).toBe(true);
    for (const bad of ['', 'aGVsbG8', 'aGV sbG8=', 'aGVsbG8-', 'data:image/png;base64,aGVsbG8=', 'a===']) expect(isBase64(bad), bad).toBe(false);
  });

  it('computes the decoded size without decoding', () => {
    for (const length of [1, 2, 3, 4, 5, 100]) {
      expect(base64DecodedBytes(Buffer.alloc(length).toString('base64'))).toBe(length);
    }
  });
});
