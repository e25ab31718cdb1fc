import { ServerSession } from '../session.js'
import type { MuxSession, MuxerName, StreamHeader } from '../../protocol/index.js'
import type { SessionRecord } from './shared-services.js'

/**
 * A session held by another node, seen by this node's balancer like its own: a stream opened to
 * it goes over the node-to-node link and names the session; that node relays it to the client
 * and passes the client's answer back, so failing over before the first byte works the same.
 * `activeConnections` counts the connections this node forwarded to it.
 */
export class RemoteSession extends ServerSession {
  constructor (record: SessionRecord, link: MuxSession) {
    super({
      remoteAddress: record.clientAddress,
      muxerName: record.muxer as MuxerName,
      mux: link,
      registration: {
        serviceName: record.service,
        frontendData: { port: 0 },
        backendAcceptBacklog: 1,
        targetPort: record.targetPort,
        targetAddresses: record.targetAddresses
      },
      instance: record.instance,
      connection: { ...record.connection, services: () => [record.instance === '' ? record.service : `${record.service}:${record.instance}`] },
      // Its client is another node's to close.
      close: () => {},
      id: record.id,
      connectedAt: new Date(record.connectedAt),
      node: record.node
    })
  }

  protected override streamRequest (header: StreamHeader): ForwardRequest {
    return { session: this.id, header }
  }
}

/** First message of a stream on a node-to-node link: which session, and the stream's own header. */
export interface ForwardRequest {
  session: string
  header: StreamHeader
}
