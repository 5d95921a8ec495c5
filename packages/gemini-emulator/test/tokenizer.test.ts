import { spawnSync } from 'node:child_process';
import { GoogleGenerativeAI, type Part } from '@google/generative-ai';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  EmulatorClient, mainScriptPath, readConfig, readImageSize, startEmulatorProcess, textTokens, tiledImageTokens, Tokenizer,
  type EmulatorProcess, type TokenizerConfig,
} from '../src/index.js';
import { fetchError, KEY, startHarness, type Harness } from './helpers.js';
import { b64, heif, jpeg, png, webpVp8, webpVp8l, webpVp8x } from './images.js';

/** The rule the emulator has always used, written independently of its code. */
const codepointsOver4 = (s: string): number => Math.ceil(Array.from(s).length / 4);

const CJK10 = '東京は日本の首都です'; // 10 code points
const image = (mimeType: string, bytes: Buffer): Part => ({ inlineData: { mimeType, data: b64(bytes) } });

describe('Tokenizer', () => {
  it('defaults are exactly ceil(code points / 4), empty string included', () => {
    const t = new Tokenizer();
    const samples = [
      '', 'a', 'abcd', 'abcde', 'x'.repeat(1001), CJK10, 'Hello 世界', '😀', '😀😀😀😀😀', 'a😀b', '\ud800', 'x\udc00y',
      'ünïcödé', '    indented {\n  "json": [1, 2, 3]\n}', 'Ωmega'.repeat(333),
    ];
    for (const s of samples) {
      expect(t.text(s), JSON.stringify(s)).toBe(codepointsOver4(s));
      expect(textTokens(s)).toBe(codepointsOver4(s));
    }
    expect(t.settings).toEqual({ asciiCharsPerToken: 4, nonAsciiTokensPerChar: 0.25, imageTiling: false });
  });

  it('ASCII and non-ASCII ratios apply separately; float error does not add a token', () => {
    const code = new Tokenizer({ asciiCharsPerToken: 3 });
    expect(code.text('x'.repeat(30))).toBe(10);
    expect(code.text('x'.repeat(31))).toBe(11);
    const cjk = new Tokenizer({ nonAsciiTokensPerChar: 1.2 });
    expect(cjk.text(CJK10)).toBe(12);
    // 5 × 1.2 is 6.000000000000001 in floating point; Google would say 6.
    expect(cjk.text('東京大阪市')).toBe(6);
    // 6 ASCII / 4 + 2 × 1.2 = 3.9
    expect(cjk.text('Hello 世界')).toBe(4);
    // An emoji is one code point, not two UTF-16 units.
    expect(cjk.text('😀')).toBe(2);
    expect(cjk.text('')).toBe(0);
  });

  it('presets, with explicit fields overriding them', () => {
    expect(new Tokenizer({ preset: 'code' }).settings).toEqual({ preset: 'code', asciiCharsPerToken: 3, nonAsciiTokensPerChar: 0.25, imageTiling: false });
    expect(new Tokenizer({ preset: 'cjk', asciiCharsPerToken: 2 }).settings).toEqual({ preset: 'cjk', asciiCharsPerToken: 2, nonAsciiTokensPerChar: 1.2, imageTiling: false });
  });

  it('truncate keeps the longest prefix within the budget', () => {
    expect(new Tokenizer().truncate('abcdefghij', 2)).toBe('abcdefgh');
    expect(new Tokenizer({ asciiCharsPerToken: 3 }).truncate('abcdefghij', 2)).toBe('abcdef');
    expect(new Tokenizer({ nonAsciiTokensPerChar: 1 }).truncate('ab東京cd', 2)).toBe('ab東');
  });
});

describe('readImageSize from header bytes', () => {
  it('PNG IHDR', () => {
    expect(readImageSize(b64(png(1000, 500)))).toEqual({ width: 1000, height: 500, format: 'png' });
  });

  it('JPEG SOF0 and SOF2, after a large EXIF segment', () => {
    expect(readImageSize(b64(jpeg(1920, 1080)))).toEqual({ width: 1920, height: 1080, format: 'jpeg' });
    expect(readImageSize(b64(jpeg(640, 4000, { progressive: true, exifBytes: 60_000 })))).toEqual({ width: 640, height: 4000, format: 'jpeg' });
  });

  it('WebP VP8X, VP8 and VP8L', () => {
    expect(readImageSize(b64(webpVp8x(3000, 2000)))).toEqual({ width: 3000, height: 2000, format: 'webp' });
    expect(readImageSize(b64(webpVp8(800, 600)))).toEqual({ width: 800, height: 600, format: 'webp' });
    expect(readImageSize(b64(webpVp8l(2000, 100)))).toEqual({ width: 2000, height: 100, format: 'webp' });
  });

  it('HEIF ispe: the largest one is the primary image', () => {
    expect(readImageSize(b64(heif([320, 240], [4032, 3024], [512, 512])))).toEqual({ width: 4032, height: 3024, format: 'heif' });
  });

  it('unreadable or truncated headers give undefined', () => {
    expect(readImageSize('iVBORw0KGgo=')).toBeUndefined(); // PNG signature alone
    expect(readImageSize(b64(png(1000, 500)).slice(0, 24))).toBeUndefined();
    expect(readImageSize(b64(Buffer.from('not an image at all')))).toBeUndefined();
    expect(readImageSize('')).toBeUndefined();
    expect(readImageSize(b64(heif()))).toBeUndefined();
    expect(readImageSize(b64(png(0, 10)))).toBeUndefined();
  });

  it('also reads URL-safe base64', () => {
    const urlSafe = b64(jpeg(1920, 1080, { exifBytes: 1000 })).replace(/\+/g, '-').replace(/\//g, '_');
    expect(readImageSize(urlSafe)).toMatchObject({ width: 1920, height: 1080 });
  });

  it('the tiling rule: 384 px or less is one image, otherwise 768 px tiles', () => {
    expect(tiledImageTokens(384, 384)).toBe(258);
    expect(tiledImageTokens(385, 10)).toBe(258);
    expect(tiledImageTokens(1000, 500)).toBe(2 * 258);
    expect(tiledImageTokens(1920, 1080)).toBe(6 * 258);
    expect(tiledImageTokens(4032, 3024)).toBe(24 * 258);
  });
});

describe('a configured tokenizer through the real SDK', () => {
  let h: Harness;
  afterEach(() => h.close());

  async function usage(model: ReturnType<Harness['model']>, request: string | (string | Part)[]): Promise<{ prompt: number; counted: number; details: unknown }> {
    const r = await model.generateContent(request);
    const c = await model.countTokens(request);
    const u = r.response.usageMetadata as unknown as { promptTokenCount: number; promptTokensDetails: unknown };
    return { prompt: u.promptTokenCount, counted: c.totalTokens, details: u.promptTokensDetails };
  }

  it('no options: counts are what they always were', async () => {
    h = await startHarness();
    const model = h.model('gemini-2.5-flash');
    const u = await usage(model, ['x'.repeat(30), CJK10, image('image/png', png(4000, 4000))]);
    expect(u.prompt).toBe(8 + 3 + 258);
    expect(u.counted).toBe(u.prompt);
    expect(h.emulator.getTokenizer()).toEqual({ asciiCharsPerToken: 4, nonAsciiTokensPerChar: 0.25, imageTiling: false });
  });

  it('3 ASCII chars a token: promptTokenCount, countTokens, output and the TPM quota all agree', async () => {
    h = await startHarness({ tokenizer: { asciiCharsPerToken: 3 }, quotas: { 'gemini-2.5-flash-lite': { tpm: 25 } } });
    const model = h.model('gemini-2.5-flash-lite');
    const prompt = 'x'.repeat(30); // 10 tokens here, 8 by ceil(chars / 4)
    const r = await model.generateContent(prompt);
    const u = r.response.usageMetadata!;
    expect(u.promptTokenCount).toBe(10);
    expect((await model.countTokens(prompt)).totalTokens).toBe(10);
    // The answer is counted by the same rule.
    expect(u.candidatesTokenCount).toBe(Math.ceil(r.response.text().length / 3));
    await model.generateContent(prompt);
    // 20 used; 10 more exceeds 25 only because these tokens are 10, not 8.
    const err = await fetchError(() => model.generateContent(prompt));
    expect(err.status).toBe(429);
    expect(h.emulator.counters().byModel['gemini-2.5-flash-lite']?.inputTokens).toBe(20);
  });

  it('maxOutputTokens truncates by the configured rule', async () => {
    h = await startHarness({ tokenizer: { asciiCharsPerToken: 3 } });
    const model = h.genAI.getGenerativeModel({ model: 'gemini-2.5-flash-lite', generationConfig: { maxOutputTokens: 3 } }, { baseUrl: h.url });
    const r = await model.generateContent('Say something long');
    expect(r.response.candidates![0]!.finishReason).toBe('MAX_TOKENS');
    expect(r.response.text()).toBe('Emulated ');
    expect(r.response.usageMetadata!.candidatesTokenCount).toBe(3);
  });

  it('CJK at 1.2 tokens a character, and mixed text', async () => {
    h = await startHarness({ tokenizer: { preset: 'cjk' } });
    const model = h.model('gemini-3.6-flash');
    expect(await usage(model, CJK10)).toMatchObject({ prompt: 12, counted: 12 });
    // Each part on its own: ceil(6/4 + 2 × 1.2) = 4, ceil(10 × 1.2) = 12.
    expect(await usage(model, ['Hello 世界', CJK10])).toMatchObject({ prompt: 16, counted: 16 });
    // Streams report the same prompt count on every chunk.
    const stream = await model.generateContentStream(CJK10);
    for await (const chunk of stream.stream) expect(chunk.usageMetadata?.promptTokenCount).toBe(12);
  });

  it('embeddings count input with the tokenizer too', async () => {
    h = await startHarness({ tokenizer: { nonAsciiTokensPerChar: 1 } });
    await h.model('gemini-embedding-001').embedContent(CJK10);
    expect(h.emulator.counters().byModel['gemini-embedding-001']?.inputTokens).toBe(10);
  });

  it('imageTiling: PNG, JPEG, WebP and HEIF sized from their headers', async () => {
    h = await startHarness({ tokenizer: { imageTiling: true } });
    const model = h.model('gemini-2.5-flash');
    const cases: [Part, number][] = [
      [image('image/png', png(1000, 500)), 2 * 258],
      [image('image/png', png(300, 200)), 258],
      [image('image/jpeg', jpeg(1920, 1080, { exifBytes: 20_000 })), 6 * 258],
      [image('image/jpeg', jpeg(800, 800, { progressive: true })), 4 * 258],
      [image('image/webp', webpVp8x(3000, 2000)), 4 * 3 * 258],
      [image('image/webp', webpVp8(800, 600)), 2 * 258],
      [image('image/webp', webpVp8l(2000, 100)), 3 * 258],
      [image('image/heic', heif([320, 240], [4032, 3024])), 24 * 258],
      [{ inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }, 258],
      // Not an image: the flat media rule.
      [image('application/pdf', png(4000, 4000)), 258],
    ];
    for (const [part, tokens] of cases) {
      const u = await usage(model, ['look', part]);
      expect(u.prompt, JSON.stringify(part).slice(0, 60)).toBe(1 + tokens);
      expect(u.counted).toBe(1 + tokens);
    }
    const u = await usage(model, ['look', image('image/png', png(1000, 500))]);
    expect(u.details).toEqual([{ modality: 'TEXT', tokenCount: 1 }, { modality: 'IMAGE', tokenCount: 516 }]);
  });

  it('mediaResolution sets a per-image budget (280 / 560 / 1120) and wins over tiling', async () => {
    h = await startHarness({ tokenizer: { imageTiling: true } });
    const big = image('image/png', png(4000, 4000));
    const expected = { MEDIA_RESOLUTION_LOW: 280, MEDIA_RESOLUTION_MEDIUM: 560, MEDIA_RESOLUTION_HIGH: 1120 };
    for (const [mediaResolution, tokens] of Object.entries(expected)) {
      const model = h.genAI.getGenerativeModel({ model: 'gemini-3.1-pro-preview', generationConfig: { mediaResolution } as never }, { baseUrl: h.url });
      expect(await usage(model, ['two', big, big])).toMatchObject({ prompt: 1 + 2 * tokens, counted: 1 + 2 * tokens });
    }
    // UNSPECIFIED (or its enum number 0) keeps the tokenizer's own rule.
    const unspecified = h.genAI.getGenerativeModel({ model: 'gemini-3.1-pro-preview', generationConfig: { mediaResolution: 0 } as never }, { baseUrl: h.url });
    expect((await usage(unspecified, ['one', big])).prompt).toBe(1 + 36 * 258);
    // Proto JSON enums by number work too; a bad value is Google's 400.
    const low = h.genAI.getGenerativeModel({ model: 'gemini-3.1-pro-preview', generationConfig: { media_resolution: 1 } as never }, { baseUrl: h.url });
    expect((await usage(low, ['one', big])).prompt).toBe(1 + 280);
    const bad = h.genAI.getGenerativeModel({ model: 'gemini-3.1-pro-preview', generationConfig: { mediaResolution: 'ULTRA' } as never }, { baseUrl: h.url });
    const err = await fetchError(() => bad.generateContent('x'));
    expect(err.status).toBe(400);
    expect(err.message).toContain("Invalid value at 'generation_config.media_resolution'");
  });

  it('GET/PUT /_emulator/tokenizer switches the rule at runtime; {} restores the default', async () => {
    h = await startHarness();
    const client = new EmulatorClient(h.url);
    const model = h.model('gemini-2.5-flash');
    expect(await client.getTokenizer()).toEqual({ asciiCharsPerToken: 4, nonAsciiTokensPerChar: 0.25, imageTiling: false });
    expect(await client.setTokenizer({ preset: 'code', imageTiling: true })).toEqual({ preset: 'code', asciiCharsPerToken: 3, nonAsciiTokensPerChar: 0.25, imageTiling: true });
    expect((await model.countTokens('x'.repeat(30))).totalTokens).toBe(10);
    expect((await model.countTokens(['x', image('image/png', png(1000, 500))])).totalTokens).toBe(1 + 516);
    await expect(client.setTokenizer({ asciiCharsPerToken: 0 })).rejects.toThrow(/asciiCharsPerToken must be a number > 0/);
    await expect(client.setTokenizer({ preset: 'klingon' } as unknown as TokenizerConfig)).rejects.toThrow(/preset must be one of default, code, cjk/);
    await expect(client.setTokenizer({ charsPerToken: 3 } as unknown as TokenizerConfig)).rejects.toThrow(/unknown field "charsPerToken"/);
    // A rejected PUT leaves the tokenizer as it was.
    expect((await client.getTokenizer()).preset).toBe('code');
    await client.setTokenizer({});
    expect((await model.countTokens('x'.repeat(30))).totalTokens).toBe(8);
    // reset() clears counters, not configuration.
    await client.setTokenizer({ asciiCharsPerToken: 2 });
    await client.reset();
    expect((await client.getTokenizer()).asciiCharsPerToken).toBe(2);
  });

  it('the OpenAI route uses the tokenizer, and sizes data: URL images when tiling', async () => {
    h = await startHarness({ tokenizer: { asciiCharsPerToken: 3, imageTiling: true } });
    const res = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({
        model: 'gemini-2.5-flash',
        messages: [{
          role: 'user',
          content: [
            { type: 'text', text: 'x'.repeat(30) },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${b64(png(1000, 500))}` } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } },
          ],
        }],
      }),
    });
    const body = (await res.json()) as { usage: { prompt_tokens: number } };
    expect(body.usage.prompt_tokens).toBe(10 + 516 + 258);
  });
});

describe('EMULATOR_TOKENIZER', () => {
  it('readConfig parses it and names the variable when it is wrong', () => {
    expect(readConfig({ EMULATOR_TOKENIZER: '{"preset":"cjk","imageTiling":true}' }).tokenizer).toEqual({ preset: 'cjk', imageTiling: true });
    expect(readConfig({}).tokenizer).toEqual({});
    expect(() => readConfig({ EMULATOR_TOKENIZER: 'cjk' })).toThrow(/^EMULATOR_TOKENIZER must be JSON/);
    expect(() => readConfig({ EMULATOR_TOKENIZER: '{"nonAsciiTokensPerChar":-1}' })).toThrow(/^EMULATOR_TOKENIZER: tokenizer nonAsciiTokensPerChar must be a number > 0/);
  });

  it('the CLI exits 1 on a bad value', () => {
    const r = spawnSync(process.execPath, [mainScriptPath()], { env: { ...process.env, EMULATOR_PORT: '0', EMULATOR_TOKENIZER: '{"imageTiling":"yes"}' }, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('EMULATOR_TOKENIZER');
  });

  describe('startEmulatorProcess({ tokenizer })', () => {
    let emu: EmulatorProcess;
    beforeAll(async () => {
      emu = await startEmulatorProcess({ tokenizer: { preset: 'cjk' } });
    });
    afterAll(() => emu.stop());
    beforeEach(() => emu.client.reset());

    it('counts with the configured rule in the child process', async () => {
      const model = new GoogleGenerativeAI(emu.apiKey).getGenerativeModel({ model: 'gemini-2.5-flash' }, { baseUrl: emu.url });
      expect((await model.countTokens(CJK10)).totalTokens).toBe(12);
      expect(await emu.client.getTokenizer()).toEqual({ preset: 'cjk', asciiCharsPerToken: 4, nonAsciiTokensPerChar: 1.2, imageTiling: false });
    });
  });
});
