// A small CRI RuntimeService client (gRPC over a unix socket) for the containerd harness: just the
// pod sandbox calls a kubelet makes around networking. Messages: test/cri-api.proto.
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

// compiled to dist/test/helpers/, the proto stays in test/
const PROTO = fileURLToPath(new URL('../../../test/cri-api.proto', import.meta.url));

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

export interface PortMapping {
  protocol?: Protocol;
  containerPort: number;
  hostPort: number;
  hostIp?: string;
}

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  logDirectory?: string;
  portMappings?: PortMapping[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: { cgroupParent?: string; securityContext?: { namespaceOptions?: { network?: 'POD' | 'NODE' } } };
}

export interface PodSandboxStatusResponse {
  status: {
    id: string;
    metadata: PodSandboxMetadata;
    state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
    network: { ip: string; additionalIps: Array<{ ip: string }> } | null;
    labels: Record<string, string>;
  };
  /** With verbose: "info" holds containerd's JSON (pid, runtimeSpec with the netns path, ...). */
  info: Record<string, string>;
}

export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadata;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  labels: Record<string, string>;
}

type Callback<R> = (err: ServiceError | null, res: R) => void;
type Method<Q, R> = (req: Q, opts: { deadline: number }, cb: Callback<R>) => void;

interface RuntimeServiceStub extends Client {
  Version: Method<{ version: string }, { version: string; runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }>;
  RunPodSandbox: Method<{ config: PodSandboxConfig; runtimeHandler?: string }, { podSandboxId: string }>;
  StopPodSandbox: Method<{ podSandboxId: string }, object>;
  RemovePodSandbox: Method<{ podSandboxId: string }, object>;
  PodSandboxStatus: Method<{ podSandboxId: string; verbose: boolean }, PodSandboxStatusResponse>;
  ListPodSandbox: Method<{ filter?: { labelSelector?: Record<string, string> } }, { items: PodSandbox[] }>;
}

type StubCtor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => RuntimeServiceStub;

let ctor: StubCtor | undefined;

function stubCtor(): StubCtor {
  if (ctor === undefined) {
    const def = loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true });
    const pkg = loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: StubCtor } } };
    ctor = pkg.runtime.v1.RuntimeService;
  }
  return ctor;
}

export class CriClient {
  private readonly stub: RuntimeServiceStub;
  private readonly timeoutMs: number;

  constructor(socketPath: string, { timeoutMs = 120_000 }: { timeoutMs?: number } = {}) {
    const Ctor = stubCtor();
    this.stub = new Ctor(`unix://${socketPath}`, credentials.createInsecure());
    this.timeoutMs = timeoutMs;
  }

  private call<Q, R>(m: Method<Q, R>, req: Q): Promise<R> {
    return new Promise((resolve, reject) => {
      m.call(this.stub, req, { deadline: Date.now() + this.timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  version() {
    return this.call(this.stub.Version, { version: 'v1' });
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    return (await this.call(this.stub.RunPodSandbox, { config })).podSandboxId;
  }

  podSandboxStatus(id: string, verbose = false): Promise<PodSandboxStatusResponse> {
    return this.call(this.stub.PodSandboxStatus, { podSandboxId: id, verbose });
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call(this.stub.StopPodSandbox, { podSandboxId: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call(this.stub.RemovePodSandbox, { podSandboxId: id });
  }

  async listPodSandbox(labelSelector?: Record<string, string>): Promise<PodSandbox[]> {
    const req = labelSelector === undefined ? {} : { filter: { labelSelector } };
    return (await this.call(this.stub.ListPodSandbox, req)).items;
  }

  /** The pod's network namespace path and sandbox pid, from the verbose status containerd gives. */
  async podNetns(id: string): Promise<{ netns: string; pid: number }> {
    const st = await this.podSandboxStatus(id, true);
    const info = JSON.parse(st.info['info'] ?? '{}') as {
      pid?: number;
      runtimeSpec?: { linux?: { namespaces?: Array<{ type: string; path?: string }> } };
    };
    const net = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network');
    if (net?.path === undefined || net.path === '') throw new Error(`pod ${id}: no network namespace path in its status`);
    return { netns: net.path, pid: info.pid ?? 0 };
  }

  close(): void {
    this.stub.close();
  }
}
