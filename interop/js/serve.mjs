// A js-libp2p node for the accept bench (crates/peerage-node/benches/accept.rs, `--js`): TCP,
// Noise, Yamux, identify and ping on 127.0.0.1, serving until killed. Prints
// `listening on <addr>` as `peerage run` does. Its inbound throttles are lifted, so that the
// bench measures the stack and not js-libp2p's defaults (300 connections, 10 pending, 5 a
// second per host): maxConnections 5,000, maxIncomingPendingConnections 50 (the bench's dials
// in flight), inboundConnectionThreshold Infinity.
import { createNode } from './node.mjs'

const node = await createNode({
  connectionManager: {
    maxConnections: 5000,
    maxIncomingPendingConnections: 50,
    inboundConnectionThreshold: Infinity
  }
})
for (const addr of node.getMultiaddrs()) {
  console.log('listening on', addr.toString())
}
