/**
 * Inline images: which types we accept, strict base64 decoding, and a magic-byte check so a
 * client cannot label arbitrary bytes as an image (Gemini would reject it only after the job
 * waited in the queue and spent a provider call).
 */

export const SUPPORTED_IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/heic', 'image/heif'] as const;
export type SupportedImageType = (typeof SUPPORTED_IMAGE_TYPES)[number];

export function isSupportedImageType(mimeType: string): mimeType is SupportedImageType {
  return (SUPPORTED_IMAGE_TYPES as readonly string[]).includes(mimeType);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const JPEG_SIGNATURE = Buffer.from([0xff, 0xd8, 0xff]);
// HEIC and HEIF share a container (ISO-BMFF); phones label them loosely, so either MIME type is
// accepted for either brand family.
const HEIC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx']);
const HEIF_BRANDS = new Set(['mif1', 'msf1', 'heif']);

/** True when the bytes start like a file of `mimeType`. */
export function matchesMagicBytes(mimeType: SupportedImageType, data: Buffer): boolean {
  switch (mimeType) {
    case 'image/png':
      return startsWith(data, PNG_SIGNATURE);
    case 'image/jpeg':
      return startsWith(data, JPEG_SIGNATURE);
    case 'image/webp':
      return data.length >= 12 && data.toString('latin1', 0, 4) === 'RIFF' && data.toString('latin1', 8, 12) === 'WEBP';
    case 'image/heic':
    case 'image/heif':
      return ftypBrands(data).some((brand) => HEIC_BRANDS.has(brand) || HEIF_BRANDS.has(brand));
  }
}

function startsWith(data: Buffer, signature: Buffer): boolean {
  return data.length >= signature.length && data.subarray(0, signature.length).equals(signature);
}

/** Major and compatible brands of a leading `ftyp` box, or [] when there is none. */
function ftypBrands(data: Buffer): string[] {
  if (data.length < 12 || data.toString('latin1', 4, 8) !== 'ftyp') return [];
  const boxSize = Math.min(data.readUInt32BE(0), data.length);
  const brands = [data.toString('latin1', 8, 12)];
  // Bytes 12-16 are the minor version; compatible brands follow, 4 bytes each.
  for (let offset = 16; offset + 4 <= boxSize; offset += 4) brands.push(data.toString('latin1', offset, offset + 4));
  return brands;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Size of the decoded data without decoding it, so an oversized upload is refused before we
 * allocate its buffer. Assumes `isBase64` holds.
 */
export function base64DecodedBytes(text: string): number {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  return (text.length / 4) * 3 - padding;
}

/** Standard, padded base64 (what Gemini's `inlineData.data` takes); Node's decoder silently skips junk. */
export function isBase64(text: string): boolean {
  return text.length > 0 && BASE64.test(text);
}
