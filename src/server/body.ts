/**
 * Request bodies of `mace serve`: read with a byte cap (HTTP 413 past it), parsed as one JSON
 * object (HTTP 400 otherwise), and checked field by field so an unknown field is an error naming it.
 */
import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.ts';

/**
 * Past the cap the rest of a body is still read and dropped, up to this many more bytes, so the
 * client (which is still sending) gets the 413 instead of a reset connection; beyond it the
 * connection is cut.
 */
const DRAIN_LIMIT = 64 * 2 ** 20;

/** The whole body, at most `cap` bytes. */
export function readBody(req: IncomingMessage, cap: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > cap + DRAIN_LIMIT) {
      reject(tooLarge(cap, declared));
      req.destroy();
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size <= cap) parts.push(b);
      else if (size > cap + DRAIN_LIMIT) {
        reject(tooLarge(cap, size));
        req.destroy();
      }
    });
    req.on('end', () => (size > cap ? reject(tooLarge(cap, size)) : resolve(Buffer.concat(parts))));
    req.on('error', (e) => reject(new HttpError(400, `the request body could not be read: ${e.message}`, null, 'bad_body')));
    // A client gone mid-body: settle, or the request would hold its concurrency slot forever.
    req.on('close', () => {
      if (!req.complete) reject(new HttpError(400, 'the client closed the connection before the body ended', null, 'bad_body'));
    });
  });
}

function tooLarge(cap: number, size: number): HttpError {
  return new HttpError(413, `the request body has ${size} bytes or more; this server takes at most ${cap} (--max-body-bytes, or --max-adapter-bytes for /v1/load_lora_adapter)`, null, 'request_too_large');
}

/** A body as a JSON object; anything else is a 400 saying what it was. */
export function parseJsonObject(body: Buffer, contentType: string | undefined): Record<string, unknown> {
  // OpenAI's clients send application/json; a form or text body is a client bug worth naming.
  if (contentType !== undefined && !/^application\/json\b/i.test(contentType.trim())) {
    throw new HttpError(415, `content-type must be application/json, got '${contentType}'`, null, 'unsupported_media_type', 'invalid_request_error');
  }
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new HttpError(400, `the request body is not valid JSON: ${(e as Error).message}`, null, 'invalid_json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, `the request body must be a JSON object, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`, null, 'invalid_json');
  return value as Record<string, unknown>;
}

/** Refuse fields other than `known` (a typo would otherwise be silently ignored). */
export function checkFields(body: Record<string, unknown>, known: readonly string[], what: string): void {
  for (const k of Object.keys(body)) if (!known.includes(k)) throw new HttpError(400, `${k} is not a field of ${what} (known: ${known.join(', ')})`, k, 'unknown_field');
}

/** A required non-empty string field. */
export function stringField(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== 'string' || v === '') throw new HttpError(400, `${name} must be a non-empty string, got ${JSON.stringify(v) ?? 'nothing'}`, name, 'invalid_value');
  return v;
}
