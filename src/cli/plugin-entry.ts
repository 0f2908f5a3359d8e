// The managed plugin's entrypoint: config.json runs node on this file directly (no shell in the
// way of signals: dockerd's SIGTERM on `docker plugin disable` reaches the plugin itself). It turns
// the setting `docker plugin set NAME BB_LOG_LEVEL=…` into serve's --log-level, placed before the
// other flags so that the settable `args` can still override it; serve validates the value.
import { main } from './main.js';
import { LOG_LEVEL_ENV } from './plugin-config.js';

// `docker plugin set NAME args=""` yields one empty argument.
const argv = process.argv.slice(2).filter((a) => a !== '');
const level = process.env[LOG_LEVEL_ENV];
const args = argv[0] === 'serve' && level !== undefined && level !== '' ? ['serve', '--log-level', level, ...argv.slice(1)] : argv;

main(args).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`batchbridge: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
