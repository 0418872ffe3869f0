// The js-libp2p node every interop script runs: TCP, Noise, Yamux, identify and ping, as a
// stock js-libp2p 3.x application has them. `listen: false` leaves it without a listener, so
// that the Peerage node cannot dial it back.
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'

export function createNode ({ listen = true } = {}) {
  return createLibp2p({
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping() }
  })
}
