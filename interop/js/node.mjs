// The js-libp2p node every interop script runs: TCP, Noise, Yamux, identify and ping, as a
// stock js-libp2p 3.x application has them, or QUIC (`quic: true`: @chainsafe/libp2p-quic,
// which brings its own encryption and muxing). `listen: false` leaves it without a listener,
// so that the Peerage node cannot dial it back; `connectionManager` is passed to js-libp2p.
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'

export async function createNode ({ listen = true, quic = false, connectionManager } = {}) {
  // Two outbound ping streams per connection, not @libp2p/ping's one (`maxOutboundStreams`,
  // its constants.js): js-libp2p's connection monitor pings every connection on its own, and a
  // script's ping that met the monitor's failed with "Too many outbound protocol streams ...
  // 2/1" (or the monitor's did, and it closed the connection).
  const services = { identify: identify(), ping: ping({ maxOutboundStreams: 2 }) }
  if (quic) {
    // Loaded only here: its native binary is not needed by the TCP scripts.
    const { quic: quicTransport } = await import('@chainsafe/libp2p-quic')
    return createLibp2p({
      addresses: { listen: listen ? ['/ip4/127.0.0.1/udp/0/quic-v1'] : [] },
      transports: [quicTransport()],
      services
    })
  }
  return createLibp2p({
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager,
    services
  })
}
