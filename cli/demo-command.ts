import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { TunnelClient } from '../client/tunnel-client.js'
import { TunnelServer } from '../server/tunnel-server.js'
import { checkPort, onShutdown } from './env.js'
import { createLogger } from '../protocol/index.js'
import type { GlobalArgs } from './main.js'
import type { AddressInfo } from 'node:net'
import type { Argv } from 'yargs'

export const command = 'demo'
export const describe = 'runs a server, a demo HTTP backend and a tunnel to it, all on loopback'

export function builder (y: Argv<GlobalArgs>) {
  return y
    .option('port', { alias: 'p', type: 'number', default: 9999, describe: 'API port of the demo server' })
    .option('frontendport', { type: 'number', default: 8888, describe: 'frontend port of the demo service' })
    .check((argv) => { checkPort(argv.port, 'port'); checkPort(argv.frontendport, 'frontendport'); return true })
}

type Args = Awaited<ReturnType<typeof builder>['argv']>

export async function handler (argv: Args): Promise<void> {
  const log = createLogger(argv.loglevel, 'demo')
  const token = argv.token !== '' ? argv.token : randomBytes(16).toString('hex')
  const backend = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`hello from the reverselb demo backend: you asked for ${req.method ?? ''} ${req.url ?? ''} and came through the tunnel\n`)
  })
  backend.listen(0, '127.0.0.1')
  await once(backend, 'listening')
  const backendPort = (backend.address() as AddressInfo).port

  const server = new TunnelServer({ port: argv.port, host: '127.0.0.1', frontendHost: '127.0.0.1', token, logger: log })
  const { fingerprint } = await server.listen()
  const client = new TunnelClient(`localhost:${argv.port}`, {
    serviceName: 'demo', token, backendAcceptBacklog: 1,
    frontendData: { port: argv.frontendport }, targetPort: backendPort, targetAddresses: ['127.0.0.1']
  }, { fingerprint, logger: log })
  const { frontendPort } = await client.ready()
  process.stdout.write(`\nreverselb demo is running: server on wss://localhost:${argv.port}, backend on 127.0.0.1:${backendPort}\n` +
    `try:  curl http://localhost:${frontendPort}/\n(Ctrl-C to stop)\n\n`)
  onShutdown(async () => {
    await client.close()
    await server.close()
    backend.close()
  })
}
