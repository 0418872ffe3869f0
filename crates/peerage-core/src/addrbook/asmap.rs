//! Bitcoin Core's asmap: IP prefixes to AS numbers. (Being written.)

use std::net::IpAddr;

/// An asmap in Bitcoin Core's binary format.
#[derive(Debug, Clone)]
pub struct Asmap {
    bits: Vec<u8>,
}

impl Asmap {
    /// The AS that announces `ip`, if the map names one.
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        let _ = (ip, &self.bits);
        None
    }

    /// A fingerprint of the map.
    pub fn checksum(&self) -> u64 {
        0
    }
}
