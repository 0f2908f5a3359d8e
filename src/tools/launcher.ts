// A small long-lived process that starts tools for one worker thread (see spawn.ts for why).
// It serves requests concurrently, and exits when its parent goes away (the IPC channel closes),
// so a plugin killed with -9 leaves no launcher behind.
import { runToolDirect, type LaunchReply, type LaunchRequest } from './spawn.js';

process.on('message', (m: LaunchRequest) => {
  void runToolDirect(m.file, m.args, m.input, m.timeoutMs, m.env).then((result) => {
    const reply: LaunchReply = { id: m.id, result };
    process.send?.(reply);
  });
});
process.on('disconnect', () => process.exit(0));
