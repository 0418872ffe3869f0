// Dials the multiaddr in argv[2] (ending in /p2p/<id>), waits for identify, opens STREAMS
// streams of PROTOCOL one after the other and holds them without writing (PROTOCOL may be a
// comma-separated list, proposed in turn on each stream until one is accepted). After HOLD_MS it
// prints `JS STREAM <i> <status>` for each (`error <name>` if opening failed), pings the node
// over the same connection (`JS PING <ms>` or `JS PING failed <name>`), prints
// `JS CONNECTIONS <n>` and exits 0. Exits 2 after SECS seconds whatever happens.
import { createNode } from './node.mjs'
import { multiaddr } from '@multiformats/multiaddr'

const secs = Number(process.env.SECS ?? 20)
const count = Number(process.env.STREAMS ?? 3)
const protocols = (process.env.PROTOCOL ?? '/peerage/pex/1.0.0').split(',')
const guard = setTimeout(() => { console.error('JS TIMEOUT'); process.exit(2) }, secs * 1000)
const target = multiaddr(process.argv[2])

const node = await createNode()
const identified = new Promise(resolve => node.addEventListener('peer:identify', resolve))
const conn = await node.dial(target)
await identified
const streams = []
for (let i = 0; i < count; i++) {
  try {
    streams.push(await conn.newStream(protocols))
  } catch (err) {
    streams.push(err)
  }
}
await new Promise(resolve => setTimeout(resolve, Number(process.env.HOLD_MS ?? 1000)))
streams.forEach((s, i) => {
  console.log('JS STREAM', i + 1, s instanceof Error ? `error ${s.name}` : s.status)
})
try {
  console.log('JS PING', await node.services.ping.ping(target))
} catch (err) {
  console.log('JS PING failed', err.name)
}
console.log('JS CONNECTIONS', node.getConnections().filter(c => c.status === 'open').length)
await node.stop()
clearTimeout(guard)
process.exit(0)
