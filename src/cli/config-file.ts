// `serve --config FILE`: one `name = value` line per setting, the names those of the flags
// without their dashes (src/cli/settings.ts). `#` starts a comment line; blank lines are
// skipped. A value runs to the end of its line (spaces inside kept, none around it), without
// quotes or escapes. An unknown name, a name given twice or a line without `=` is refused with
// the file's name and the line's number: a typo must not silently leave a default in place.
import { readFileSync } from 'node:fs';
import { SERVE_SETTINGS, settingByName } from './settings.js';
import { UsageError } from './usage.js';

export interface FileValue {
  readonly raw: string;
  /** where it came from, for messages: `FILE line N` */
  readonly where: string;
}

export function parseConfigText(text: string, path: string): Map<string, FileValue> {
  const out = new Map<string, FileValue>();
  text.split('\n').forEach((rawLine, i) => {
    const line = rawLine.trim();
    const where = `${path} line ${i + 1}`;
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq < 0) throw new UsageError(`${where}: expected "name = value", got ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, eq).trim();
    const raw = line.slice(eq + 1).trim();
    const s = settingByName(name);
    if (s === undefined) {
      const known = SERVE_SETTINGS.filter((x) => x.cliOnly !== true).map((x) => x.name);
      throw new UsageError(`${where}: unknown setting ${JSON.stringify(name.slice(0, 80))} (known: ${known.join(', ')})`);
    }
    if (s.cliOnly === true) throw new UsageError(`${where}: ${name} can only be given on the command line`);
    if (out.has(name)) throw new UsageError(`${where}: ${name} is set twice (first at ${out.get(name)?.where ?? '?'})`);
    out.set(name, { raw, where });
  });
  return out;
}

export function readConfigFile(path: string): Map<string, FileValue> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the config file ${path}: ${(err as Error).message}`);
  }
  return parseConfigText(text, path);
}
