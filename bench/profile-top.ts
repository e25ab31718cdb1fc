// Summarises V8 .cpuprofile files (node --cpu-prof): self time by function and by package.
// Usage: node dist/bench/profile-top.js FILE.cpuprofile [TOP=30]
import { readFileSync } from 'node:fs'

interface Node { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, hitCount?: number, children?: number[] }
interface Profile { nodes: Node[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

const file = process.argv[2]
const top = Number(process.argv[3] ?? 30)
if (file === undefined) { process.stderr.write('usage: profile-top.js FILE.cpuprofile [TOP]\n'); process.exit(2) }
const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(prof.nodes.map(n => [n.id, n]))
const selfUs = new Map<number, number>()
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i]
  selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0))
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0)
const pkg = (url: string): string => {
  if (url === '') return '(native/vm)'
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (m !== null) return m[1]
  if (url.startsWith('node:')) return url.split('/')[0]
  const d = /\/dist\/([^/]+)\//.exec(url)
  return d !== null ? `reverselb/${d[1]}` : url
}
const byFn = new Map<string, number>()
const byPkg = new Map<string, number>()
for (const [id, us] of selfUs) {
  const n = byId.get(id)
  if (n === undefined) continue
  const url = n.callFrame.url.replace(/^file:\/\//, '')
  const key = `${n.callFrame.functionName !== '' ? n.callFrame.functionName : '(anon)'} ${url !== '' ? `${url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}` : ''}`
  byFn.set(key, (byFn.get(key) ?? 0) + us)
  byPkg.set(pkg(url), (byPkg.get(pkg(url)) ?? 0) + us)
}
// inclusive time per function: self time of every sample whose stack contains it (counted once per sample)
const parent = new Map<number, number>()
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const keyOf = (n: Node): string => {
  const url = n.callFrame.url.replace(/^file:\/\//, '')
  return `${n.callFrame.functionName !== '' ? n.callFrame.functionName : '(anon)'} ${url !== '' ? `${url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}` : ''}`
}
const incl = new Map<string, number>()
for (const [id, us] of selfUs) {
  const seen = new Set<string>()
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const n = byId.get(cur)
    if (n === undefined) break
    const k = keyOf(n)
    if (seen.has(k)) continue
    seen.add(k)
    incl.set(k, (incl.get(k) ?? 0) + us)
  }
}
const pct = (us: number): string => `${(us / total * 100).toFixed(1).padStart(5)}%`
const wall = (prof.endTime - prof.startTime) / 1e6
process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled over ${wall.toFixed(1)} s wall\n-- by package --\n`)
for (const [k, us] of [...byPkg].sort((a, b) => b[1] - a[1]).slice(0, 15)) process.stdout.write(`${pct(us)}  ${k}\n`)
process.stdout.write('-- by function (self) --\n')
for (const [k, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${k}\n`)
process.stdout.write('-- by function (inclusive) --\n')
for (const [k, us] of [...incl].filter(([k]) => !k.startsWith('(root)') && !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${k}\n`)
