#!/usr/bin/env node
// Thin launcher: the TypeScript is compiled by `npm ci` (the `prepare` script) into dist/.
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { process.stderr.write(`batchbridge: ${err instanceof Error ? err.message : String(err)}\n`); process.exitCode = 1; },
);
