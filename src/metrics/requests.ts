// The one thing a front end calls to be measured: a request begins, and is answered with an
// outcome. The Docker front end (src/api/app.ts) calls it with front end "docker" and the
// protocol call ("NetworkDriver.CreateEndpoint"); the CNI front end with "cni" and the CNI
// command ("ADD", "DEL", "CHECK", ...). An outcome is "ok" or the error's stable code
// (src/errors.ts, e.g. "BB_ERR_OVERLOADED"), so the label's values stay a small, known set.
export type FrontEnd = 'docker' | 'cni';

export interface RequestMetrics {
  /** A request begins; call the function it returns once it is answered. */
  start(frontEnd: FrontEnd, call: string): (outcome: string) => void;
}

/** For a plugin without --metrics-listen, and for tests. */
export const NO_REQUEST_METRICS: RequestMetrics = { start: () => () => undefined };
