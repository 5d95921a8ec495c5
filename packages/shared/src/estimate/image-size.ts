/**
 * Width and height of an image from the first bytes of its file, without decoding it: PNG (IHDR),
 * JPEG (the first SOF marker), WebP (VP8, VP8L, VP8X) and HEIF/HEIC (the `ispe` box). Gemini bills
 * an image by its size, so the producer reads this once and the estimator prices the image from it.
 *
 * Every reader bounds its reads by the buffer's length: hostile bytes give `undefined`, never a throw.
 */
export interface ImageSize {
  width: number;
  height: number;
}

export function imageSize(bytes: Uint8Array, mimeType: string): ImageSize | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const read = READERS[mimeType.toLowerCase()];
  const size = read?.(bytes, view);
  return size && size.width > 0 && size.height > 0 ? size : undefined;
}

type Reader = (bytes: Uint8Array, view: DataView) => ImageSize | undefined;

/** PNG: signature (8 bytes), then the IHDR chunk whose data starts with width and height (u32 BE). */
const png: Reader = (bytes, view) => {
  if (bytes.length < 24 || ascii(bytes, 12, 4) !== 'IHDR') return undefined;
  return { width: view.getUint32(16), height: view.getUint32(20) };
};

/** SOF markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not. */
const isStartOfFrame = (marker: number): boolean => marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;

/** JPEG: walks the marker segments after SOI to the first SOF (height then width, u16 BE). */
const jpeg: Reader = (bytes, view) => {
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) return undefined;
    const marker = bytes[at + 1]!;
    // Fill bytes and markers without a length (RSTn, TEM) carry no segment.
    if (marker === 0xff) {
      at += 1;
      continue;
    }
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      at += 2;
      continue;
    }
    const length = view.getUint16(at + 2);
    if (length < 2) return undefined;
    if (isStartOfFrame(marker)) {
      if (at + 9 > bytes.length) return undefined;
      return { width: view.getUint16(at + 7), height: view.getUint16(at + 5) };
    }
    at += 2 + length;
  }
  return undefined;
};

/** WebP: RIFF container; lossy VP8 (14-bit sizes), lossless VP8L (packed bits) or extended VP8X (24-bit minus one). */
const webp: Reader = (bytes, view) => {
  if (bytes.length < 30 || ascii(bytes, 0, 4) !== 'RIFF' || ascii(bytes, 8, 4) !== 'WEBP') return undefined;
  switch (ascii(bytes, 12, 4)) {
    case 'VP8 ':
      return { width: view.getUint16(26, true) & 0x3fff, height: view.getUint16(28, true) & 0x3fff };
    case 'VP8L': {
      const bits = view.getUint32(21, true);
      return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
    }
    case 'VP8X':
      return { width: uint24le(bytes, 24) + 1, height: uint24le(bytes, 27) + 1 };
    default:
      return undefined;
  }
};

/**
 * HEIF/HEIC: ISO-BMFF boxes; the image spatial extents (`ispe`) sit in meta → iprp → ipco. The
 * first `ispe` is the primary image's in files written by cameras and libheif; good enough for an
 * estimate that calibration corrects.
 */
const heif: Reader = (bytes, view) => {
  if (bytes.length < 16 || ascii(bytes, 4, 4) !== 'ftyp') return undefined;
  return findIspe(bytes, view, 0, bytes.length, 0);
};

const CONTAINERS = new Set(['meta', 'iprp', 'ipco']);

function findIspe(bytes: Uint8Array, view: DataView, start: number, end: number, depth: number): ImageSize | undefined {
  let at = start;
  while (at + 8 <= end && depth < 4) {
    let size = view.getUint32(at);
    const type = ascii(bytes, at + 4, 4);
    let header = 8;
    if (size === 1) {
      if (at + 16 > end) return undefined;
      size = Number(view.getBigUint64(at + 8));
      header = 16;
    } else if (size === 0) {
      size = end - at;
    }
    if (size < header || at + size > end) return undefined;
    if (type === 'ispe' && at + header + 12 <= end) {
      // Full box: version and flags (4 bytes), then width and height (u32 BE).
      return { width: view.getUint32(at + header + 4), height: view.getUint32(at + header + 8) };
    }
    if (CONTAINERS.has(type)) {
      // `meta` is a full box: its children start after 4 bytes of version and flags.
      const found = findIspe(bytes, view, at + header + (type === 'meta' ? 4 : 0), at + size, depth + 1);
      if (found) return found;
    }
    at += size;
  }
  return undefined;
}

const READERS: Record<string, Reader> = {
  'image/png': png,
  'image/jpeg': jpeg,
  'image/webp': webp,
  'image/heic': heif,
  'image/heif': heif,
};

function ascii(bytes: Uint8Array, at: number, length: number): string {
  if (at + length > bytes.length) return '';
  return String.fromCharCode(...bytes.subarray(at, at + length));
}

function uint24le(bytes: Uint8Array, at: number): number {
  return bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16);
}
