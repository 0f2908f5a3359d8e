// Stopping with the npm process that started us. `npx batchbridge serve` and `npm start` run the
// plugin as npm → `sh -c '…'` → node. npm forwards SIGTERM/SIGINT to its child only, which is
// sh; Debian's dash (0.5.12) neither execs the command of `-c` nor passes a signal on, so it dies
// of the SIGTERM and the plugin, re-parented, would run on with its socket in place. (Ctrl-C is
// not affected: the terminal signals the whole process group.) Under npm only, a change of parent
// therefore means "stop": a plugin started by systemd, a shell or a test harness is left alone.

export interface ParentWatchOptions {
  /** the environment to look for npm's marker in (default process.env) */
  readonly env?: NodeJS.ProcessEnv;
  /** how often to look at the parent pid (default 250 ms) */
  readonly intervalMs?: number;
  /** the parent pid source (default: process.ppid, read anew each time) */
  readonly ppid?: () => number;
}

/** True when npm's run-script started this process (npx, npm exec, npm start, npm run). */
export function startedByNpm(env: NodeJS.ProcessEnv): boolean {
  // run-script sets npm_lifecycle_event for the script it spawns ("npx" for npm exec).
  return typeof env.npm_lifecycle_event === 'string' && env.npm_lifecycle_event !== '';
}

/**
 * Calls `onGone` once when the parent process that started us has gone (we were re-parented),
 * if npm started us; otherwise does nothing. Returns a function that stops watching.
 */
export function watchNpmParent(onGone: () => void, opts: ParentWatchOptions = {}): () => void {
  if (!startedByNpm(opts.env ?? process.env)) return () => undefined;
  const ppid = opts.ppid ?? ((): number => process.ppid);
  const first = ppid();
  const timer = setInterval(() => {
    if (ppid() === first) return;
    clearInterval(timer);
    onGone();
  }, opts.intervalMs ?? 250);
  timer.unref();
  return () => clearInterval(timer);
}
