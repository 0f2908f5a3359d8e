// What the CNI verbs work with: the engine (shared with the Docker front end), the tools for
// the reads CHECK makes, the runner for delegated IPAM plugins, the log.
import type { Logger } from 'pino';
import type { Engine } from '../engine/engine.js';
import type { ToolEnv } from '../tools/env.js';
import type { ToolRunner } from './ipam-delegate.js';

export interface CniContext {
  readonly engine: Engine;
  readonly tools: ToolEnv;
  readonly runDelegate: ToolRunner;
  readonly log: Logger;
}
