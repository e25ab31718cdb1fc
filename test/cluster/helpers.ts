import { runCli } from '../fixtures/cli.js'
import { freePort, freePortRange, tcpServer } from '../fixtures/net.js'
import { TOKEN, startServer } from '../fixtures/tunnel.js'
import { startNatsCluster } from '../fixtures/nats-cluster.js'
import { certFiles } from '../endpoints/helpers.js'
import type { TunnelClient, TunnelServer, TunnelServerOptions } from '../../index.js'
import type { NatsCluster } from '../fixtures/nats-cluster.js'
import type { CliProcess } from '../fixtures/cli.js'
import type { TcpServer } from '../fixtures/net.js'
import type { CertFiles } from '../endpoints/helpers.js'

export const CLUSTER_SECRET = 'cluster-secret-0123456789'

export interface ClusterSetup {
  /** NATS URLs, comma-separated. */
  natsUrls: string
  /** One certificate for every node, so clients pin one fingerprint. */
  cert: CertFiles
  /** The dynamic pool every node shares. */
  dynPort: number
  dynPortCount: number
  name: string
}

export async function clusterSetup (natsUrls: string, cert: CertFiles, dynPortCount = 40): Promise<ClusterSetup> {
  return { natsUrls, cert, dynPort: await freePortRange(dynPortCount), dynPortCount, name: `t${Math.floor(Math.random() * 1e9)}` }
}

/**
 * Node `i` of a cluster, in this process: its frontends on 127.0.0.(i+1) (every node opens every
 * service's port, so each needs an address of its own on this one machine).
 */
export async function startNode (setup: ClusterSetup, i: number, opts: Partial<TunnelServerOptions> = {}): Promise<TunnelServer> {
  return await startServer({
    frontendHost: frontendHostOf(i),
    dynPort: setup.dynPort,
    dynPortCount: setup.dynPortCount,
    tlsCert: setup.cert.certFile,
    tlsKey: setup.cert.keyFile,
    cluster: { name: setup.name, natsUrl: setup.natsUrls, advertise: '127.0.0.1', secret: CLUSTER_SECRET, nodeName: `node${i + 1}` },
    ...opts
  })
}

export const frontendHostOf = (i: number): string => `127.0.0.${i + 1}`

/** Node `i` as a `reverselb server` process of its own (to be killed with SIGKILL). */
export async function startNodeProcess (setup: ClusterSetup, i: number): Promise<{ proc: CliProcess, port: number }> {
  const port = await freePort()
  const proc = runCli([
    'server', '--port', String(port), '--host', '127.0.0.1', '--frontendhost', frontendHostOf(i),
    '--dynport', String(setup.dynPort), '--dynportcount', String(setup.dynPortCount), '--portgrace', '0',
    '--tls-cert', setup.cert.certFile, '--tls-key', setup.cert.keyFile,
    '--cluster', setup.name, '--natsurl', setup.natsUrls, '--advertise', `127.0.0.1:${port}`
  ], { TOKEN, CLUSTER_SECRET })
  await proc.waitFor(/joined through NATS/, 30_000)
  return { proc, port }
}

/** A backend that first says its name (a line), then echoes: the frontend knows who served it. */
export async function namedEcho (name: string): Promise<TcpServer & { connections: () => number }> {
  let n = 0
  const server = await tcpServer((s) => { n++; s.write(`${name}\n`); s.pipe(s) })
  return { ...server, connections: () => n }
}

/** What useCluster() starts; filled in by its before() hook. */
export class ClusterFixture {
  nats!: NatsCluster
  cert!: CertFiles
  setup!: ClusterSetup
  nodes: TunnelServer[] = []
  /** Each node's REST API port. */
  httpPorts: number[] = []
  /** Closed by the after() hook. */
  clients: TunnelClient[] = []
  backends: TcpServer[] = []
}

/**
 * In a describe(): a three-server NATS cluster and `size` in-process nodes before the tests,
 * everything (and whatever the tests put in clients and backends) closed after them.
 */
export function useCluster (size: number): ClusterFixture {
  const f = new ClusterFixture()
  before(async function () {
    f.cert = await certFiles()
    f.nats = await startNatsCluster(3)
    f.setup = await clusterSetup(f.nats.urls, f.cert)
    f.httpPorts = await Promise.all(Array.from({ length: size }, async () => await freePort()))
    f.nodes = await Promise.all(f.httpPorts.map(async (httpPort, i) => await startNode(f.setup, i, { httpPort })))
  })
  after(async function () {
    await Promise.all(f.clients.map(async c => await c.close()))
    await Promise.all(f.nodes.map(async n => await n.close()))
    await Promise.all(f.backends.map(async b => await b.close()))
    await f.nats?.close()
    await f.cert?.remove()
  })
  return f
}
