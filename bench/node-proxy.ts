// Reference for the benchmark: the least a Node program can do to forward TCP, one process, no
// TLS and no multiplexing. Its figures are the floor for any tunnel written in Node (reverselb
// adds a second process, TLS and a muxer on top); ssh -R is C.
//   node-proxy.js LISTEN_PORT:TARGET_PORT [...]   (127.0.0.1, or BENCH_HOST)
import { connect, createServer } from 'node:net'

const host = process.env.BENCH_HOST ?? '127.0.0.1'
const pairs = process.argv.slice(2).map(a => a.split(':').map(Number))
if (pairs.length === 0 || pairs.some(p => p.length !== 2 || p.some(n => !Number.isInteger(n)))) {
  process.stderr.write('usage: node-proxy.js LISTEN_PORT:TARGET_PORT [...]\n')
  process.exit(2)
}
for (const [listen, target] of pairs) {
  createServer({ noDelay: true, allowHalfOpen: true }, (front) => {
    const back = connect({ host, port: target, noDelay: true, allowHalfOpen: true })
    front.pipe(back)
    back.pipe(front)
    front.on('error', () => back.destroy())
    back.on('error', () => front.destroy())
  }).listen(listen, host)
}
