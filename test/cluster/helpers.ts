import { freePortRange } from '../fixtures/net.js'
import { startServer } from '../fixtures/tunnel.js'
import type { TunnelServer, TunnelServerOptions } from '../../index.js'
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
