// Wire → domain, at the edge. Docker's PascalCase JSON is checked here and turned into branded
// ids; nothing past this point sees an unchecked id.
import { InvalidRequestError } from '../errors.js';
import { parseEndpointId, parseNetworkId, type EndpointId, type NetworkId } from '../domain/names.js';

export type Body = Record<string, unknown>;

export function parseBody(raw: string, allowEmpty: boolean): Body {
  const text = raw.trim();
  if (text === '' || text === 'null') {
    if (allowEmpty) return {};
    throw new InvalidRequestError('request body is empty: this call needs a JSON object');
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InvalidRequestError(`malformed JSON: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidRequestError('request body must be a JSON object');
  return v as Body;
}

export function networkId(b: Body): NetworkId {
  return parseNetworkId(b.NetworkID);
}

export function endpointId(b: Body): EndpointId {
  return parseEndpointId(b.EndpointID);
}

export function options(b: Body, field = 'Options'): Record<string, unknown> {
  const o = b[field];
  if (o === undefined || o === null) return {};
  if (typeof o !== 'object' || Array.isArray(o)) throw new InvalidRequestError(`${field} must be an object`);
  return o as Record<string, unknown>;
}

export function list(b: Body, field: string): unknown[] {
  const v = b[field];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new InvalidRequestError(`${field} must be a list`);
  return v;
}
