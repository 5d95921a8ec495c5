import { describe, expect, it } from 'vitest';
import { fileUriRefusal, isValidAllowPrefix, loadConfig } from '../src/index.js';

const FILES_URI = 'https://generativelanguage.googleapis.com/v1beta/files/abc-123';
const METADATA = 'http://169.254.169.254/latest/meta-data/';

describe('fileUriRefusal', () => {
  it('takes Gemini Files API URIs for Gemini links only, and nothing else by default', () => {
    expect(fileUriRefusal(FILES_URI, 'gemini', [])).toBeUndefined();
    expect(fileUriRefusal(FILES_URI, 'openai', [])).toMatch(/only Gemini links/);
    for (const uri of [METADATA, 'gs://bucket/a.png', 'https://generativelanguage.googleapis.com.evil.test/v1beta/files/abc', `${FILES_URI}/../../models`, 'files/abc-123']) {
      expect(fileUriRefusal(uri, 'gemini', []), uri).toBeDefined();
      expect(fileUriRefusal(uri, 'openai', []), uri).toBeDefined();
    }
  });

  it('takes allowlisted prefixes for every link, as written and once the path is resolved', () => {
    const allow = ['https://my-bucket.example.com/images/', 'gs://my-bucket/'];
    expect(fileUriRefusal('https://my-bucket.example.com/images/cat.png', 'openai', allow)).toBeUndefined();
    expect(fileUriRefusal('gs://my-bucket/cat.png', 'gemini', allow)).toBeUndefined();
    for (const uri of [
      'https://my-bucket.example.com/images/../secrets.png',
      'https://my-bucket.example.com/imagesX/cat.png',
      'https://my-bucket.example.com.evil.test/images/cat.png',
      'https://my-bucket.example.com/images/cat.png\n',
      METADATA,
    ]) {
      expect(fileUriRefusal(uri, 'openai', allow), uri).toBeDefined();
    }
  });
});

describe('fileUris.allow in the configuration', () => {
  it('accepts normalized http(s) and gs prefixes ending with /, refuses the rest', () => {
    for (const prefix of ['https://my-bucket.example.com/', 'http://10.0.0.5:8080/files/', 'gs://my-bucket/']) expect(isValidAllowPrefix(prefix), prefix).toBe(true);
    for (const prefix of ['https://my-bucket.example.com', 'https://My-Bucket.example.com/', 'https://user:pw@example.com/', 'file:///etc/', 'ftp://x.example/', 'files/']) {
      expect(isValidAllowPrefix(prefix), prefix).toBe(false);
    }
  });

  it('is a strict object with an empty default', () => {
    expect(loadConfig({}).fileUris).toEqual({ allow: [] });
  });
});
