// Minimal image headers built by hand, byte by byte, so the size reader is tested against the
// formats' specs rather than against an image library. Only the bytes a header reader needs.

import { crc32 } from 'node:zlib';

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function u16be(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u24le(n: number): Buffer {
  const b = Buffer.alloc(3);
  b.writeUIntLE(n, 0, 3);
  return b;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  return Buffer.concat([u32be(data.length), body, u32be(crc32(body))]);
}

/** PNG signature, IHDR (8-bit RGB) and IEND. */
export function png(width: number, height: number): Buffer {
  const ihdr = Buffer.concat([u32be(width), u32be(height), Buffer.from([8, 2, 0, 0, 0])]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

function jpegSegment(marker: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xff, marker]), u16be(body.length + 2), body]);
}

/**
 * SOI, APP0 (JFIF), an optional APP1 of `exifBytes` padding (EXIF blocks can be ~64 KB),
 * a DQT, the frame header (SOF0 baseline or SOF2 progressive), then EOI.
 */
export function jpeg(width: number, height: number, opts: { progressive?: boolean; exifBytes?: number } = {}): Buffer {
  const app0 = jpegSegment(0xe0, Buffer.concat([Buffer.from('JFIF\0', 'latin1'), Buffer.from([1, 1, 0, 0, 1, 0, 1, 0, 0])]));
  const app1 = opts.exifBytes ? jpegSegment(0xe1, Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), Buffer.alloc(opts.exifBytes, 0xab)])) : Buffer.alloc(0);
  const dqt = jpegSegment(0xdb, Buffer.concat([Buffer.from([0]), Buffer.alloc(64, 1)]));
  const components = Buffer.from([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
  const sof = jpegSegment(opts.progressive ? 0xc2 : 0xc0, Buffer.concat([Buffer.from([8]), u16be(height), u16be(width), Buffer.from([3]), components]));
  return Buffer.concat([Buffer.from([0xff, 0xd8]), app0, app1, dqt, sof, Buffer.from([0xff, 0xd9])]);
}

function riff(chunkType: string, chunk: Buffer): Buffer {
  const padded = chunk.length % 2 === 1 ? Buffer.concat([chunk, Buffer.from([0])]) : chunk;
  const body = Buffer.concat([Buffer.from('WEBP', 'latin1'), Buffer.from(chunkType, 'latin1'), Buffer.alloc(4), padded]);
  body.writeUInt32LE(chunk.length, 8);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(body.length);
  return Buffer.concat([Buffer.from('RIFF', 'latin1'), size, body]);
}

/** Extended WebP: VP8X with the canvas size (24-bit, minus one). */
export function webpVp8x(width: number, height: number): Buffer {
  return riff('VP8X', Buffer.concat([Buffer.from([0x10, 0, 0, 0]), u24le(width - 1), u24le(height - 1)]));
}

/** Lossy WebP: VP8 key frame tag, start code, 14-bit width and height. */
export function webpVp8(width: number, height: number): Buffer {
  const frame = Buffer.alloc(10);
  frame[0] = 0x10; // key frame, version 0, show_frame
  frame[1] = 0x02;
  frame[2] = 0x00;
  frame[3] = 0x9d;
  frame[4] = 0x01;
  frame[5] = 0x2a;
  frame.writeUInt16LE(width & 0x3fff, 6);
  frame.writeUInt16LE(height & 0x3fff, 8);
  return riff('VP8 ', frame);
}

/** Lossless WebP: signature 0x2f, then (width-1) and (height-1) as 14-bit fields. */
export function webpVp8l(width: number, height: number): Buffer {
  const data = Buffer.alloc(5);
  data[0] = 0x2f;
  data.writeUInt32LE(((width - 1) & 0x3fff) | (((height - 1) & 0x3fff) << 14), 1);
  return riff('VP8L', data);
}

function box(type: string, ...children: Buffer[]): Buffer {
  const body = Buffer.concat(children);
  return Buffer.concat([u32be(body.length + 8), Buffer.from(type, 'latin1'), body]);
}

function fullBox(type: string, ...children: Buffer[]): Buffer {
  return box(type, Buffer.alloc(4), ...children); // version 0, flags 0
}

/** HEIC: ftyp, then meta with hdlr and iprp/ipco holding one ispe per size (primary and thumbnails). */
export function heif(...sizes: [number, number][]): Buffer {
  const ftyp = box('ftyp', Buffer.from('heic', 'latin1'), u32be(0), Buffer.from('mif1heic', 'latin1'));
  const hdlr = fullBox('hdlr', u32be(0), Buffer.from('pict', 'latin1'), Buffer.alloc(12), Buffer.from([0]));
  const ispes = sizes.map(([w, h]) => fullBox('ispe', u32be(w), u32be(h)));
  const meta = fullBox('meta', hdlr, box('iprp', box('ipco', ...ispes)));
  return Buffer.concat([ftyp, meta, box('mdat', Buffer.alloc(16))]);
}

export const b64 = (bytes: Buffer): string => bytes.toString('base64');
