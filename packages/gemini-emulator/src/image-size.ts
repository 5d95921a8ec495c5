// Width and height of an image from its header bytes: PNG (IHDR), JPEG (SOFn), WebP
// (VP8 / VP8L / VP8X) and HEIF/HEIC (ispe). No image library and no full decode: the base64
// is decoded lazily, a few bytes at a time, so a 50 MB photo costs a few hundred bytes here.
// The emulator plays Google, so this is written here on purpose and shares nothing with our
// own estimator in packages/shared: a bug there must not be hidden by the same bug here.

export interface ImageSize { width: number; height: number; format: 'png' | 'jpeg' | 'webp' | 'heif' }

/** Random access to the bytes behind a base64 string, decoding only the 4-char groups asked for. */
class Base64Bytes {
  readonly length: number;

  constructor(private readonly b64: string) {
    const trimmed = b64.replace(/=+$/, '');
    this.length = Math.floor((trimmed.length * 3) / 4);
  }

  /** `n` bytes at `offset`, or undefined when they run past the end. */
  read(offset: number, n: number): Buffer | undefined {
    if (offset < 0 || n < 0 || offset + n > this.length) return undefined;
    // 3 bytes <-> 4 chars, so byte k lives in the group starting at char floor(k/3)*4.
    const first = Math.floor(offset / 3);
    const last = Math.ceil((offset + n) / 3);
    const bytes = Buffer.from(this.b64.slice(first * 4, last * 4), 'base64');
    const start = offset - first * 3;
    return bytes.length >= start + n ? bytes.subarray(start, start + n) : undefined;
  }

  u8(offset: number): number | undefined {
    return this.read(offset, 1)?.readUInt8(0);
  }

  u16be(offset: number): number | undefined {
    return this.read(offset, 2)?.readUInt16BE(0);
  }

  u32be(offset: number): number | undefined {
    return this.read(offset, 4)?.readUInt32BE(0);
  }

  ascii(offset: number, n: number): string | undefined {
    return this.read(offset, n)?.toString('latin1');
  }
}

function sized(width: number | undefined, height: number | undefined, format: ImageSize['format']): ImageSize | undefined {
  if (width === undefined || height === undefined || width < 1 || height < 1) return undefined;
  return { width, height, format };
}

function png(src: Base64Bytes): ImageSize | undefined {
  // 8-byte signature, then the first chunk must be IHDR: length(4) "IHDR" width(4) height(4).
  if (src.ascii(12, 4) !== 'IHDR') return undefined;
  return sized(src.u32be(16), src.u32be(20), 'png');
}

/** SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames. */
function isSof(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

function jpeg(src: Base64Bytes): ImageSize | undefined {
  let offset = 2;
  // Walk marker segments by their lengths; EXIF/ICC segments can be tens of KB and are skipped unread.
  for (let guard = 0; guard < 1000; guard++) {
    if (src.u8(offset) !== 0xff) return undefined;
    let marker = src.u8(offset + 1);
    // Any number of 0xFF fill bytes may precede a marker.
    while (marker === 0xff) marker = src.u8(++offset + 1);
    if (marker === undefined) return undefined;
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      offset += 2; // standalone markers have no length
      continue;
    }
    // Entropy-coded data starts at SOS; a frame header must have come before it.
    if (marker === 0xda || marker === 0xd9) return undefined;
    const length = src.u16be(offset + 2);
    if (length === undefined || length < 2) return undefined;
    if (isSof(marker)) {
      // length(2) precision(1) height(2) width(2)
      return sized(src.u16be(offset + 7), src.u16be(offset + 5), 'jpeg');
    }
    offset += 2 + length;
  }
  return undefined;
}

function webp(src: Base64Bytes): ImageSize | undefined {
  const chunk = src.ascii(12, 4);
  if (chunk === 'VP8 ') {
    // Lossy: 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height (2 scale bits on top).
    const data = src.read(20, 10);
    if (!data || data[3] !== 0x9d || data[4] !== 0x01 || data[5] !== 0x2a) return undefined;
    return sized(data.readUInt16LE(6) & 0x3fff, data.readUInt16LE(8) & 0x3fff, 'webp');
  }
  if (chunk === 'VP8L') {
    // Lossless: signature 0x2f, then width-1 and height-1 as 14-bit fields, little-endian.
    const data = src.read(20, 5);
    if (!data || data[0] !== 0x2f) return undefined;
    const bits = data.readUInt32LE(1);
    return sized((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1, 'webp');
  }
  if (chunk === 'VP8X') {
    // Extended: flags(1) reserved(3), then canvas width-1 and height-1 as 24-bit little-endian.
    const data = src.read(20, 10);
    return data ? sized(data.readUIntLE(4, 3) + 1, data.readUIntLE(7, 3) + 1, 'webp') : undefined;
  }
  return undefined;
}

interface Box { type: string; start: number; body: number; end: number }

/** ISO-BMFF boxes between `from` and `to`. */
function* boxes(src: Base64Bytes, from: number, to: number): Generator<Box> {
  let offset = from;
  for (let guard = 0; guard < 1000 && offset + 8 <= to; guard++) {
    const size32 = src.u32be(offset);
    const type = src.ascii(offset + 4, 4);
    if (size32 === undefined || type === undefined) return;
    let body = offset + 8;
    let size = size32;
    if (size32 === 1) {
      // 64-bit largesize follows the type.
      const hi = src.u32be(offset + 8);
      const lo = src.u32be(offset + 12);
      if (hi === undefined || lo === undefined) return;
      size = hi * 2 ** 32 + lo;
      body = offset + 16;
    } else if (size32 === 0) {
      size = to - offset; // extends to the end of its parent
    }
    if (size < body - offset) return;
    const end = Math.min(offset + size, to);
    yield { type, start: offset, body, end };
    offset += size;
  }
}

function heif(src: Base64Bytes): ImageSize | undefined {
  // ftyp, then meta (a full box: 4 bytes of version and flags) -> iprp -> ipco -> ispe.
  // Thumbnails and grid tiles have their own ispe; the primary image is the largest one.
  let best: ImageSize | undefined;
  for (const top of boxes(src, 0, src.length)) {
    if (top.type !== 'meta') continue;
    for (const inMeta of boxes(src, top.body + 4, top.end)) {
      if (inMeta.type !== 'iprp') continue;
      for (const inIprp of boxes(src, inMeta.body, inMeta.end)) {
        if (inIprp.type !== 'ipco') continue;
        for (const prop of boxes(src, inIprp.body, inIprp.end)) {
          if (prop.type !== 'ispe') continue;
          const size = sized(src.u32be(prop.body + 4), src.u32be(prop.body + 8), 'heif');
          if (size && (!best || size.width * size.height > best.width * best.height)) best = size;
        }
      }
    }
  }
  return best;
}

/** Reads an image's size from the header of its base64 bytes; undefined when it cannot tell. */
export function readImageSize(base64: string): ImageSize | undefined {
  const src = new Base64Bytes(base64);
  const head = src.read(0, 12);
  if (!head) return undefined;
  if (head.readUInt32BE(0) === 0x89504e47 && head.readUInt32BE(4) === 0x0d0a1a0a) return png(src);
  if (head[0] === 0xff && head[1] === 0xd8) return jpeg(src);
  if (head.toString('latin1', 0, 4) === 'RIFF' && head.toString('latin1', 8, 12) === 'WEBP') return webp(src);
  if (head.toString('latin1', 4, 8) === 'ftyp') return heif(src);
  return undefined;
}
