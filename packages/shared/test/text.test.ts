import { describe, expect, it } from 'vitest';
import { withArticle } from '../src/text.js';

describe('withArticle', () => {
  it('"an" before a vowel, "a" otherwise', () => {
    expect(withArticle('image/jpeg')).toBe('an image/jpeg');
    expect(withArticle('application/pdf')).toBe('an application/pdf');
    expect(withArticle('video/mp4')).toBe('a video/mp4');
    expect(withArticle('PNG image')).toBe('a PNG image');
  });
});
