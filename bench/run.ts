// reverselb benchmark against `ssh -R` (issue 5). See bench/README.md.
//
// Starts on 127.0.0.1: an iperf3 server and a Node backend (echo + stream ports), a private sshd,
// and per configuration and round the tunnel under test as separate processes (reverselb server +
// tunnel clients, or ssh -R), measures, stops it, and goes on with the next configuration (the
// order rotates each round). Prints one table of medians and writes bench/results/latest.{json,md}.
// Everything it starts is stopped on exit, SIGINT, SIGTERM, errors, and by a watchdog; a reaper
// process also stops it if this process is killed outright.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs'
import { cpus, hostname, release, totalmem, userInfo } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  RAISE_NOFILE, comm, cpuSeconds, descendants, isListening, killAllSync, log, median, peakSampler, procs, rss, run,
  setPgidFile, start, stop, stopAll, tlsFingerprint, waitListen
} from './lib.js'
import { start as startProcess } from '../test/fixtures/process.js'
import type { Proc } from './lib.js'

// ---------------------------------------------------------------------------------------------
// Settings (environment)
// ---------------------------------------------------------------------------------------------
const HERE = dirname(fileURLToPath(import.meta.url)) // dist/bench
const ROOT = resolve(HERE, '../..')
const env = process.env
const int = (name: string, d: number): number => {
  const v = env[name]
  if (v === undefined || v === '') return d
  const n = Number(v)
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number`)
  return n
}
const list = (name: string, d: string): string[] => (env[name] ?? d).split(/[\s,]+/).filter(s => s !== '')
/** `--node PATH` on the command line (`npm run bench -- --node PATH`), else BENCH_NODE, else this Node. */
const argNode = ((): string | undefined => {
  try {
    return parseArgs({ options: { node: { type: 'string' } } }).values.node
  } catch (err) {
    throw new Error(`${(err as Error).message} (known: --node PATH; everything else is set by environment, see bench/README.md)`)
  }
})()

const DEFAULT_CONFIGS = ['raw', 'ssh', 'ssh_nodelay', 'node_proxy', 'yamux', 'mplex']
/**
 * raw | ssh | ssh_nodelay | node_proxy (a plain Node TCP forwarder: the floor for Node) | yamux | mplex | e2e | http | http_e2e |
 * NAME=KIND[:CLI]: the last form runs another reverselb build (CLI = path of its dist/cli/main.js)
 * as its own column, e.g. to compare two builds in one run.
 */
type Config = string
interface TunnelCfg { name: string, muxer: 'yamux' | 'mplex', cli: string, node: string, args: string[] }
/**
 * reverselb columns besides the bare muxers (issue 15): yamux in the end-to-end layer over the
 * WebSocket, and over the HTTP transport (streaming GET + POSTs) without and with the layer.
 */
const TUNNEL_KINDS: Record<string, { muxer: 'yamux' | 'mplex', args: string[] }> = {
  yamux: { muxer: 'yamux', args: [] },
  mplex: { muxer: 'mplex', args: [] },
  e2e: { muxer: 'yamux', args: ['--e2e', 'always'] },
  http: { muxer: 'yamux', args: ['--transport', 'http', '--e2e', 'never'] },
  http_e2e: { muxer: 'yamux', args: ['--transport', 'http', '--e2e', 'always'] }
}
const ALL_TESTS = ['bulk', 'rtt', 'rate', 'rr', 'http', 'slow', 'scale'] as const
type Test = typeof ALL_TESTS[number]

const S = {
  runs: int('RUNS', 3),
  configSpecs: list('CONFIGS', DEFAULT_CONFIGS.join(' ')),
  tests: list('TESTS', ALL_TESTS.join(' ')) as Test[],
  portBase: int('PORT_BASE', 24400),
  bulkSecs: int('BULK_SECS', 5),
  bulkStreams: int('BULK_STREAMS', 8),
  bulkModes: list('BULK_MODES', '1up 1down Nup'),
  rttCount: int('RTT_COUNT', 10000),
  rttWarmup: int('RTT_WARMUP', 2000),
  msgSize: int('MSG_SIZE', 64),
  rateSecs: int('RATE_SECS', 5),
  rateConc: int('RATE_CONC', 16),
  rrSecs: int('RR_SECS', 5),
  rrConc: int('RR_CONC', 50),
  rrSize: int('RR_SIZE', 100),
  httpSecs: int('HTTP_SECS', 5),
  httpConc: int('HTTP_CONC', 64),
  warmupSecs: int('WARMUP_SECS', 1),
  rateWarmupSecs: int('RATE_WARMUP_SECS', 3),
  scaleConns: int('SCALE_CONNS', 10_000),
  scaleConc: int('SCALE_CONC', 200),
  scaleSettleMs: int('SCALE_SETTLE_MS', 1000),
  slowSecs: int('SLOW_SECS', 5),
  slowRate: int('SLOW_RATE', 1_000_000),
  readyTimeoutMs: int('READY_TIMEOUT', 20) * 1000,
  sshCipher: env.SSH_CIPHER ?? '',
  cli: resolve(env.REVERSELB_CLI ?? join(ROOT, 'dist/cli/main.js')),
  /** Node binary of the reverselb processes (server, tunnel clients); loads and backends run under this process's Node. */
  node: resolve(argNode ?? (env.BENCH_NODE !== undefined && env.BENCH_NODE !== '' ? env.BENCH_NODE : process.execPath)),
  nodeArgs: list('RLB_NODE_ARGS', ''),
  profileDir: env.PROFILE_DIR !== undefined && env.PROFILE_DIR !== '' ? resolve(env.PROFILE_DIR) : undefined,
  resultsDir: resolve(env.RESULTS_DIR ?? join(ROOT, 'bench/results')),
  resultsName: env.RESULTS_NAME ?? 'latest',
  keepTmp: env.KEEP_TMP === '1',
  label: env.BENCH_LABEL ?? ''
}
/** Configurations that are not reverselb. */
const REFERENCES = ['raw', 'ssh', 'ssh_nodelay', 'node_proxy']
const TUNNELS = new Map<string, TunnelCfg>()
const CONFIGS: Config[] = S.configSpecs.map(spec => {
  if (REFERENCES.includes(spec)) return spec
  const m = /^(?:([\w.-]+)=)?([a-z_0-9]+)(?::(.+))?$/.exec(spec)
  const kind = TUNNEL_KINDS[m?.[2] ?? '']
  if (m === null || kind === undefined) throw new Error(`unknown config ${spec} (${REFERENCES.join(', ')}, ${Object.keys(TUNNEL_KINDS).join(', ')} or NAME=KIND[:CLI])`)
  const name = m[1] ?? m[2]
  const node = env[`BENCH_NODE_${name.replace(/\W/g, '_')}`]
  TUNNELS.set(name, { name, ...kind, cli: resolve(m[3] ?? S.cli), node: node !== undefined && node !== '' ? resolve(node) : S.node })
  return name
})
if (new Set(CONFIGS).size !== CONFIGS.length) throw new Error('CONFIGS names must be unique')
for (const t of S.tests) if (!(ALL_TESTS as readonly string[]).includes(t)) throw new Error(`unknown test ${t} (known: ${ALL_TESTS.join(' ')})`)
const perConfigS = 3 * (S.bulkSecs + 25) + S.rateSecs + S.rateWarmupSecs + 40 + S.rrSecs + S.httpSecs + 2 * S.warmupSecs + 60 + 2 * (S.slowSecs + 25) + 150
const MAX_SECONDS = int('MAX_SECONDS', 120 + S.runs * CONFIGS.length * perConfigS)

const P = S.portBase
const PORTS = {
  iperf: P + 1,
  echo: P + 2,
  stream: P + 3,
  sshd: P + 4,
  http: P + 5,
  ssh: { iperf: P + 11, echo: P + 12, stream: P + 13, http: P + 14 },
  ssh_nodelay: { iperf: P + 21, echo: P + 22, stream: P + 23, http: P + 24 },
  node_proxy: { iperf: P + 25, echo: P + 26, stream: P + 27, http: P + 28 }
}
/** Ports of the i-th reverselb configuration: API, three fronts, and its (unused) dynamic pool. */
const tunnelPorts = (name: string): { api: number, iperf: number, echo: number, stream: number, http: number, dyn: number } => {
  const b = P + 30 + 10 * [...TUNNELS.keys()].indexOf(name)
  return { api: b, iperf: b + 1, echo: b + 2, stream: b + 3, http: b + 4, dyn: b + 5 }
}
const TOKEN = 'bench-token-' + String(process.pid)
const LOADGEN = join(HERE, 'loadgen.js')
const BACKEND = join(HERE, 'backend.js')
const NODE_PROXY = join(HERE, 'node-proxy.js')
const HTTP_BACKEND = join(HERE, 'http-backend.js')

// ---------------------------------------------------------------------------------------------
// Cleanup: traps, watchdog, reaper
// ---------------------------------------------------------------------------------------------
const TMP = mkdtempSync('/tmp/reverselb-bench.')
const PGIDS = join(TMP, 'pgids')
writeFileSync(PGIDS, '')
setPgidFile(PGIDS)
let createdRunSshd = false
let failed = false

function finalCleanupSync (): void {
  killAllSync()
  if (createdRunSshd) { try { rmdirSync('/run/sshd') } catch { /* not empty or gone */ } createdRunSshd = false }
}
process.on('exit', finalCleanupSync)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    log(`${sig} received: stopping everything`)
    stopAll().finally(() => { finalCleanupSync(); process.exit(130) })
    setTimeout(() => { finalCleanupSync(); process.exit(130) }, 8000).unref()
  })
}
process.on('uncaughtException', (err) => { log(`uncaught: ${err.stack ?? err.message}`); finalCleanupSync(); process.exit(1) })
process.on('unhandledRejection', (err) => { log(`unhandled rejection: ${String(err)}`); finalCleanupSync(); process.exit(1) })
setTimeout(() => {
  log(`watchdog: MAX_SECONDS=${MAX_SECONDS} exceeded; stopping everything`)
  stopAll().finally(() => { finalCleanupSync(); process.exit(4) })
}, MAX_SECONDS * 1000).unref()

// The reaper outlives a SIGKILLed bench: it then stops the process groups still listed in PGIDS.
// Its output goes to /dev/null: a pipe would keep this process's event loop (and so the reaper) alive.
const reaper = startProcess('reaper', 'bash', ['-c', `
  while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done
  for sig in TERM KILL; do
    while read -r pg; do [ -n "$pg" ] && { kill -$sig -- -$pg 2>/dev/null; kill -$sig $pg 2>/dev/null; }; done < '${PGIDS}'
    sleep 2
  done
  exit 0`], { detached: true, logFile: '/dev/null' })
reaper.child.unref()
/** Keeps the reaper's list to what is still running, so it never signals a recycled PID. */
const syncPgids = (): void => { try { writeFileSync(PGIDS, procs.map(p => `${p.pid}\n`).join('')) } catch { /* tmp gone */ } }

// ---------------------------------------------------------------------------------------------
// Backends and sshd (started once)
// ---------------------------------------------------------------------------------------------
const SSH_USER = userInfo().username
let sshdProc: Proc | undefined

async function startBackends (): Promise<void> {
  const iperf = start('iperf3-server', join(TMP, 'iperf3-server.log'), 'iperf3', ['-s', '-B', '127.0.0.1', '-p', String(PORTS.iperf)])
  const backend = start('backend', join(TMP, 'backend.log'), process.execPath, [BACKEND, String(PORTS.echo), String(PORTS.stream), '127.0.0.1'])
  // The HTTP backend has its own process, so it does not share a CPU's event loop with the echo one.
  const http = start('http-backend', join(TMP, 'http-backend.log'), process.execPath, [HTTP_BACKEND, String(PORTS.http), '127.0.0.1'])
  await waitListen(PORTS.iperf, iperf, S.readyTimeoutMs)
  await waitListen(PORTS.echo, backend, S.readyTimeoutMs)
  await waitListen(PORTS.stream, backend, S.readyTimeoutMs)
  await waitListen(PORTS.http, http, S.readyTimeoutMs)
}

async function startSshd (): Promise<void> {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-host', '-f', join(TMP, 'ssh_host_ed25519_key')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-client', '-f', join(TMP, 'client_ed25519')])
  writeFileSync(join(TMP, 'authorized_keys'), readFileSync(join(TMP, 'client_ed25519.pub')), { mode: 0o600 })
  writeFileSync(join(TMP, 'sshd_config'), [
    '# private sshd for the reverselb bench: loopback only, key auth only',
    `Port ${PORTS.sshd}`, 'ListenAddress 127.0.0.1',
    `HostKey ${join(TMP, 'ssh_host_ed25519_key')}`, `PidFile ${join(TMP, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(TMP, 'authorized_keys')}`,
    'StrictModes no', 'PermitRootLogin prohibit-password', 'PubkeyAuthentication yes',
    'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'GatewayPorts no',
    'AllowTcpForwarding yes', 'AllowStreamLocalForwarding no', 'X11Forwarding no', 'PermitTTY no',
    'PrintMotd no', 'LogLevel ERROR', ''
  ].join('\n'))
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) {
    mkdirSync('/run/sshd', { mode: 0o755 })
    createdRunSshd = true
  }
  execFileSync('/usr/sbin/sshd', ['-t', '-f', join(TMP, 'sshd_config')])
  sshdProc = start('sshd', join(TMP, 'sshd.log'), '/usr/sbin/sshd', ['-D', '-e', '-f', join(TMP, 'sshd_config')])
  await waitListen(PORTS.sshd, sshdProc, S.readyTimeoutMs)
}

function sshOpts (): string[] {
  return ['-F', 'none', '-T', '-p', String(PORTS.sshd), '-i', join(TMP, 'client_ed25519'),
    '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR',
    ...(S.sshCipher !== '' ? ['-c', S.sshCipher] : [])]
}

// ---------------------------------------------------------------------------------------------
// Tunnel setups
// ---------------------------------------------------------------------------------------------
type Kind = 'iperf' | 'echo' | 'stream' | 'http'
const KINDS: Kind[] = ['iperf', 'echo', 'stream', 'http']
interface Setup {
  fronts: Record<Kind, number>
  serverRss: () => number
  clientRss: (kind: Kind) => number
  /** CPU seconds used so far by the tunnel's server side plus its client side for `kind`. */
  cpu: (kind: Kind) => number
  /** reverselb only: CPU seconds used so far by the server process alone (the client's is cpu - this). */
  serverCpu?: () => number
  stop: () => Promise<void>
}

async function ready (fronts: Record<Kind, number>, owner: Proc): Promise<void> {
  for (const k of KINDS) await waitListen(fronts[k], owner, S.readyTimeoutMs)
  for (const k of ['echo', 'stream', 'http'] as const) {
    await run(process.execPath, [LOADGEN, 'probe', String(fronts[k]), String(S.readyTimeoutMs / 1000), k], S.readyTimeoutMs + 5000)
  }
}

const helpCache = new Map<string, string>()
/** Whether a reverselb build's `COMMAND --help` lists OPTION (older builds lack some). */
function cliHasOption (node: string, cli: string, command: string, option: string): boolean {
  const key = `${node} ${cli} ${command}`
  if (!helpCache.has(key)) {
    try {
      helpCache.set(key, execFileSync(node, [cli, command, '--help'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'ignore'] }))
    } catch {
      helpCache.set(key, '')
    }
  }
  return (helpCache.get(key) ?? '').includes(option)
}

let instance = 0
async function setup (cfg: Config, round: number): Promise<Setup> {
  instance++
  if (cfg === 'raw') {
    return { fronts: { iperf: PORTS.iperf, echo: PORTS.echo, stream: PORTS.stream, http: PORTS.http }, serverRss: () => NaN, clientRss: () => NaN, cpu: () => NaN, stop: async () => {} }
  }
  if (cfg === 'node_proxy') {
    const f = PORTS.node_proxy
    const p = start(cfg, join(TMP, `${cfg}-${instance}.log`), process.execPath, [NODE_PROXY, ...KINDS.map(k => `${f[k]}:${PORTS[k]}`)])
    syncPgids()
    const stopIt = async (): Promise<void> => { await stop(p); syncPgids() }
    try { await ready(f, p) } catch (err) { await stopIt(); throw err }
    return { fronts: { iperf: f.iperf, echo: f.echo, stream: f.stream, http: f.http }, serverRss: () => rss(p.pid), clientRss: () => NaN, cpu: () => cpuSeconds(p.pid), stop: stopIt }
  }
  if (cfg === 'ssh' || cfg === 'ssh_nodelay') {
    const f = PORTS[cfg]
    const forwards = KINDS.flatMap(k => ['-R', `${f[k]}:127.0.0.1:${PORTS[k]}`])
    const logf = join(TMP, `${cfg}-${instance}.log`)
    // ssh -N never calls set_nodelay(); a no-op remote session (fed by an idle pipe) makes OpenSSH
    // disable Nagle on both ends, see ../shared/bench/README.md.
    const p = cfg === 'ssh'
      ? start(cfg, logf, 'ssh', [...sshOpts(), '-N', ...forwards, `${SSH_USER}@127.0.0.1`])
      : start(cfg, logf, 'bash', ['-c', 'sleep 86400 | exec "$@"', '_', 'ssh', ...sshOpts(), ...forwards, `${SSH_USER}@127.0.0.1`, 'exec cat >/dev/null'])
    syncPgids()
    const stopIt = async (): Promise<void> => { await stop(p); syncPgids() }
    try { await ready(f, p) } catch (err) { await stopIt(); throw err }
    const sshPid = (): number => cfg === 'ssh' ? p.pid : (descendants(p.pid).find(pid => comm(pid) === 'ssh') ?? p.pid)
    const sshdPid = sshdProc?.pid ?? -1
    return {
      fronts: { iperf: f.iperf, echo: f.echo, stream: f.stream, http: f.http },
      // every sshd process below the listener belongs to this (the only) ssh connection
      serverRss: () => descendants(sshdPid).reduce((sum, pid) => sum + rss(pid), 0),
      clientRss: () => rss(sshPid()),
      cpu: () => [sshPid(), ...descendants(sshdPid)].reduce((sum, pid) => sum + cpuSeconds(pid), 0),
      stop: stopIt
    }
  }
  const tc = TUNNELS.get(cfg)
  if (tc === undefined) throw new Error(`unknown config ${cfg}`)
  const f = tunnelPorts(cfg)
  const tag = `${cfg}-r${round}-${instance}`
  const nodeArgs = (role: string): string[] => [
    ...S.nodeArgs,
    ...list(`RLB_NODE_ARGS_${cfg.replace(/\W/g, '_')}`, ''),
    ...(S.profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${join(S.profileDir, `${tag}-${role}`)}`] : []),
    tc.cli, '-t', TOKEN
  ]
  // The 10k test opens one connection more than the default per-session cap (10,000).
  const limits = cliHasOption(tc.node, tc.cli, 'server', '--maxstreams') ? ['--maxstreams', String(S.scaleConns + 100)] : []
  const server = start(`${cfg}-server`, join(TMP, `${tag}-server.log`), tc.node, [...nodeArgs('server'), 'server',
    '-p', String(f.api), '--host', '127.0.0.1', '--frontendhost', '127.0.0.1', '--dynport', String(f.dyn), '--dynportcount', '4', ...limits])
  const tunnels: Partial<Record<Kind, Proc>> = {}
  const all = [server]
  syncPgids()
  const stopIt = async (): Promise<void> => {
    for (const p of [...all].reverse()) await stop(p, S.profileDir !== undefined ? 15_000 : 5000)
    syncPgids()
  }
  try {
    await waitListen(f.api, server, S.readyTimeoutMs)
    // Pinned, as the README has users do with the self-signed certificate.
    const fingerprint = await tlsFingerprint(f.api, S.readyTimeoutMs)
    for (const k of KINDS) {
      const t = start(`${cfg}-tunnel-${k}`, join(TMP, `${tag}-tunnel-${k}.log`), tc.node, [...nodeArgs(`tunnel-${k}`), 'tunnel',
        '-e', `127.0.0.1:${f.api}`, '-p', String(f[k]), '-b', `127.0.0.1:${PORTS[k]}`, '-s', `bench-${k}`, '--fingerprint', fingerprint, '--mux', tc.muxer, ...tc.args])
      tunnels[k] = t
      all.push(t)
    }
    syncPgids()
    await ready({ iperf: f.iperf, echo: f.echo, stream: f.stream, http: f.http }, server)
  } catch (err) {
    await stopIt()
    throw err
  }
  return {
    fronts: { iperf: f.iperf, echo: f.echo, stream: f.stream, http: f.http },
    serverRss: () => rss(server.pid),
    clientRss: (k) => rss(tunnels[k]?.pid ?? -1),
    cpu: (k) => cpuSeconds(server.pid) + cpuSeconds(tunnels[k]?.pid ?? -1),
    serverCpu: () => cpuSeconds(server.pid),
    stop: stopIt
  }
}

// ---------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------
type Metrics = Record<string, number | boolean | string | undefined>
const MB = 1e6

async function iperf (port: number, streams: number, reverse: boolean): Promise<{ MBps: number, bytes: number }> {
  let lastErr: Error | undefined
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(S.bulkSecs), '--connect-timeout', '5000', '-J',
        ...(streams > 1 ? ['-P', String(streams)] : []), ...(reverse ? ['-R'] : [])]
      const outText = await run('iperf3', args, (S.bulkSecs + 20) * 1000, join(TMP, 'iperf-client.log'))
      const j = JSON.parse(outText) as { error?: string, end: { sum_received: { bits_per_second: number, bytes: number } } }
      if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`)
      return { MBps: Math.round(j.end.sum_received.bits_per_second / 8 / MB * 10) / 10, bytes: j.end.sum_received.bytes }
    } catch (err) {
      lastErr = err as Error
      log(`  iperf3 via ${port} failed (attempt ${attempt}): ${lastErr.message}`)
      await sleep(1000)
    }
  }
  throw lastErr ?? new Error('iperf3 failed')
}

async function loadgen (args: string[], timeoutMs: number): Promise<Record<string, unknown>> {
  const outText = await run(process.execPath, [LOADGEN, ...args], timeoutMs, join(TMP, 'loadgen.log'))
  return JSON.parse(outText.trim().split('\n').pop() ?? '{}') as Record<string, unknown>
}

async function attempt (m: Metrics, what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn()
  } catch (err) {
    failed = true
    m[`${what}_error`] = (err as Error).message
    log(`  ${what} FAILED: ${(err as Error).message}`)
  }
}

async function testsA (s: Setup, m: Metrics): Promise<void> {
  if (S.tests.includes('bulk')) {
    const bulk = async (key: string, streams: number, reverse: boolean): Promise<void> => {
      await attempt(m, key, async () => {
        const cpu0 = s.cpu('iperf')
        const server0 = s.serverCpu?.() ?? NaN
        const r = await iperf(s.fronts.iperf, streams, reverse)
        m[`${key}_MBps`] = r.MBps
        // CPU seconds the tunnel (both ends) spent per GB moved: steadier than throughput on a busy machine
        const cpu = s.cpu('iperf') - cpu0
        const perGB = (seconds: number): number => Math.round(seconds / (r.bytes / 1e9) * 100) / 100
        if (Number.isFinite(cpu) && r.bytes > 0) m[`${key}_cpu_s_per_GB`] = perGB(cpu)
        // Each end on its own (in the JSON only): which side a change moved.
        const server = (s.serverCpu?.() ?? NaN) - server0
        if (Number.isFinite(server) && r.bytes > 0) {
          m[`${key}_server_cpu_s_per_GB`] = perGB(server)
          m[`${key}_client_cpu_s_per_GB`] = perGB(cpu - server)
        }
      })
    }
    if (S.bulkModes.includes('1up')) await bulk('bulk1_up', 1, false)
    if (S.bulkModes.includes('1down')) await bulk('bulk1_down', 1, true)
    if (S.bulkModes.includes('Nup')) await bulk('bulkN_up', S.bulkStreams, false)
    log(`  bulk MB/s: 1 up ${String(m.bulk1_up_MBps)}, 1 down ${String(m.bulk1_down_MBps)}, ${S.bulkStreams} up ${String(m.bulkN_up_MBps)}; tunnel CPU s/GB: ${String(m.bulk1_up_cpu_s_per_GB)}, ${String(m.bulk1_down_cpu_s_per_GB)}, ${String(m.bulkN_up_cpu_s_per_GB)}`)
  }
  if (S.tests.includes('rtt')) {
    await attempt(m, 'rtt', async () => {
      const r = await loadgen(['rtt', String(s.fronts.echo), String(S.rttCount), String(S.msgSize), String(S.rttWarmup)], 90_000)
      m.rtt_median_us = r.median_us as number
      m.rtt_p99_us = r.p99_us as number
      log(`  rtt: median ${String(r.median_us)} us, p99 ${String(r.p99_us)} us, max ${String(r.max_us)} us`)
    })
  }
  if (S.tests.includes('scale')) {
    // reference for the scale test's busy connection: the same transfer with no idle connections
    await attempt(m, 'echo', async () => {
      const r = await loadgen(['echobulk', String(s.fronts.echo), String(S.bulkSecs)], (S.bulkSecs + 30) * 1000)
      m.echo_MBps = r.echo_MBps as number
      log(`  echo transfer alone: ${String(r.echo_MBps)} MB/s`)
    })
  }
  if (S.tests.includes('rate')) {
    await attempt(m, 'rate', async () => {
      // An untimed lead-in: V8 compiles the connection path in the first seconds of load, so the
      // timed part (and its CPU) is what a tunnel that has been running pays, like the rr/http rows.
      if (S.rateWarmupSecs > 0) await loadgen(['rate', String(s.fronts.echo), String(S.rateWarmupSecs), String(S.rateConc), String(S.msgSize)], (S.rateWarmupSecs + 40) * 1000)
      const cpu0 = s.cpu('echo')
      const r = await loadgen(['rate', String(s.fronts.echo), String(S.rateSecs), String(S.rateConc), String(S.msgSize)], (S.rateSecs + 40) * 1000)
      const cpu = s.cpu('echo') - cpu0
      m.conn_per_s = r.conn_per_s as number
      m.rate_errors = r.errors as number
      // CPU the tunnel (both ends) spent per connection, in microseconds
      if (Number.isFinite(cpu) && (r.ok as number) > 0) m.conn_cpu_us = Math.round(cpu / (r.ok as number) * 1e6)
      log(`  rate: ${String(r.conn_per_s)} conn/s (${String(r.errors)} errors), tunnel CPU ${String(m.conn_cpu_us)} us per connection`)
    })
  }
  if (S.tests.includes('rr')) {
    await attempt(m, 'rr', async () => {
      const cpu0 = s.cpu('echo')
      const r = await loadgen(['rr', String(s.fronts.echo), String(S.rrSecs), String(S.rrConc), String(S.rrSize), String(S.warmupSecs)], (S.rrSecs + S.warmupSecs + 30) * 1000)
      const cpu = s.cpu('echo') - cpu0
      m.rr_rps = r.rps as number
      m.rr_p50_us = r.p50_us as number
      m.rr_p99_us = r.p99_us as number
      // CPU the tunnel (both ends) spent per request, over the whole run (warm-up included in both)
      if (Number.isFinite(cpu) && (r.all as number) > 0) m.rr_cpu_us = Math.round(cpu / (r.all as number) * 1e7) / 10
      log(`  request/response (${S.rrConc} conns, ${S.rrSize} B): ${String(r.rps)} req/s, p50 ${String(r.p50_us)} us, p99 ${String(r.p99_us)} us, tunnel CPU ${m.rr_cpu_us === undefined ? 'n/a' : String(m.rr_cpu_us)} us per request`)
    })
  }
  if (S.tests.includes('http')) {
    await attempt(m, 'http', async () => {
      const r = await loadgen(['http', String(s.fronts.http), String(S.httpSecs), String(S.httpConc), String(S.warmupSecs)], (S.httpSecs + S.warmupSecs + 30) * 1000)
      m.http_rps = r.rps as number
      m.http_p50_us = r.p50_us as number
      m.http_p99_us = r.p99_us as number
      log(`  keep-alive HTTP (${S.httpConc} conns): ${String(r.rps)} req/s, p50 ${String(r.p50_us)} us, p99 ${String(r.p99_us)} us`)
    })
  }
}

async function testSlow (s: Setup, m: Metrics): Promise<void> {
  await attempt(m, 'slow', async () => {
    const solo = await loadgen(['solo', String(s.fronts.stream), String(S.slowSecs)], (S.slowSecs + 30) * 1000)
    m.slow_solo_MBps = solo.fast_MBps as number
    m.slow_server_base_rss_MB = Math.round(s.serverRss() / MB)
    m.slow_client_base_rss_MB = Math.round(s.clientRss('stream') / MB)
    const ps = peakSampler(() => s.serverRss())
    const pc = peakSampler(() => s.clientRss('stream'))
    let r: Record<string, unknown>
    try {
      r = await loadgen(['slow', String(s.fronts.stream), String(S.slowSecs), String(S.slowRate)], (S.slowSecs + 30) * 1000)
    } finally {
      m.slow_server_peak_rss_MB = Math.round(ps.stop() / MB)
      m.slow_client_peak_rss_MB = Math.round(pc.stop() / MB)
    }
    m.slow_fast_MBps = r.fast_MBps as number
    m.slow_slow_MBps = r.slow_MBps as number
    m.slow_slow_ok = r.slow_ok as boolean
    m.slow_kept = Math.round((r.fast_MBps as number) / (solo.fast_MBps as number) * 1000) / 1000
    log(`  slow reader: fast ${String(r.fast_MBps)} MB/s vs solo ${String(solo.fast_MBps)} (kept ${String(m.slow_kept)}), slow ${String(r.slow_MBps)} MB/s ok=${String(r.slow_ok)}, peak RSS server ${String(m.slow_server_peak_rss_MB)} MB client ${String(m.slow_client_peak_rss_MB)} MB`)
  })
}

async function testScale (s: Setup, m: Metrics): Promise<void> {
  await attempt(m, 'scale', async () => {
    m.scale_server_base_rss_MB = Math.round(s.serverRss() / MB)
    m.scale_client_base_rss_MB = Math.round(s.clientRss('echo') / MB)
    const holdS = 60 + S.scaleSettleMs / 1000
    const scaleGen = startProcess('scale loadgen', 'bash', ['-c', RAISE_NOFILE, 'bench-scale', process.execPath, LOADGEN,
      'scale', String(s.fronts.echo), String(S.scaleConns), String(S.scaleConc), String(holdS)], { detached: true, stdin: 'pipe' })
    const p: Proc = { name: 'loadgen-scale', pid: scaleGen.pid, child: scaleGen.child, logFile: '', exited: scaleGen.closed.then(r => r.code) }
    procs.push(p)
    syncPgids()
    try {
      const ps = peakSampler(() => s.serverRss(), 200)
      const pc = peakSampler(() => s.clientRss('echo'), 200)
      // Its one report, a JSON line on stdout, once every connection is open.
      await scaleGen.waitFor(/^\{.*\}\n/m, 150_000)
      const r = JSON.parse(scaleGen.stdout.split('\n')[0]) as { open_s: number, ok: number, errors: number }
      await sleep(S.scaleSettleMs) // let both sides settle with all connections idle
      m.scale_open_s = r.open_s
      m.scale_ok = r.ok
      m.scale_errors = r.errors
      m.scale_server_rss_MB = Math.round(s.serverRss() / MB)
      m.scale_client_rss_MB = Math.round(s.clientRss('echo') / MB)
      m.scale_server_peak_rss_MB = Math.round(ps.stop() / MB)
      m.scale_client_peak_rss_MB = Math.round(pc.stop() / MB)
      // ssh -R drops a few of 10,000 connections (its accept loop is slower than the clients' 15 s
      // timeout); that is its figure, kept in scale_errors. Below 99% the test failed.
      if (r.ok < S.scaleConns * 0.99) throw new Error(`only ${r.ok} of ${S.scaleConns} connections opened (${r.errors} errors)`)
      log(`  scale: ${r.ok} idle connections in ${r.open_s} s, RSS server ${String(m.scale_server_rss_MB)} MB (peak ${String(m.scale_server_peak_rss_MB)}), client ${String(m.scale_client_rss_MB)} MB (peak ${String(m.scale_client_peak_rss_MB)})`)
      // One busy connection through the same tunnel connection as the idle ones.
      const busy = await loadgen(['echobulk', String(s.fronts.echo), String(S.bulkSecs)], (S.bulkSecs + 30) * 1000)
      m.scale_busy_echo_MBps = busy.echo_MBps as number
      log(`  scale: one echo transfer beside them: ${String(busy.echo_MBps)} MB/s`)
      scaleGen.child.stdin?.write('close\n')
      await Promise.race([p.exited, sleep(20_000)])
    } finally {
      await stop(p)
      syncPgids()
    }
  })
}

async function measure (cfg: Config, round: number): Promise<Metrics> {
  const m: Metrics = {}
  const groups: Array<[string, (s: Setup) => Promise<void>]> = []
  if (S.tests.some(t => t === 'bulk' || t === 'rtt' || t === 'rate' || t === 'rr' || t === 'http' || t === 'scale')) groups.push(['bulk/rtt/rate/rr/http', async (s) => await testsA(s, m)])
  // Memory figures come from fresh processes, so they are not inflated by the tests before.
  if (S.tests.includes('slow')) groups.push(['slow', async (s) => await testSlow(s, m)])
  // The Node proxy holds both ends of every connection in one process: 10,000 of them need more
  // descriptors than a common limit (20,000 here) allows, so it would only measure EMFILE.
  if (S.tests.includes('scale') && cfg !== 'node_proxy') groups.push(['scale', async (s) => await testScale(s, m)])
  for (const [name, fn] of groups) {
    let s: Setup
    try {
      s = await setup(cfg, round)
    } catch (err) {
      failed = true
      m[`setup_${name}_error`] = (err as Error).message
      log(`  ${cfg}: setup for ${name} failed: ${(err as Error).message}`)
      continue
    }
    m.idle_server_rss_MB ??= Math.round(s.serverRss() / MB)
    m.idle_client_rss_MB ??= Math.round(s.clientRss('echo') / MB)
    try { await fn(s) } finally { await s.stop() }
  }
  return m
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------
interface Row { key: string, label: string, better: 'higher' | 'lower', ref: Config, target?: string, digits: number }
const ROWS: Row[] = [
  { key: 'bulk1_up_MBps', label: 'bulk, 1 stream, front→backend (MB/s)', better: 'higher', ref: 'ssh', target: '≥ 1.3', digits: 0 },
  { key: 'bulk1_down_MBps', label: 'bulk, 1 stream, backend→front (MB/s)', better: 'higher', ref: 'ssh', target: '≥ 1.3', digits: 0 },
  { key: 'bulkN_up_MBps', label: `bulk, ${S.bulkStreams} streams, front→backend (MB/s)`, better: 'higher', ref: 'ssh', target: '≥ 1.0', digits: 0 },
  { key: 'bulk1_up_cpu_s_per_GB', label: 'tunnel CPU per GB, 1 stream front→backend (s, both ends)', better: 'lower', ref: 'ssh', digits: 2 },
  { key: 'bulk1_down_cpu_s_per_GB', label: 'tunnel CPU per GB, 1 stream backend→front (s, both ends)', better: 'lower', ref: 'ssh', digits: 2 },
  { key: 'rtt_median_us', label: `RTT median, ${S.msgSize} B echo (µs)`, better: 'lower', ref: 'ssh', digits: 0 },
  { key: 'rtt_added_us', label: 'added RTT median vs direct (µs)', better: 'lower', ref: 'ssh', target: '≤ 1.0', digits: 0 },
  { key: 'rtt_p99_us', label: 'RTT p99 (µs)', better: 'lower', ref: 'ssh', digits: 0 },
  { key: 'conn_per_s', label: `new connections/s (${S.rateConc} concurrent), ratio vs ssh_nodelay`, better: 'higher', ref: 'ssh_nodelay', target: '≥ 1.0', digits: 0 },
  { key: 'conn_cpu_us', label: 'tunnel CPU per connection (µs, both ends), ratio vs ssh_nodelay', better: 'lower', ref: 'ssh_nodelay', digits: 0 },
  { key: 'rr_rps', label: `request/response, ${S.rrConc} connections, ${S.rrSize} B each way (req/s), ratio vs ssh_nodelay`, better: 'higher', ref: 'ssh_nodelay', target: '≥ 1.2', digits: 0 },
  { key: 'rr_p50_us', label: 'request/response: p50 latency (µs), ratio vs ssh_nodelay', better: 'lower', ref: 'ssh_nodelay', digits: 0 },
  { key: 'rr_p99_us', label: 'request/response: p99 latency (µs), ratio vs ssh_nodelay', better: 'lower', ref: 'ssh_nodelay', target: '≤ 1.0', digits: 0 },
  { key: 'rr_cpu_us', label: 'request/response: tunnel CPU per request (µs, both ends), ratio vs ssh_nodelay', better: 'lower', ref: 'ssh_nodelay', digits: 1 },
  { key: 'http_rps', label: `keep-alive HTTP, ${S.httpConc} connections, node:http backend (req/s), ratio vs ssh_nodelay`, better: 'higher', ref: 'ssh_nodelay', digits: 0 },
  { key: 'http_p50_us', label: 'keep-alive HTTP: p50 latency (µs), ratio vs ssh_nodelay', better: 'lower', ref: 'ssh_nodelay', digits: 0 },
  { key: 'http_p99_us', label: 'keep-alive HTTP: p99 latency (µs), ratio vs ssh_nodelay', better: 'lower', ref: 'ssh_nodelay', digits: 0 },
  { key: 'scale_open_s', label: `${S.scaleConns} idle connections: time to open (s)`, better: 'lower', ref: 'ssh', digits: 2 },
  { key: 'scale_errors', label: `${S.scaleConns} idle connections: connections that failed to open`, better: 'lower', ref: 'ssh', digits: 0 },
  { key: 'scale_server_rss_MB', label: `${S.scaleConns} idle connections: server RSS (MB)`, better: 'lower', ref: 'ssh', target: '< 150 MB', digits: 0 },
  { key: 'scale_client_rss_MB', label: `${S.scaleConns} idle connections: client RSS (MB)`, better: 'lower', ref: 'ssh', target: '< 150 MB', digits: 0 },
  { key: 'echo_MBps', label: 'echo transfer, 1 connection, alone (MB/s echoed)', better: 'higher', ref: 'ssh', digits: 0 },
  { key: 'scale_busy_echo_MBps', label: `echo transfer beside the ${S.scaleConns} idle connections (MB/s)`, better: 'higher', ref: 'ssh', digits: 0 },
  { key: 'slow_solo_MBps', label: 'slow reader: fast stream alone (MB/s)', better: 'higher', ref: 'ssh', digits: 0 },
  { key: 'slow_fast_MBps', label: `slow reader: fast stream beside a ${S.slowRate / 1e6} MB/s reader (MB/s)`, better: 'higher', ref: 'ssh', digits: 0 },
  { key: 'slow_slow_MBps', label: `slow reader: the ${S.slowRate / 1e6} MB/s reader itself (MB/s; far below: its connection was cut)`, better: 'higher', ref: 'ssh', target: `${S.slowRate / 1e6}`, digits: 2 },
  { key: 'slow_kept', label: 'slow reader: fast stream kept (fraction of alone)', better: 'higher', ref: 'ssh', target: '≥ 0.90 (abs.)', digits: 2 },
  { key: 'slow_server_peak_rss_MB', label: 'slow reader: server peak RSS (MB)', better: 'lower', ref: 'ssh', target: 'bounded', digits: 0 },
  { key: 'slow_client_peak_rss_MB', label: 'slow reader: client peak RSS (MB)', better: 'lower', ref: 'ssh', target: 'bounded', digits: 0 }
]

function fmt (v: number | undefined, digits: number): string {
  if (v === undefined || !Number.isFinite(v)) return 'n/a'
  return v.toFixed(digits)
}

function nodeVersion (node: string): string {
  try { return execFileSync(node, ['--version'], { encoding: 'utf8', timeout: 20_000 }).trim() } catch { return `? (${node})` }
}

function machine (): Record<string, string | number> {
  const sh = (cmd: string, args: string[]): string => {
    try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim() } catch (err) {
      return ((err as { stderr?: string }).stderr ?? '').trim()
    }
  }
  let cipher = ''
  if (sshdProc !== undefined) {
    const v = sh('bash', ['-c', `timeout 15 ssh -v ${sshOpts().map(a => `'${a}'`).join(' ')} ${SSH_USER}@127.0.0.1 true </dev/null 2>&1 || true`])
    cipher = /kex: server->client cipher: (\S+)/.exec(v)?.[1] ?? ''
  }
  let bufferutil = 'no'
  try { execFileSync(process.execPath, ['-e', 'require("bufferutil")'], { cwd: ROOT, stdio: 'ignore' }); bufferutil = 'yes' } catch { /* missing */ }
  return {
    host: hostname(),
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? '',
    mem_GB: Math.round(totalmem() / 1e9),
    kernel: release(),
    os: sh('bash', ['-c', '. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"']),
    node: process.version,
    // Node of the reverselb processes per tunnel configuration (the load generators and backends run under `node`)
    reverselb_node: [...TUNNELS.values()].map(t => `${t.name}: ${nodeVersion(t.node)}`).join(', '),
    ssh: sh('bash', ['-c', 'ssh -V 2>&1']),
    ssh_cipher: cipher || (S.sshCipher !== '' ? S.sshCipher : 'default'),
    iperf3: sh('iperf3', ['--version']).split('\n')[0],
    bufferutil,
    virtualization: sh('bash', ['-c', 'systemd-detect-virt 2>/dev/null || lscpu | sed -n "s/^Hypervisor vendor: *//p"'])
  }
}

async function main (): Promise<void> {
  for (const cmd of ['iperf3', 'ss', 'ssh', 'ssh-keygen']) {
    try { execFileSync('bash', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }) } catch { throw new Error(`missing ${cmd}: apt-get install -y openssh-server openssh-client iperf3 iproute2`) }
  }
  for (const t of TUNNELS.values()) if (!existsSync(t.cli)) throw new Error(`${t.cli} not found: run npm run build`)
  for (const t of TUNNELS.values()) if (!existsSync(t.node)) throw new Error(`Node binary ${t.node} (config ${t.name}) not found`)
  if (!existsSync(LOADGEN)) throw new Error(`${LOADGEN} not found: run npm run build`)
  const ports = [PORTS.iperf, PORTS.echo, PORTS.stream, PORTS.sshd, PORTS.http]
  for (const c of CONFIGS) {
    if (c === 'ssh' || c === 'ssh_nodelay' || c === 'node_proxy') ports.push(...Object.values(PORTS[c]))
    else if (c !== 'raw') ports.push(...Object.values(tunnelPorts(c)))
  }
  for (const port of ports) if (isListening(port)) throw new Error(`port ${port} is in use (set PORT_BASE)`)

  log(`configs: ${CONFIGS.join(' ')} | tests: ${S.tests.join(' ')} | runs: ${S.runs} | tmp: ${TMP} | watchdog ${MAX_SECONDS} s`)
  await startBackends()
  if (CONFIGS.some(c => c.startsWith('ssh'))) await startSshd()
  syncPgids()
  const started = new Date()
  const rounds: Array<{ round: number, config: Config, metrics: Metrics }> = []
  for (let r = 1; r <= S.runs; r++) {
    const order = CONFIGS.map((_, i) => CONFIGS[(i + r - 1) % CONFIGS.length])
    for (const cfg of order) {
      log(`round ${r}/${S.runs}: ${cfg}`)
      const m = await measure(cfg, r)
      rounds.push({ round: r, config: cfg, metrics: m })
    }
    // added latency: against the direct (raw) figure of the same round
    const raw = rounds.find(x => x.round === r && x.config === 'raw')?.metrics.rtt_median_us
    for (const x of rounds) {
      if (x.round === r && typeof raw === 'number' && typeof x.metrics.rtt_median_us === 'number') {
        x.metrics.rtt_added_us = Math.round((x.metrics.rtt_median_us - raw) * 10) / 10
      }
    }
  }

  const medians: Record<string, Record<string, number | undefined>> = {}
  for (const c of CONFIGS) {
    medians[c] = {}
    for (const row of ROWS) {
      medians[c][row.key] = median(rounds.filter(x => x.config === c).map(x => x.metrics[row.key]).filter((v): v is number => typeof v === 'number'))
    }
  }
  // A row's reference is ssh or ssh_nodelay; when that one was not run, the other one is used
  // (the table's "ratio vs" column says which).
  const refOf = (row: Row): Config => {
    if (CONFIGS.includes(row.ref)) return row.ref
    const other = row.ref === 'ssh' ? 'ssh_nodelay' : row.ref === 'ssh_nodelay' ? 'ssh' : row.ref
    return CONFIGS.includes(other) ? other : row.ref
  }
  const ratio = (c: Config, row: Row): number | undefined => {
    const a = medians[c]?.[row.key]
    const b = medians[refOf(row)]?.[row.key]
    if (a === undefined || b === undefined || b === 0) return undefined
    return a / b
  }
  const tunnels = [...TUNNELS.keys()]
  const refs = [['ssh', 'ssh -R'], ['ssh_nodelay', 'ssh_nodelay'], ...(CONFIGS.includes('node_proxy') ? [['node_proxy', 'Node TCP proxy']] : []), ['raw', 'direct']]
  const head = ['metric', ...tunnels.map(c => `reverselb ${c}`), ...refs.map(r => r[1]), ...tunnels.map(c => `${c} ÷ ref`), 'ratio vs', 'target']
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => i === 0 ? '---' : '---:').join('|')}|`]
  const tableRows = ROWS.filter(row => CONFIGS.some(c => medians[c][row.key] !== undefined)).map(row => {
    const cell = (c: Config): string => CONFIGS.includes(c) ? fmt(medians[c][row.key], row.digits) : '–'
    const cells = [row.label, ...tunnels.map(cell), ...refs.map(r => cell(r[0])), ...tunnels.map(c => fmt(ratio(c, row), 2)), refOf(row), row.target ?? '']
    lines.push(`| ${cells.join(' | ')} |`)
    return { key: row.key, label: row.label, better: row.better, ratio_vs: refOf(row), target: row.target, ...Object.fromEntries(CONFIGS.map(c => [c, medians[c][row.key]])), ...Object.fromEntries(tunnels.map(c => [`${c}_ratio`, ratio(c, row)])) }
  })
  const mach = machine()
  const desc = `${String(mach.cpus)} vCPU ${String(mach.cpu)} (${String(mach.virtualization)}), ${String(mach.mem_GB)} GB RAM, ${String(mach.os)}, Linux ${String(mach.kernel)}, Node ${String(mach.node)} (reverselb processes: ${String(mach.reverselb_node)}), ${String(mach.ssh)} (cipher ${String(mach.ssh_cipher)}), ${String(mach.iperf3)}, bufferutil: ${String(mach.bufferutil)}`
  const notes = [
    `Medians of ${S.runs} rounds; configurations alternate within each round (order rotated per round); all on 127.0.0.1, every process shares the same CPUs.`,
    `Ratios are reverselb ÷ the configuration in the "ratio vs" column: ssh -R for most rows, ssh_nodelay (ssh with Nagle off) for new connections/s, request/response and keep-alive HTTP; when one of the two was not run, the other. "added RTT" = tunnel RTT − direct RTT of the same round.`,
    ...(S.tests.includes('rtt') || S.tests.includes('rate') ? [`RTT: ${S.rttCount} timed ${S.msgSize}-byte echoes on one connection after ${S.rttWarmup} untimed ones (the Node processes' JIT settles). New connections/s: ${S.rateConc} concurrent clients for ${S.rateSecs} s after ${S.rateWarmupSecs} s untimed, each connection one ${S.msgSize}-byte echo. CPU rows: user + system time of the tunnel's own processes (both ends) per GB or per connection.`] : []),
    ...(S.tests.includes('rr') || S.tests.includes('http') ? [`Request/response: ${S.rrConc} connections to the echo backend, each sends ${S.rrSize} B and waits for the ${S.rrSize} B echo before the next, ${S.rrSecs} s timed after ${S.warmupSecs} s untimed; latency per request. Keep-alive HTTP: ${S.httpConc} connections, each GET / to a node:http server in its own process (~100 B body) and waits for the whole response, ${S.httpSecs} s timed after ${S.warmupSecs} s untimed. The load generator is one Node process on the same CPUs: its own cost is in every column, direct included.`] : []),
    ...(S.tests.includes('scale') ? [`${S.scaleConns} idle connections: opened ${S.scaleConc} at a time, each does one echo, then RSS is read after ${S.scaleSettleMs / 1000} s.`] : []),
    ...(S.tests.includes('bulk') || S.tests.includes('slow') ? [`bulk: iperf3 ${S.bulkSecs} s, receiver side, MB = 10^6 B. slow reader: two downloads through the tunnel, one read at ${S.slowRate / 1e6} MB/s; "kept" = fast stream's throughput ÷ its throughput alone; RSS peaks sampled every 50 ms.`] : []),
    `ssh figures: server = all sshd processes of the connection, client = the ssh process. reverselb: server process, and the tunnel client process of that backend.`,
    ...(CONFIGS.includes('node_proxy') ? ['Node TCP proxy: one Node process that only pipes each accepted connection to a new one to the backend (bench/node-proxy.ts): no TLS, no muxer, no second process. It is the least any tunnel written in Node costs; its RSS is in the server row.'] : [])
  ]
  const md = [`Machine: ${desc}.`, `Run: ${started.toISOString()}${S.label !== '' ? ` (${S.label})` : ''}.`, '', ...lines, '', ...notes.map(n => `- ${n}`), ''].join('\n')
  process.stdout.write('\n' + md)

  mkdirSync(S.resultsDir, { recursive: true })
  const json = { started: started.toISOString(), finished: new Date().toISOString(), label: S.label, machine: mach, machine_description: desc, settings: { ...S, cli: S.cli }, table: tableRows, medians, rounds, notes }
  writeFileSync(join(S.resultsDir, `${S.resultsName}.json`), JSON.stringify(json, null, 2) + '\n')
  writeFileSync(join(S.resultsDir, `${S.resultsName}.md`), md)
  log(`wrote ${join(S.resultsDir, `${S.resultsName}.json`)} and ${S.resultsName}.md`)
}

main().then(async () => {
  await stopAll()
  finalCleanupSync()
  if (failed || S.keepTmp) log(`logs kept in ${TMP}`); else rmSync(TMP, { recursive: true, force: true })
  process.exit(failed ? 2 : 0)
}, async (err: Error) => {
  log(`ERROR: ${err.message}`)
  await stopAll()
  finalCleanupSync()
  log(`logs kept in ${TMP}`)
  process.exit(1)
})

