// Command line: `batchbridge serve|ports|reconcile|status|cleanup|install-service|cni-install|package-plugin`.
// Argument parsing is strict: an unknown flag is an error, never ignored. Every subcommand answers
// --help with its own text.
import { version } from '../config/version.js';
import { readEnvironment } from '../config/environment.js';
import { cniInstall } from '../cni/cli-install.js';
import { runCleanup } from './cleanup.js';
import { installService } from './install-service.js';
import { packagePlugin } from './package-plugin.js';
import { printPorts } from './ports.js';
import { runReconcile } from './reconcile.js';
import { serve } from './serve.js';
import { runStatus } from './status.js';
import { isUsageError } from './usage.js';

const HELP = `batchbridge — a Docker network driver plugin (and CNI plugin) that does what the built-in
bridge driver does, batching the kernel work of many endpoints into one transaction.

Usage:
  batchbridge serve [options]      run the plugin (as root, in dockerd's network namespace)
  batchbridge status [options]     health, counts, batching and last repairs of the running plugin
  batchbridge ports [options]      list the published ports of the running plugin
  batchbridge reconcile [options]  compare the kernel with the books, fix and print what differs
  batchbridge cleanup --state-dir DIR [options]
                                   uninstall: remove every bridge, veth and firewall rule of ours
                                   and the books (refused while a plugin serves from DIR)
  batchbridge install-service [options]
                                   write a systemd unit running this plugin
  batchbridge cni-install [options]
                                   install the CNI plugin executable (and a conflist)
  batchbridge package-plugin --out DIR [--name NAME]
                                   build a Docker managed-plugin folder (config.json + rootfs)
  batchbridge --version            print the version
  batchbridge --help               this text

Run 'batchbridge COMMAND --help' for a command's options. Settings of serve: docs/options.md;
running it on a host: docs/operations.md.

Exit status: 0 on success, 1 on error, 2 on bad usage.
`;

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Readonly<Record<string, Command>> = {
  serve,
  status: runStatus,
  ports: printPorts,
  reconcile: (args) => runReconcile(args, readEnvironment().tools),
  cleanup: (args) => runCleanup(args, readEnvironment().tools),
  'install-service': installService,
  'cni-install': cniInstall,
  'package-plugin': packagePlugin,
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    process.stdout.write(`batchbridge ${version()}\n`);
    return 0;
  }
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(HELP);
    return cmd === undefined ? 2 : 0;
  }
  const run = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  try {
    if (run === undefined) throw Object.assign(new Error(`unknown command ${JSON.stringify(cmd)}`), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
    return await run(rest);
  } catch (err) {
    if (isUsageError(err)) {
      const help = run === undefined ? 'batchbridge --help' : `batchbridge ${cmd} --help`;
      process.stderr.write(`batchbridge: ${(err as Error).message}\nRun '${help}' for usage.\n`);
      return 2;
    }
    throw err;
  }
}
