import { once } from 'node:events'
import { connect } from 'node:net'
import { parseEndpoint } from '../client/endpoint.js'
import { UsageError, env } from './env.js'
import type { GlobalArgs } from './main.js'
import type { Socket } from 'node:net'
import type { Argv } from 'yargs'

export const command = 'stdinproxy'
export const describe = 'pipes stdin/stdout to a TCP endpoint (for ssh ProxyCommand)'

export function builder (y: Argv<GlobalArgs>) {
  return y
    .option('endpoint', { alias: 'e', type: 'string', demandOption: true, describe: 'TCP endpoint hostname:port' })
    .option('instancename', { type: 'string', default: env('INSTANCE_NAME'), describe: 'instance to reach on a shared port [$INSTANCE_NAME]' })
    .option('connect', { type: 'boolean', default: false, describe: 'name the instance with an HTTP CONNECT request instead of the PROXY-> prefix' })
    .check((argv) => {
      try { parseEndpoint(argv.endpoint) } catch { throw new UsageError(`--endpoint "${argv.endpoint}" is not in the form hostname:port`) }
      if (argv.instancename !== undefined && (argv.instancename.length === 0 || argv.instancename.length > 255)) throw new UsageError('--instancename must be 1-255 characters')
      if (argv.connect && argv.instancename === undefined) throw new UsageError('--connect needs --instancename')
      return true
    })
}

type Args = Awaited<ReturnType<typeof builder>['argv']>

/** Sends `CONNECT name:port` and consumes the answer up to its blank line; anything after it is data. */
async function connectRequest (socket: Socket, name: string, port: number): Promise<Buffer> {
  socket.write(`CONNECT ${name}:${port} HTTP/1.1\r\nHost: ${name}:${port}\r\n\r\n`)
  return await new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0 && buf.length <= 16384) return
      socket.off('data', onData)
      socket.pause()
      const status = /^HTTP\/1\.[01] (\d{3})[^\r\n]*/.exec(buf.toString('latin1'))
      if (end < 0 || status?.[1] !== '200') reject(new Error(`CONNECT refused: ${status?.[0] ?? buf.subarray(0, 80).toString('latin1')}`))
      else resolve(buf.subarray(end + 4))
    }
    socket.on('data', onData)
  })
}

export async function handler (argv: Args): Promise<void> {
  const { host, port } = parseEndpoint(argv.endpoint)
  const socket = connect({ host, port, allowHalfOpen: true, noDelay: true })
  const fail = (err: Error): never => {
    process.stderr.write(`reverselb stdinproxy: ${argv.endpoint}: ${err.message}\n`)
    process.exit(1)
  }
  socket.on('error', fail)
  await once(socket, 'connect')
  const name = argv.instancename
  if (name !== undefined && argv.connect) {
    const rest = await connectRequest(socket, name, port).catch(fail)
    process.stdout.write(rest)
  } else if (name !== undefined) {
    // The original's routing prefix: "PROXY->", one length byte, the instance name (stripped by the server).
    const n = Buffer.from(name, 'latin1')
    socket.write(Buffer.concat([Buffer.from('PROXY->'), Buffer.from([n.length]), n]))
  }
  // Half-close in both directions, so `ssh` and `printf ... |` both see a clean end.
  process.stdin.pipe(socket)
  socket.pipe(process.stdout)
  socket.on('close', () => process.exit(0))
}
