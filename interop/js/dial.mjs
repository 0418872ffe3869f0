// Dials the multiaddr in argv[2] (ending in /p2p/<id>), waits until both sides identified,
// pings it PINGS times, and exits 0. Prints `JS PEER <id>`, `JS IDENTIFY <agent>`,
// `JS IDENTIFIED_MS <ms from the dial to the remote's identify>`, `JS ADDRS <json>` (the
// remote's addresses in js's peer store, each with whether its signed peer record certified
// it), `JS CONN <remote address>` and `JS PING <ms>` lines on stdout.
// `TRANSPORT=quic` dials over QUIC instead of TCP. Exits 2 after SECS seconds whatever
// happens.
import { createNode } from './node.mjs'
import { multiaddr } from '@multiformats/multiaddr'

const secs = Number(process.env.SECS ?? 20)
const pings = Number(process.env.PINGS ?? 3)
const guard = setTimeout(() => { console.error('JS TIMEOUT'); process.exit(2) }, secs * 1000)
const target = multiaddr(process.argv[2])

const node = await createNode({ quic: process.env.TRANSPORT === 'quic' })
console.log('JS PEER', node.peerId.toString())

let dialStart
const identified = new Promise(resolve => {
  node.addEventListener('peer:identify', e => {
    console.log('JS IDENTIFY', e.detail.agentVersion, JSON.stringify(e.detail.protocols))
    console.log('JS IDENTIFIED_MS', Date.now() - dialStart)
    resolve(e.detail.peerId)
  })
})
dialStart = Date.now()
const conn = await node.dial(target)
console.log('JS CONN', conn.remoteAddr.toString())
const remote = await identified
const stored = await node.peerStore.get(remote)
console.log('JS ADDRS', JSON.stringify(stored.addresses.map(a => ({
  addr: a.multiaddr.toString(),
  certified: a.isCertified
}))))
for (let i = 0; i < pings; i++) {
  console.log('JS PING', await node.services.ping.ping(target))
}
// Let the node's own identify and ping of us complete before leaving.
await new Promise(resolve => setTimeout(resolve, Number(process.env.LINGER_MS ?? 1500)))
await node.stop()
clearTimeout(guard)
console.log('JS DONE')
process.exit(0)
