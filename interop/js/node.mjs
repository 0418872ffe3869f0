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
  const services = { identify: identify(), ping: ping() }
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

// Pings `target` once. js-libp2p's connection monitor pings every connection on its own, and
// the ping service opens at most one outbound ping stream per connection (`maxOutboundStreams`
// 1, @libp2p/ping's constants.js): a ping that meets the monitor's fails with
// TooManyOutboundProtocolStreamsError ("2/1"). That one is tried again, up to 5 times, 200 ms
// apart; any other error is thrown.
export async function pingOnce (node, target) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await node.services.ping.ping(target)
    } catch (err) {
      if (err.name !== 'TooManyOutboundProtocolStreamsError' || attempt >= 5) throw err
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }
}
