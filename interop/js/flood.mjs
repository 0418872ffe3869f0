// Dials the multiaddr in argv[2] (ending in /p2p/<id>) from PEERS (default 40) js-libp2p nodes
// in this one process, all at once; each holds its connection HOLD_MS (default 8000) ms, then
// the script reports what survived and exits 0. Exits 2 after SECS seconds whatever happens.
//
// Lines on stdout (the counts are taken at the end of the hold, before the nodes stop):
//   JS PEER <id> connected|disconnected|failed   one per js node
//   JS CONNECTED <n>             js nodes with an open connection to the target
//   JS DIAL FAILURES <n>         dials that threw
//   JS DIAL ERRORS {name: n}     their error names
//   JS OPENS <n>                 connections to the target that opened
//   JS CLOSES <n>                ... and closed during the hold
//   JS CLOSE ERRORS {name: n}    why they closed: the close event's error name, or
//                                `remote` / `local` for a clean close by that side
//   JS MUXER ERRORS {name: n}    errors the stream muxers were aborted with
//                                (`MaxEarlyStreamsError`: the target opened streams faster
//                                than the connection could take them)
//   JS STREAM ERRORS {name: n}   errors streams were aborted with, either side
//   JS IDENTIFIED <n>            js nodes whose identify of the target completed
//   JS DONE
//
// Env: PEERS, HOLD_MS, SECS (guard, default HOLD_MS/1000 + 30), LISTEN=1 to make each js node
// listen on 127.0.0.1/tcp/0 (by default they do not listen, so the target cannot dial them).
import { createNode } from './node.mjs'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'

const peers = Number(process.env.PEERS ?? 40)
const holdMs = Number(process.env.HOLD_MS ?? 8000)
const secs = Number(process.env.SECS ?? holdMs / 1000 + 30)
const listen = process.env.LISTEN === '1'
const guard = setTimeout(() => { console.error('JS TIMEOUT'); process.exit(2) }, secs * 1000)
const target = multiaddr(process.argv[2])
if (!process.argv[2].includes('/p2p/')) {
  console.error('the target multiaddr must end in /p2p/<id>')
  process.exit(1)
}
const targetId = peerIdFromString(process.argv[2].split('/p2p/').pop())

const tally = (counts, name) => { counts[name] = (counts[name] ?? 0) + 1 }
const errorName = err => err?.name ?? err?.constructor?.name ?? String(err)
const muxerErrors = {}
const streamErrors = {}
const closeErrors = {}
const dialErrors = {}
let opens = 0
let closes = 0
let identified = 0
let holding = true

// The muxers' and streams' aborts are not events of the node: wrap the shared base classes
// (yamux's muxer and streams extend them) to see the errors, MaxEarlyStreamsError included.
// @libp2p/utils is a dependency of libp2p and yamux, not of this package: if it cannot be
// loaded, those two tallies stay empty and say so.
try {
  const utils = await import('@libp2p/utils')
  const muxerAbort = utils.AbstractStreamMuxer.prototype.abort
  utils.AbstractStreamMuxer.prototype.abort = function (err) {
    if (holding && this.status !== 'closed') tally(muxerErrors, errorName(err))
    return muxerAbort.call(this, err)
  }
  const streamAbort = utils.AbstractStream.prototype.abort
  utils.AbstractStream.prototype.abort = function (err) {
    if (holding && !['closed', 'aborted', 'reset'].includes(this.status)) tally(streamErrors, errorName(err))
    return streamAbort.call(this, err)
  }
} catch (err) {
  muxerErrors['(not observed: ' + errorName(err) + ')'] = 0
  streamErrors['(not observed: ' + errorName(err) + ')'] = 0
}

const nodes = await Promise.all(Array.from({ length: peers }, () => createNode({ listen })))

for (const node of nodes) {
  node.addEventListener('connection:open', e => {
    const conn = e.detail
    if (!conn.remotePeer.equals(targetId)) return
    opens++
    conn.addEventListener('close', evt => {
      if (!holding) return
      closes++
      tally(closeErrors, evt.error != null ? errorName(evt.error) : (evt.local ? 'local' : 'remote'))
    })
  })
  node.addEventListener('peer:identify', e => {
    if (e.detail.peerId.equals(targetId)) identified++
  })
}

const dialed = await Promise.all(nodes.map(async node => {
  try {
    await node.dial(target)
    return true
  } catch (err) {
    tally(dialErrors, errorName(err))
    return false
  }
}))
await new Promise(resolve => setTimeout(resolve, holdMs))
holding = false

let connected = 0
nodes.forEach((node, i) => {
  const open = node.getConnections(targetId).some(c => c.status === 'open')
  if (open) connected++
  console.log('JS PEER', node.peerId.toString(), open ? 'connected' : dialed[i] ? 'disconnected' : 'failed')
})
console.log('JS CONNECTED', connected)
console.log('JS DIAL FAILURES', dialed.filter(ok => !ok).length)
console.log('JS DIAL ERRORS', JSON.stringify(dialErrors))
console.log('JS OPENS', opens)
console.log('JS CLOSES', closes)
console.log('JS CLOSE ERRORS', JSON.stringify(closeErrors))
console.log('JS MUXER ERRORS', JSON.stringify(muxerErrors))
console.log('JS STREAM ERRORS', JSON.stringify(streamErrors))
console.log('JS IDENTIFIED', identified)

// Stopping 40 nodes may linger on a connection the target no longer answers: bounded.
await Promise.race([
  Promise.allSettled(nodes.map(node => node.stop())),
  new Promise(resolve => setTimeout(resolve, 3000))
])
clearTimeout(guard)
console.log('JS DONE')
process.exit(0)
