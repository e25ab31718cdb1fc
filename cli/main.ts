#!/usr/bin/env node
import './gc-tuning.js'
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { LOG_LEVELS } from '../protocol/index.js'
import { UsageError, env } from './env.js'
import type { LogLevel } from '../protocol/index.js'
import type { CommandModule } from 'yargs'

export interface GlobalArgs {
  loglevel: LogLevel
  token: string
}

function usageError (message: string): never {
  process.stderr.write(`reverselb: ${message}\nRun "reverselb --help" for usage.\n`)
  process.exit(2)
}

const COMMANDS = {
  server: async () => await import('./server-command.js'),
  tunnel: async () => await import('./tunnel-command.js'),
  stdinproxy: async () => await import('./stdinproxy-command.js'),
  demo: async () => await import('./demo-command.js')
}
type CommandName = keyof typeof COMMANDS

// Only the commands named on the command line are loaded (all of them when none is, for --help
// and errors): a tunnel client then holds none of the server's code in memory, nor the server the
// client's. A word that only looks like a command (a value) loads one more module, nothing else.
const args = hideBin(process.argv)
const names = Object.keys(COMMANDS) as CommandName[]
const named = names.filter(name => args.includes(name))
const commands = await Promise.all((named.length > 0 ? named : names).map(async name => await COMMANDS[name]()))

const cli = yargs(args)
  .scriptName('reverselb')
  .usage('reverselb - create tunnel proxies and load balance traffic between them\n\nUsage: $0 [global options] <command> [command options]')
  .option('loglevel', { alias: 'l', choices: LOG_LEVELS, default: (env('LOGLEVEL') ?? 'info') as LogLevel, describe: 'log level [$LOGLEVEL]', global: true })
  .option('token', { alias: 't', type: 'string', default: env('TOKEN') ?? '', defaultDescription: '$TOKEN', describe: 'shared secret for authorization [$TOKEN]', global: true })
  // Each module's builder adds its options on top of GlobalArgs.
  .command(commands as unknown as CommandModule[])
  .demandCommand(1, 'Missing command: use server, tunnel, stdinproxy or demo')
  .strict()
  .help()
  .alias('help', 'h')
  .version(false)
  .wrap(Math.min(110, process.stdout.columns ?? 110))
  .fail((msg, err) => {
    if (err instanceof UsageError) usageError(err.message)
    if (err !== undefined && err !== null) {
      process.stderr.write(`reverselb: ${err.message}\n`)
      process.exit(1)
    }
    usageError(msg)
  })

cli.parseAsync().catch((err: Error) => {
  if (err instanceof UsageError) usageError(err.message)
  process.stderr.write(`reverselb: ${err.message}\n`)
  process.exit(1)
})
