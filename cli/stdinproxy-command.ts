import { connect } from 'node:net'
import { parseEndpoint } from '../client/endpoint.js'
import { UsageError } from './env.js'
import type { GlobalArgs } from './main.js'
import type { Argv } from 'yargs'

export const command = 'stdinproxy'
export const describe = 'pipes stdin/stdout to a TCP endpoint (for ssh ProxyCommand)'

export function builder (y: Argv<GlobalArgs>) {
  return y
    .option('endpoint', { alias: 'e', type: 'string', demandOption: true, describe: 'TCP endpoint hostname:port' })
    .check((argv) => {
      try { parseEndpoint(argv.endpoint) } catch { throw new UsageError(`--endpoint "${argv.endpoint}" is not in the form hostname:port`) }
      return true
    })
}

type Args = Awaited<ReturnType<typeof builder>['argv']>

export async function handler (argv: Args): Promise<void> {
  const { host, port } = parseEndpoint(argv.endpoint)
  const socket = connect({ host, port, allowHalfOpen: true, noDelay: true })
  socket.on('error', (err) => {
    process.stderr.write(`reverselb stdinproxy: ${argv.endpoint}: ${err.message}\n`)
    process.exit(1)
  })
  // Half-close in both directions, so `ssh` and `printf ... |` both see a clean end.
  process.stdin.pipe(socket)
  socket.pipe(process.stdout)
  socket.on('close', () => process.exit(0))
}
