import type { ServiceRegistry } from '../registry.js'
import type { ClusterNode } from './cluster-node.js'

export interface ClusterNodeJson {
  name: string
  /** host:port of its API port. */
  api: string
  startedAt: string
  self: boolean
  /** This node has its node-to-node link to it open (always true for itself). */
  linked: boolean
  /** Tunnel client sessions connected to it. */
  sessions: number
}

export interface ClusterJson {
  cluster: string
  node: string
  /** Whether the shared registry (NATS JetStream) answers; while not, only new services are refused. */
  registryReachable: boolean
  nodes: ClusterNodeJson[]
}

/** The cluster as this node sees it, for GET /cluster. */
export function clusterJson (node: ClusterNode, registry: ServiceRegistry): ClusterJson {
  const sessions = new Map<string, number>()
  for (const service of registry.services.values()) {
    for (const s of service.sessions) if (s.node !== undefined) sessions.set(s.node, (sessions.get(s.node) ?? 0) + 1)
  }
  return {
    cluster: node.clusterName,
    node: node.name,
    registryReachable: node.shared.available,
    nodes: [...node.membership.nodes.values()].map(n => ({
      name: n.name,
      api: n.api,
      startedAt: n.startedAt,
      self: n.name === node.name,
      linked: n.name === node.name || node.linked(n.name),
      sessions: sessions.get(n.name) ?? 0
    }))
  }
}
