// js-libp2p 3.x calls Promise.withResolvers, which Node 22 has and Node 20 lacks.
// Loaded with `node --import ./polyfill.mjs`; a no-op on Node >= 22.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
