// js-libp2p's peer store (@libp2p/peer-store, in-memory datastore) on the workload of
// crates/peerage-core/benches/peerstore.rs `add_then_read_10k_x10`: PEERS peers, 10 addresses
// each added with one merge() call per address, then every peer read back with get().
// Prints one JSON line: {"peers","per_peer","ops","ms","ops_per_sec"}.
import { persistentPeerStore } from '@libp2p/peer-store'
import { MemoryDatastore } from 'datastore-core'
import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'

const PEERS = Number(process.env.PEERS ?? 10000)
const PER_PEER = 10

const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
const store = persistentPeerStore({
  peerId: self,
  datastore: new MemoryDatastore(),
  events: new TypedEventEmitter(),
  logger: defaultLogger()
})
const peers = []
for (let i = 0; i < PEERS; i++) {
  peers.push(peerIdFromPrivateKey(await generateKeyPair('Ed25519')))
}
const addrs = peers.map((_, i) => Array.from({ length: PER_PEER }, (_, k) =>
  multiaddr(`/ip4/10.${(i >> 8) & 255}.${i & 255}.${k}/tcp/${4000 + k}`)))

const t0 = performance.now()
for (let i = 0; i < PEERS; i++) {
  for (let k = 0; k < PER_PEER; k++) {
    await store.merge(peers[i], { multiaddrs: [addrs[i][k]] })
  }
}
let read = 0
for (let i = 0; i < PEERS; i++) {
  read += (await store.get(peers[i])).addresses.length
}
const ms = performance.now() - t0
if (read !== PEERS * PER_PEER) throw new Error(`read ${read} addresses`)
const ops = PEERS * (PER_PEER + 1)
console.log(JSON.stringify({ peers: PEERS, per_peer: PER_PEER, ops, ms, ops_per_sec: ops / ms * 1000 }))
