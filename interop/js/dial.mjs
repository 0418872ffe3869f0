// Dials the multiaddr in argv[2] (ending in /p2p/<id>), waits until both sides identified,
// pings it PINGS times, and exits 0. Prints `JS PEER <id>`, `JS IDENTIFY <agent>` and
// `JS PING <ms>` lines on stdout. Exits 2 after SECS seconds whatever happens.
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'

const secs = Number(process.env.SECS ?? 20)
const pings = Number(process.env.PINGS ?? 3)
const guard = setTimeout(() => { console.error('JS TIMEOUT'); process.exit(2) }, secs * 1000)
const target = multiaddr(process.argv[2])

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
})
console.log('JS PEER', node.peerId.toString())

const identified = new Promise(resolve => {
  node.addEventListener('peer:identify', e => {
    console.log('JS IDENTIFY', e.detail.agentVersion, JSON.stringify(e.detail.protocols))
    resolve()
  })
})
await node.dial(target)
await identified
for (let i = 0; i < pings; i++) {
  console.log('JS PING', await node.services.ping.ping(target))
}
// Let the node's own identify and ping of us complete before leaving.
await new Promise(resolve => setTimeout(resolve, Number(process.env.LINGER_MS ?? 1500)))
await node.stop()
clearTimeout(guard)
console.log('JS DONE')
process.exit(0)
