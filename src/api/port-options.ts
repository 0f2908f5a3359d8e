// Docker's port options (com.docker.network.portmap, com.docker.network.endpoint.exposedports)
// → the domain's requested bindings and exposed ports.
import { InvalidRequestError } from '../errors.js';
import { MAX_BINDINGS, parseBinding, parseExposed, type ExposedPort, type RequestedBinding } from '../domain/publishing.js';

const PORTMAP = 'com.docker.network.portmap';
const EXPOSED = 'com.docker.network.endpoint.exposedports';

function objects(v: unknown, key: string): Array<{ where: string; o: Record<string, unknown> }> {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new InvalidRequestError(`${key} must be a list`);
  if (v.length > MAX_BINDINGS) throw new InvalidRequestError(`${key} is too long`);
  return v.map((b: unknown, i) => {
    const where = `${key}[${i}]`;
    if (b === null || typeof b !== 'object' || Array.isArray(b)) throw new InvalidRequestError(`${where} must be an object`);
    return { where, o: b as Record<string, unknown> };
  });
}

export function parsePortOptions(options: Record<string, unknown>): { requested: RequestedBinding[]; exposed: ExposedPort[] } {
  const requested = objects(options[PORTMAP], PORTMAP).map(({ where, o }) =>
    parseBinding({ proto: o.Proto, containerPort: o.Port, hostIp: o.HostIP, hostPort: o.HostPort, hostPortEnd: o.HostPortEnd }, where),
  );
  const exposed = objects(options[EXPOSED], EXPOSED).map(({ where, o }) => parseExposed(o.Proto, o.Port, where));
  return { requested, exposed };
}
