//! Integration tests of the `peerage` node: the binary as a user runs it, the devnet, and a
//! js-libp2p peer we did not write.

mod addrbook;
mod admin;
mod cli;
mod config;
mod crash;
mod devnet;
mod disk;
mod eclipse;
mod flood;
mod js_interop;
mod operate;
mod peers_file;
mod quic_flood;
mod restart;
mod sim;
mod support;
mod transports;
