// Cluster bench row (issue 16), one run, everything a process of its own on loopback:
//   forwarded vs local: one service, its one client on node 1; request/response (loadgen rr) and
//     RTT (loadgen rtt) through node 1's frontend (local) and node 2's (forwarded to node 1)
//   connections/s, one node vs three: loadgen rate against a one-node cluster with one client,
//     then against three nodes with one client each, one loadgen per node's frontend, summed
// Usage: npm run build && node dist/bench/cluster.js   (about 1 minute; needs nats-server)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { selfSignedCertificate } from '../server/certificate.js'
import { startNatsCluster } from '../test/fixtures/nats-cluster.js'
import { freePort, freePortRange } from '../test/fixtures/net.js'
import { log, run, start, stopAll, waitListen } from './lib.js'
import type { Proc } from './lib.js'
import type { NatsCluster } from '../test/fixtures/nats-cluster.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const CLI = join(HERE, '..', 'cli', 'main.js')
const LOADGEN = join(HERE, 'loadgen.js')
const TOKEN = 'bench-cluster-token'
const SECRET = 'bench-cluster-secret-0123456789'
const SECS = Number(process.env.SECS ?? 5)
const TMP = mkdtempSync(join(tmpdir(), 'reverselb-bench-cluster-'))
const host = (i: number): string => `127.0.0.${i + 1}`

async function loadgen (frontHost: string, args: string[]): Promise<Record<string, number>> {
  const out = await run('env', [`BENCH_HOST=${frontHost}`, process.execPath, LOADGEN, ...args], (SECS + 60) * 1000, join(TMP, 'loadgen.log'))
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, number>
}

let nats: NatsCluster | undefined

async function main (): Promise<void> {
  const cert = await selfSignedCertificate('localhost')
  writeFileSync(join(TMP, 'cert.pem'), cert.cert)
  writeFileSync(join(TMP, 'key.pem'), cert.key, { mode: 0o600 })
  const natsCluster = await startNatsCluster(3)
  nats = natsCluster
  const dynPort = await freePortRange(4)
  const echoPort = await freePort()
  const backend = start('backend', join(TMP, 'backend.log'), process.execPath, [join(HERE, 'backend.js'), String(echoPort), String(await freePort())])
  await waitListen(echoPort, backend, 10_000)
  const apiPorts: number[] = []
  const node = async (i: number, cluster: string): Promise<Proc> => {
    const port = await freePort()
    apiPorts[i] = port
    const p = start(`node${i + 1}`, join(TMP, `${cluster}-node${i + 1}.log`), process.execPath, [CLI, 'server', '--port', String(port), '--host', '127.0.0.1',
      '--frontendhost', host(i), '--dynport', String(dynPort), '--dynportcount', '4', '--tls-cert', join(TMP, 'cert.pem'), '--tls-key', join(TMP, 'key.pem'),
      '--cluster', cluster, '--natsurl', natsCluster.urls, '--advertise', `127.0.0.1:${port}`, '--maxstreams', '10100', '--loglevel', 'warn'],
    { TOKEN, CLUSTER_SECRET: SECRET })
    await waitListen(port, p, 30_000)
    return p
  }
  const tunnel = (i: number, service: string, port: number): Proc => start(`tunnel-${service}-${i}`, join(TMP, `tunnel-${service}-${i}.log`), process.execPath,
    [CLI, 'tunnel', '-e', `127.0.0.1:${apiPorts[i]}`, '-s', service, '-p', String(port), '-b', `127.0.0.1:${echoPort}`, '--fingerprint', cert.fingerprint, '--loglevel', 'warn'], { TOKEN })
  // Ready once an echo through every given frontend host works.
  const probe = async (port: number, hosts: string[]): Promise<void> => {
    for (const h of hosts) await run('env', [`BENCH_HOST=${h}`, process.execPath, LOADGEN, 'probe', String(port), '30', 'echo'], 40_000)
  }

  // Connections/s with one node.
  await node(0, 'one')
  tunnel(0, 'rate1', dynPort)
  await probe(dynPort, [host(0)])
  const single = await loadgen(host(0), ['rate', String(dynPort), String(SECS), '16', '64'])
  log(`one node: ${single.conn_per_s} conn/s`)
  await stopAll()

  // Connections/s with three nodes, one client each, one loadgen per node.
  const backend2 = start('backend', join(TMP, 'backend2.log'), process.execPath, [join(HERE, 'backend.js'), String(echoPort), String(await freePort())])
  await waitListen(echoPort, backend2, 10_000)
  for (const i of [0, 1, 2]) await node(i, 'three')
  for (const i of [0, 1, 2]) tunnel(i, 'rate3', dynPort + 1)
  await probe(dynPort + 1, [0, 1, 2].map(host))
  const spread = await Promise.all([0, 1, 2].map(async i => await loadgen(host(i), ['rate', String(dynPort + 1), String(SECS), '16', '64'])))
  const three = spread.reduce((n, r) => n + r.conn_per_s, 0)
  log(`three nodes: ${spread.map(r => r.conn_per_s).join(' + ')} = ${three} conn/s`)

  // Forwarded vs local: the service's one client is on node 1.
  tunnel(0, 'fwd', dynPort + 2)
  await probe(dynPort + 2, [host(0), host(1)])
  const rr = async (h: string): Promise<Record<string, number>> => await loadgen(h, ['rr', String(dynPort + 2), String(SECS), '16', '100', '1'])
  const rtt = async (h: string): Promise<Record<string, number>> => await loadgen(h, ['rtt', String(dynPort + 2), '5000', '64', '1000'])
  const localRr = await rr(host(0))
  const fwdRr = await rr(host(1))
  const localRtt = await rtt(host(0))
  const fwdRtt = await rtt(host(1))
  const direct = await loadgen('127.0.0.1', ['rtt', String(echoPort), '5000', '64', '1000'])
  await stopAll()
  await natsCluster.close()
  nats = undefined

  const rows = [
    '| metric | local (client on the entry node) | forwarded (entry node 2 -> node 1) | ratio |',
    '|---|---:|---:|---:|',
    `| request/response, 16 connections, 100 B (req/s) | ${localRr.rps} | ${fwdRr.rps} | ${(fwdRr.rps / localRr.rps).toFixed(2)} |`,
    `| request/response p50 / p99 (us) | ${localRr.p50_us} / ${localRr.p99_us} | ${fwdRr.p50_us} / ${fwdRr.p99_us} | |`,
    `| RTT median, 64 B echo (us) | ${localRtt.median_us} | ${fwdRtt.median_us} | ${(fwdRtt.median_us / localRtt.median_us).toFixed(2)} |`,
    `| added RTT vs direct (us) | ${(localRtt.median_us - direct.median_us).toFixed(0)} | ${(fwdRtt.median_us - direct.median_us).toFixed(0)} | forwarding adds ${(fwdRtt.median_us - localRtt.median_us).toFixed(0)} |`,
    '',
    '| metric | one node | three nodes | ratio |',
    '|---|---:|---:|---:|',
    `| new connections/s (16 concurrent per node's frontend) | ${single.conn_per_s} | ${three} | ${(three / single.conn_per_s).toFixed(2)} |`
  ]
  process.stdout.write(rows.join('\n') + '\n')
}

main().then(() => { rmSync(TMP, { recursive: true, force: true }) }, async (err: Error) => {
  process.stderr.write(`bench cluster failed: ${err.message} (logs in ${TMP})\n`)
  await stopAll()
  await nats?.close()
  process.exit(1)
})
