import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startedByNpm, watchNpmParent } from '../../src/cli/parent-watch.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('only a process started by npm run-script watches its parent', () => {
  assert.equal(startedByNpm({ npm_lifecycle_event: 'npx' }), true);
  assert.equal(startedByNpm({ npm_lifecycle_event: 'start' }), true);
  assert.equal(startedByNpm({}), false);
  assert.equal(startedByNpm({ npm_lifecycle_event: '' }), false);
});

test('a change of parent calls onGone once; an unchanged parent never', async () => {
  let ppid = 4242;
  let gone = 0;
  const stop = watchNpmParent(() => gone++, { env: { npm_lifecycle_event: 'npx' }, intervalMs: 5, ppid: () => ppid });
  await sleep(30);
  assert.equal(gone, 0);
  ppid = 1; // re-parented to init (or a subreaper)
  await sleep(30);
  ppid = 77;
  await sleep(30);
  assert.equal(gone, 1);
  stop();
});

test('without npm nothing is watched, even if the parent changes', async () => {
  let ppid = 10;
  let gone = 0;
  const stop = watchNpmParent(() => gone++, { env: {}, intervalMs: 5, ppid: () => ppid });
  ppid = 1;
  await sleep(30);
  assert.equal(gone, 0);
  stop();
});
