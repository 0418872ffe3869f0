//! Bitcoin Core's asmap: which autonomous system (AS) announces an IP address.
//!
//! Grouping peers by /16 (IPv4) or /32 (IPv6) says little about who controls them: one large
//! network holds many /16s, so an attacker that owns one — or, worse, sits on the route to many
//! (the Erebus attack, Tran et al., IEEE S&P 2020) — can fill an address book that diversifies
//! by prefix alone. Bitcoin Core 0.20.0 (PR #16702, `-asmap`) lets a node group addresses by the
//! AS number that announces them instead, read from a compact map built from BGP data. This
//! module reads that map format: [`Asmap::from_bytes`] checks it, [`Asmap::lookup`] answers.
//!
//! Source: Bitcoin Core `src/util/asmap.cpp` (`DecodeAsmap`, `SanityCheckASMap` with 128 bits,
//! `Interpret`) and `NetGroupManager::GetMappedAS` in `src/netgroup.cpp`; the encoder is
//! `contrib/asmap/asmap.py`. Maps made by Core's tools (`asmap-tool.py`, Kartograf) load here
//! unchanged, and answer the same.
//!
//! # Format
//!
//! The map is a program over the 128 bits of an address, read as a bit stream: the bits of
//! each byte from least to most significant. An IPv4 address is looked up as its IPv4-mapped
//! IPv6 address (`::ffff:a.b.c.d`); the address's bits are consumed from the most significant.
//! Four instructions, each a type code and an argument in a variable-length integer code:
//!
//! - `RETURN asn` (`0`): the answer is `asn`.
//! - `JUMP n` (`10`): read the next address bit; if it is 1, skip the next `n` bits of the
//!   program (the subprogram for 0) and run what follows.
//! - `MATCH m` (`110`): the next 1 to 8 address bits must equal the bits of `m` below its
//!   leading 1; if they do not, the answer is the last `DEFAULT`, or none.
//! - `DEFAULT asn` (`111`): the answer for a failed `MATCH` from here on.
//!
//! An integer is coded as a class and an offset: with a minimum `min` and class widths
//! `w0, w1, ..`, class `k` holds the `2^wk` integers after those of the classes before it, and is
//! written as `k` one bits, a zero bit (left out for the last class), then the offset in `wk`
//! bits, most significant first. The codes: type `min 0, [0, 0, 1]`; AS number `min 1,
//! [15..=24]`; match `min 2, [1..=8]`; jump `min 17, [5..=30]`. An AS number is thus at most
//! 33 521 664, and AS 0 (reserved, RFC 7607) cannot be returned: it means "not mapped".
//!
//! The check ([`Asmap::from_bytes`]) walks every path once, as Core's does, so that a lookup
//! cannot run off the map or past the address: each path ends in `RETURN`, jumps land on an
//! instruction inside their enclosing branch, no path reads more than 128 address bits, no
//! code is unreachable, encodings are canonical (no `DEFAULT` right before `DEFAULT` or
//! `RETURN`, no two short `MATCH`es in a row), and at most 7 zero bits pad the last byte.
//!
//! # Errors
//!
//! [`Asmap::from_bytes`] returns an [`Error`] naming the first fault: a map larger than
//! [`MAX_BYTES`], a truncated instruction or map, a jump out of range or into the middle of an
//! instruction, unreachable code, a path reading more than 128 address bits, a non-canonical
//! instruction, or padding that is too long or not zero. A lookup cannot fail.

use std::{fmt, net::IpAddr};

/// The largest map [`Asmap::from_bytes`] accepts: 8 MiB. A map of the whole Internet's routing
/// table is on the order of 1 MiB; the cap keeps every bit offset well inside the `u32` Core
/// uses for them, and keeps a wrong file from costing much memory.
pub const MAX_BYTES: usize = 8 << 20;

/// The largest AS number the format can code (`1 + 2^15 + .. + 2^24 - 1`).
pub const MAX_ASN: u32 = (1 << 25) - (1 << 15);

/// Address bits a lookup consumes: an IPv6 address, or an IPv4 one mapped into IPv6.
const ADDRESS_BITS: u32 = 128;

/// Class widths of the instruction type code.
const TYPE_CLASSES: [u8; 3] = [0, 0, 1];
/// Class widths of an AS number.
const ASN_CLASSES: [u8; 10] = [15, 16, 17, 18, 19, 20, 21, 22, 23, 24];
/// Class widths of a `MATCH` argument.
const MATCH_CLASSES: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
/// Class widths of a `JUMP` offset.
const JUMP_CLASSES: [u8; 26] = [
    5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
    30,
];

/// An asmap was rejected by [`Asmap::from_bytes`]. A `bit` is an offset in the map's bit stream
/// (bit `i` is bit `i % 8`, from the least significant, of byte `i / 8`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The map is larger than [`MAX_BYTES`].
    #[error("asmap of {len} bytes is larger than the {max} allowed")]
    TooLarge {
        /// The map's size in bytes.
        len: usize,
        /// [`MAX_BYTES`].
        max: usize,
    },
    /// The map ends inside an instruction.
    #[error("asmap is truncated: the instruction at bit {bit} runs past its end")]
    Truncated {
        /// Where the cut instruction starts.
        bit: usize,
    },
    /// The map ends (or is empty) before every path has reached a `RETURN`.
    #[error("asmap ends before every path has reached a RETURN")]
    MissingReturn,
    /// A jump skips past the end of the map.
    #[error("asmap jump at bit {bit} points past the end of the map")]
    JumpOutOfRange {
        /// Where the jump starts.
        bit: usize,
    },
    /// A jump lands in the middle of an instruction, or beyond the branch that holds it.
    #[error("asmap jump target is not the start of an instruction, at bit {bit}")]
    JumpIntoInstruction {
        /// The instruction that overlaps the target, or the jump that overshoots.
        bit: usize,
    },
    /// Code no path can reach: a branch ends before the next jump's target.
    #[error("asmap code at bit {bit} is unreachable")]
    Unreachable {
        /// Where the unreachable code starts.
        bit: usize,
    },
    /// A path reads more than the 128 bits of an address.
    #[error("asmap instruction at bit {bit} reads past the 128 bits of an address")]
    AddressOverrun {
        /// The instruction that reads too far.
        bit: usize,
    },
    /// A well-formed but non-canonical instruction, which Core's encoder never writes.
    #[error("asmap instruction at bit {bit} is invalid: {reason}")]
    InvalidInstruction {
        /// Where the instruction starts.
        bit: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More than 7 bits follow the last instruction: the map is followed by something else.
    #[error("asmap has {bits} bits after its last instruction, at most 7 allowed")]
    ExcessPadding {
        /// How many bits follow the last instruction.
        bits: usize,
    },
    /// A padding bit after the last instruction is not zero.
    #[error("asmap padding bit {bit} is not zero")]
    NonZeroPadding {
        /// The offending bit.
        bit: usize,
    },
}

/// An asmap in Bitcoin Core's binary format (see the [module docs](self)), checked.
///
/// Cloning copies the map; share one behind an `Arc` if it is large and cloned often.
#[derive(Clone, PartialEq, Eq)]
pub struct Asmap {
    bytes: Vec<u8>,
    checksum: u64,
}

impl fmt::Debug for Asmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asmap")
            .field("len", &self.bytes.len())
            .field("checksum", &format_args!("{:#018x}", self.checksum))
            .finish()
    }
}

impl Asmap {
    /// Reads a map from the bytes of an asmap file (Core `DecodeAsmap`), checking it as Core's
    /// `SanityCheckASMap(asmap, 128)` does, so that every lookup in it is well defined.
    ///
    /// # Errors
    ///
    /// The first fault found, as an [`Error`]: see the [module docs](self#errors).
    pub fn from_bytes(bytes: &[u8]) -> Result<Asmap, Error> {
        if bytes.len() > MAX_BYTES {
            return Err(Error::TooLarge {
                len: bytes.len(),
                max: MAX_BYTES,
            });
        }
        check(bytes, ADDRESS_BITS)?;
        Ok(Asmap {
            bytes: bytes.to_vec(),
            checksum: fnv1a64(bytes),
        })
    }

    /// The AS that announces `ip`, if the map names one (Core `GetMappedAS`): `None` where the
    /// map gives AS 0, i.e. does not map the address.
    ///
    /// An IPv4 address is looked up as `::ffff:a.b.c.d`, so it and its IPv4-mapped IPv6 form
    /// answer alike; other embeddings (6to4, Teredo) are the caller's to unwrap. Allocates
    /// nothing; the work is the length of the instructions on the address's path.
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        let key = match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let asn = interpret(&self.bytes, key);
        debug_assert!(asn.is_some(), "a checked asmap ran off its end");
        asn.filter(|&asn| asn != 0)
    }

    /// A fingerprint of the map: FNV-1a (64-bit) of its bytes, the same on every platform and
    /// in every version. Store it with state derived from the map (as Core stores its asmap's
    /// hash in `peers.dat`) to notice that the map changed and that the state must be rebuilt.
    /// Not Core's `AsmapVersion` (double SHA-256), and not collision-resistant against an
    /// adversary.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// The map's bytes, as read: write them back to have the same map.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// FNV-1a, 64-bit.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// An instruction's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Return,
    Jump,
    Match,
    Default,
}

/// A reader of the map's bit stream.
struct Bits<'a> {
    data: &'a [u8],
    /// The next bit to read.
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn end(&self) -> usize {
        self.data.len() * 8
    }

    fn bit_at(&self, i: usize) -> Option<bool> {
        let byte = self.data.get(i / 8)?;
        Some((byte >> (i % 8)) & 1 == 1)
    }

    fn next_bit(&mut self) -> Option<bool> {
        let bit = self.bit_at(self.pos)?;
        self.pos += 1;
        Some(bit)
    }

    /// An integer in the code of `min` and `classes` (Core `DecodeBits`); `None` at the end.
    fn integer(&mut self, min: u32, classes: &[u8]) -> Option<u32> {
        let mut val = min;
        for (k, &width) in classes.iter().enumerate() {
            // The last class has no terminating zero bit.
            let more = k + 1 < classes.len() && self.next_bit()?;
            if more {
                val += 1 << width;
            } else {
                // The offset within the class, most significant bit first.
                for shift in (0..width).rev() {
                    val += u32::from(self.next_bit()?) << shift;
                }
                return Some(val);
            }
        }
        None
    }

    fn op(&mut self) -> Option<Op> {
        Some(match self.integer(0, &TYPE_CLASSES)? {
            0 => Op::Return,
            1 => Op::Jump,
            2 => Op::Match,
            // The type code holds 0 to 3.
            _ => Op::Default,
        })
    }

    fn asn(&mut self) -> Option<u32> {
        self.integer(1, &ASN_CLASSES)
    }

    /// A `MATCH` argument: 2 to 511, the bits to match below a leading 1.
    fn match_arg(&mut self) -> Option<u32> {
        self.integer(2, &MATCH_CLASSES)
    }

    fn jump(&mut self) -> Option<usize> {
        self.integer(17, &JUMP_CLASSES).map(|n| n as usize)
    }
}

/// How many address bits a `MATCH` argument compares: those below its leading 1.
fn match_len(arg: u32) -> u32 {
    31 - arg.leading_zeros()
}

/// Runs the map on the 128-bit `key` (Core `Interpret`): the AS number, 0 for none, or `None`
/// if the map runs off its end (which a checked map does not).
fn interpret(data: &[u8], key: u128) -> Option<u32> {
    let mut code = Bits::new(data);
    let end = code.end();
    // Address bits consumed, from the most significant.
    let mut used: u32 = 0;
    let mut default = 0;
    while code.pos < end {
        match code.op()? {
            Op::Return => return code.asn(),
            Op::Jump => {
                let skip = code.jump()?;
                if used == ADDRESS_BITS || skip >= end - code.pos {
                    return None;
                }
                if (key << used) >> (ADDRESS_BITS - 1) == 1 {
                    code.pos += skip;
                }
                used += 1;
            }
            Op::Match => {
                let arg = code.match_arg()?;
                let len = match_len(arg);
                if ADDRESS_BITS - used < len {
                    return None;
                }
                // `len` is 1 to 8 and `used + len <= 128`: neither shift reaches 128.
                let got = (key << used) >> (ADDRESS_BITS - len);
                let want = u128::from(arg & ((1 << len) - 1));
                if got != want {
                    return Some(default);
                }
                used += len;
            }
            Op::Default => default = code.asn()?,
        }
    }
    None
}

/// Checks that the map is a well-formed program over `bits`-bit inputs (Core
/// `SanityCheckASMap`): every path a lookup can take is walked once, in order.
fn check(data: &[u8], mut bits: u32) -> Result<(), Error> {
    let mut code = Bits::new(data);
    let end = code.end();
    // The jumps taken on the current path, innermost last: where the branch for a 1 bit starts,
    // and the input bits left there. Targets decrease towards the top.
    let mut jumps: Vec<(usize, u32)> = Vec::with_capacity(bits as usize);
    let mut prev = Op::Jump;
    let mut short_match = false;
    while code.pos != end {
        let at = code.pos;
        if jumps.last().is_some_and(|&(target, _)| at >= target) {
            // The previous instruction ran over the start of the branch.
            return Err(Error::JumpIntoInstruction { bit: at });
        }
        let truncated = Error::Truncated { bit: at };
        match code.op().ok_or(truncated.clone())? {
            Op::Return => {
                if prev == Op::Default {
                    return Err(Error::InvalidInstruction {
                        bit: at,
                        reason: "RETURN right after DEFAULT (one RETURN says the same)",
                    });
                }
                code.asn().ok_or(truncated)?;
                let Some((target, left)) = jumps.pop() else {
                    // Nothing left to run: only the last byte's padding may follow.
                    let pad = end - code.pos;
                    if pad > 7 {
                        return Err(Error::ExcessPadding { bits: pad });
                    }
                    if let Some(bit) = (code.pos..end).find(|&i| code.bit_at(i) == Some(true)) {
                        return Err(Error::NonZeroPadding { bit });
                    }
                    return Ok(());
                };
                // Go on as if the innermost jump had been taken.
                if code.pos < target {
                    return Err(Error::Unreachable { bit: code.pos });
                }
                if code.pos > target {
                    return Err(Error::JumpIntoInstruction { bit: at });
                }
                bits = left;
                prev = Op::Jump;
            }
            Op::Jump => {
                let skip = code.jump().ok_or(truncated)?;
                if skip > end - code.pos {
                    return Err(Error::JumpOutOfRange { bit: at });
                }
                if bits == 0 {
                    return Err(Error::AddressOverrun { bit: at });
                }
                bits -= 1;
                let target = code.pos + skip;
                if jumps.last().is_some_and(|&(outer, _)| target >= outer) {
                    // Lands at or past the enclosing branch's end.
                    return Err(Error::JumpIntoInstruction { bit: at });
                }
                jumps.push((target, bits));
                prev = Op::Jump;
            }
            Op::Match => {
                let len = match_len(code.match_arg().ok_or(truncated)?);
                if prev != Op::Match {
                    short_match = false;
                }
                if len < 8 && short_match {
                    return Err(Error::InvalidInstruction {
                        bit: at,
                        reason: "a second MATCH of under 8 bits in a row (one MATCH says the same)",
                    });
                }
                short_match = len < 8;
                if bits < len {
                    return Err(Error::AddressOverrun { bit: at });
                }
                bits -= len;
                prev = Op::Match;
            }
            Op::Default => {
                if prev == Op::Default {
                    return Err(Error::InvalidInstruction {
                        bit: at,
                        reason: "DEFAULT right after DEFAULT (the second overrides the first)",
                    });
                }
                code.asn().ok_or(truncated)?;
                prev = Op::Default;
            }
        }
    }
    Err(Error::MissingReturn)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    // A small encoder, after Core's `contrib/asmap/asmap.py`: programs as bit vectors.

    /// Appends `val` in the code of `min` and `classes`.
    fn integer(out: &mut Vec<bool>, min: u32, classes: &[u8], val: u32) {
        let mut v = val.checked_sub(min).expect("below the code's minimum");
        for (k, &width) in classes.iter().enumerate() {
            if v >> width != 0 {
                v -= 1 << width;
                out.push(true);
            } else {
                if k + 1 < classes.len() {
                    out.push(false);
                }
                out.extend((0..width).rev().map(|s| (v >> s) & 1 == 1));
                return;
            }
        }
        panic!("{val} is too large for the code");
    }

    fn op(out: &mut Vec<bool>, op: Op) {
        let code = match op {
            Op::Return => 0,
            Op::Jump => 1,
            Op::Match => 2,
            Op::Default => 3,
        };
        integer(out, 0, &TYPE_CLASSES, code);
    }

    /// `RETURN asn`.
    fn ret(asn: u32) -> Vec<bool> {
        let mut out = Vec::new();
        op(&mut out, Op::Return);
        integer(&mut out, 1, &ASN_CLASSES, asn);
        out
    }

    /// `DEFAULT asn`, then `then`.
    fn default(asn: u32, then: Vec<bool>) -> Vec<bool> {
        let mut out = Vec::new();
        op(&mut out, Op::Default);
        integer(&mut out, 1, &ASN_CLASSES, asn);
        out.extend(then);
        out
    }

    /// One `MATCH` of 1 to 8 address bits, then `then`.
    fn matching(bits: &[bool], then: Vec<bool>) -> Vec<bool> {
        assert!((1..=8).contains(&bits.len()));
        let arg = bits.iter().fold(1u32, |a, &b| (a << 1) | u32::from(b));
        let mut out = Vec::new();
        op(&mut out, Op::Match);
        integer(&mut out, 2, &MATCH_CLASSES, arg);
        out.extend(then);
        out
    }

    /// A `JUMP` header skipping `skip` bits, without its branches.
    fn jump_header(skip: usize) -> Vec<bool> {
        let mut out = Vec::new();
        op(&mut out, Op::Jump);
        integer(&mut out, 17, &JUMP_CLASSES, u32::try_from(skip).unwrap());
        out
    }

    /// `JUMP`: `zero` for a 0 bit, `one` for a 1 bit.
    fn jump(zero: Vec<bool>, one: Vec<bool>) -> Vec<bool> {
        let mut out = jump_header(zero.len());
        out.extend(zero);
        out.extend(one);
        out
    }

    /// Bits to bytes, least significant first, zero padded.
    fn pack(bits: &[bool]) -> Vec<u8> {
        let mut out = vec![0u8; bits.len().div_ceil(8)];
        for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
            out[i / 8] |= 1 << (i % 8);
        }
        out
    }

    fn cat(parts: &[&[bool]]) -> Vec<bool> {
        parts.concat()
    }

    /// A binary trie of prefixes, as `asmap.py`'s.
    #[derive(Debug, Clone, PartialEq)]
    enum Node {
        Unmapped,
        As(u32),
        Split(Box<Node>, Box<Node>),
    }

    /// A prefix: the address bits (the rest zero), its length, its AS.
    type Entry = (u128, u32, u32);

    fn bit(value: u128, i: u32) -> bool {
        (value >> (127 - i)) & 1 == 1
    }

    fn mask(len: u32) -> u128 {
        if len == 0 { 0 } else { !0 << (128 - len) }
    }

    /// The trie of `entries`: a longer prefix wins, and of equal ones the last.
    fn trie(entries: &[Entry]) -> Node {
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|e| e.1);
        let mut root = Node::Unmapped;
        for &(prefix, len, asn) in &sorted {
            let mut node = &mut root;
            for i in 0..len {
                if let Node::Unmapped | Node::As(_) = node {
                    let old = node.clone();
                    *node = Node::Split(Box::new(old.clone()), Box::new(old));
                }
                let Node::Split(zero, one) = node else {
                    unreachable!()
                };
                node = if bit(prefix, i) { one } else { zero };
            }
            *node = Node::As(asn);
        }
        simplify(&mut root);
        root
    }

    fn simplify(node: &mut Node) {
        if let Node::Split(zero, one) = node {
            simplify(zero);
            simplify(one);
            if zero == one && !matches!(**zero, Node::Split(..)) {
                *node = (**zero).clone();
            }
        }
    }

    /// The program for a trie, `None` for an unmapped one (which has none).
    fn encode(node: &Node) -> Option<Vec<bool>> {
        // A run of splits with one side unmapped is a MATCH of the bits to the other side.
        let mut path = Vec::new();
        let mut node = node;
        while let Node::Split(zero, one) = node {
            match (&**zero, &**one) {
                (Node::Unmapped, _) => path.push(true),
                (_, Node::Unmapped) => path.push(false),
                _ => break,
            }
            node = if *path.last().unwrap() { one } else { zero };
        }
        let mut rest = match node {
            Node::Unmapped => return None,
            Node::As(asn) => ret(*asn),
            Node::Split(zero, one) => jump(encode(zero)?, encode(one)?),
        };
        // Full 8-bit MATCHes first, one short one last: never two short ones in a row.
        let mut chunks: Vec<&[bool]> = path.chunks(8).collect();
        while let Some(chunk) = chunks.pop() {
            rest = matching(chunk, rest);
        }
        Some(rest)
    }

    fn asmap(entries: &[Entry]) -> Asmap {
        let bytes = pack(&encode(&trie(entries)).expect("a mapped prefix"));
        Asmap::from_bytes(&bytes).unwrap()
    }

    /// The longest prefix of `entries` holding `addr`, of equal ones the last.
    fn model(entries: &[Entry], addr: u128) -> Option<u32> {
        let mut best: Option<(u32, u32)> = None;
        for &(prefix, len, asn) in entries {
            if addr & mask(len) == prefix && best.is_none_or(|(l, _)| len >= l) {
                best = Some((len, asn));
            }
        }
        best.map(|(_, asn)| asn)
    }

    fn v4_entry(net: &str, asn: u32) -> Entry {
        let (ip, len) = net.split_once('/').unwrap();
        let ip: Ipv4Addr = ip.parse().unwrap();
        (
            u128::from(ip.to_ipv6_mapped()),
            96 + len.parse::<u32>().unwrap(),
            asn,
        )
    }

    fn v6_entry(net: &str, asn: u32) -> Entry {
        let (ip, len) = net.split_once('/').unwrap();
        let ip: Ipv6Addr = ip.parse().unwrap();
        (u128::from(ip), len.parse().unwrap(), asn)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Bitcoin Core `src/test/data/asmap.raw` (MIT), its address manager tests' map:
    /// 250.0.0.0/8 AS1000 and 101.N.0.0/16 ASN for N in 1..=8.
    const CORE_TEST_ASMAP: [u8; 59] = [
        0xfb, 0x03, 0xec, 0x0f, 0xb0, 0x3f, 0xc0, 0xfe, 0x00, 0xfb, 0x03, 0xec, 0x0f, 0xb0, 0x3f,
        0xc0, 0xfe, 0x00, 0xfb, 0x03, 0xec, 0x0f, 0xb0, 0xff, 0xff, 0xfe, 0xff, 0xed, 0xb0, 0xff,
        0xd4, 0x86, 0xe6, 0x28, 0x29, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x00, 0x40, 0x99, 0x01,
        0x00, 0x80, 0x01, 0x80, 0x04, 0x00, 0x00, 0x05, 0x00, 0x06, 0x00, 0x1c, 0xf0, 0x39,
    ];

    /// Bitcoin Core `src/test/fuzz/asmap.cpp` `IPV4_PREFIX_ASMAP`: twelve 8-bit MATCHes of the
    /// 96 bits of `::ffff:0:0/96`, to be followed by a program over the IPv4 address.
    const CORE_IPV4_PREFIX: [u8; 27] = [
        0xfb, 0x03, 0xec, 0x0f, 0xb0, 0x3f, 0xc0, 0xfe, 0x00, 0xfb, 0x03, 0xec, 0x0f, 0xb0, 0x3f,
        0xc0, 0xfe, 0x00, 0xfb, 0x03, 0xec, 0x0f, 0xb0, 0xff, 0xff, 0xfe, 0xff,
    ];

    #[test]
    fn core_test_map() {
        let map = Asmap::from_bytes(&CORE_TEST_ASMAP).unwrap();
        for addr in [
            "250.0.0.0",
            "250.1.1.1",
            "250.255.255.255",
            "::ffff:250.9.9.9",
        ] {
            assert_eq!(map.lookup(ip(addr)), Some(1000), "{addr}");
        }
        for n in 1..=8u8 {
            for addr in [[101, n, 0, 0], [101, n, 77, 3], [101, n, 255, 255]] {
                assert_eq!(map.lookup(Ipv4Addr::from(addr).into()), Some(u32::from(n)));
            }
        }
        // Core wrote the map "filled" (`asmap.py` `to_binary(fill=True)`): unassigned space
        // next to a prefix may answer its AS where that makes the map shorter.
        for (addr, asn) in [
            ("101.0.0.0", Some(1)),
            ("101.15.255.255", Some(8)),
            ("128.0.0.0", Some(1000)),
            ("1.2.3.4", None),
            ("100.255.255.255", None),
            ("101.16.0.0", None),
            ("127.255.255.255", None),
            ("::", None),
            ("2001:db8::1", None),
            ("ffff:ffff::", None),
        ] {
            assert_eq!(map.lookup(ip(addr)), asn, "{addr}");
        }
    }

    #[test]
    fn core_ipv4_prefix_then_a_program() {
        // The prefix alone stops after its twelfth MATCH.
        assert_eq!(
            Asmap::from_bytes(&CORE_IPV4_PREFIX),
            Err(Error::MissingReturn)
        );
        // All of IPv4 to AS 7; IPv6 fails the prefix, unmapped.
        let mut bytes = CORE_IPV4_PREFIX.to_vec();
        bytes.extend(pack(&ret(7)));
        let map = Asmap::from_bytes(&bytes).unwrap();
        assert_eq!(map.lookup(ip("1.2.3.4")), Some(7));
        assert_eq!(map.lookup(ip("255.255.255.255")), Some(7));
        assert_eq!(map.lookup(ip("2a01::1")), None);
        // The prefix is what this encoder writes for ::ffff:0:0/96.
        let ours = pack(&encode(&trie(&[v4_entry("0.0.0.0/0", 7)])).unwrap());
        assert_eq!(ours, bytes);
    }

    #[test]
    fn prefixes_map_to_their_as() {
        let map = asmap(&[
            v4_entry("1.2.0.0/16", 100),
            v4_entry("1.2.3.0/24", 101),
            v6_entry("2a01::/16", 200),
            v6_entry("2a01:4f8::/32", 201),
        ]);
        assert_eq!(map.lookup(ip("1.2.0.1")), Some(100));
        assert_eq!(map.lookup(ip("1.2.255.255")), Some(100));
        assert_eq!(map.lookup(ip("1.2.3.4")), Some(101));
        assert_eq!(map.lookup(ip("::ffff:1.2.3.4")), Some(101));
        assert_eq!(map.lookup(ip("1.3.0.0")), None);
        assert_eq!(map.lookup(ip("2a01:ffff::1")), Some(200));
        assert_eq!(map.lookup(ip("2a01:4f8:1::1")), Some(201));
        assert_eq!(map.lookup(ip("2a02::1")), None);
        assert_eq!(map.lookup(ip("::1")), None);
    }

    #[test]
    fn a_failed_match_answers_the_default() {
        // DEFAULT 50; MATCH 0010 (2000::/4) -> RETURN 60; anything else -> 50.
        let map = Asmap::from_bytes(&pack(&default(
            50,
            matching(&[false, false, true, false], ret(60)),
        )))
        .unwrap();
        assert_eq!(map.lookup(ip("2a01::1")), Some(60));
        assert_eq!(map.lookup(ip("3000::1")), Some(50));
        assert_eq!(map.lookup(ip("1.2.3.4")), Some(50));
        // Without the DEFAULT, the failed MATCH maps to nothing.
        let map =
            Asmap::from_bytes(&pack(&matching(&[false, false, true, false], ret(60)))).unwrap();
        assert_eq!(map.lookup(ip("3000::1")), None);
    }

    #[test]
    fn the_largest_as_number() {
        let map = Asmap::from_bytes(&pack(&ret(MAX_ASN))).unwrap();
        assert_eq!(map.lookup(ip("1.1.1.1")), Some(MAX_ASN));
        let map = Asmap::from_bytes(&pack(&ret(1))).unwrap();
        assert_eq!(map.lookup(ip("::")), Some(1));
    }

    #[test]
    fn every_cut_of_a_map_is_rejected() {
        let bytes = pack(
            &encode(&trie(&[
                v4_entry("1.2.0.0/16", 100),
                v6_entry("2a01::/16", 200),
                v6_entry("2a01:4f8::/32", 70_000),
            ]))
            .unwrap(),
        );
        Asmap::from_bytes(&bytes).unwrap();
        assert_eq!(Asmap::from_bytes(&[]), Err(Error::MissingReturn));
        for len in 1..bytes.len() {
            assert!(Asmap::from_bytes(&bytes[..len]).is_err(), "{len}");
        }
        // RETURN 1 is 17 bits: its third byte ends mid-instruction when cut to 2 bytes.
        assert_eq!(
            Asmap::from_bytes(&pack(&ret(1))[..2]),
            Err(Error::Truncated { bit: 0 })
        );
    }

    #[test]
    fn trailing_bits_are_rejected() {
        let mut bytes = pack(&ret(1));
        assert_eq!(bytes.len(), 3);
        // A whole byte more.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Asmap::from_bytes(&longer),
            Err(Error::ExcessPadding { bits: 15 })
        );
        // A set bit in the padding of the last byte.
        bytes[2] |= 0x80;
        assert_eq!(
            Asmap::from_bytes(&bytes),
            Err(Error::NonZeroPadding { bit: 23 })
        );
    }

    #[test]
    fn bad_jumps_are_rejected() {
        let h = |skip| jump_header(skip).len();
        let check = |bits: Vec<bool>| Asmap::from_bytes(&pack(&bits));
        // Past the end.
        let past = cat(&[&jump_header(1000), &ret(1), &ret(2)]);
        assert_eq!(check(past), Err(Error::JumpOutOfRange { bit: 0 }));
        // To the end: the branch for a 1 bit is missing (and the padding reads as a cut one).
        let to_end = cat(&[&jump_header(17), &ret(1)]);
        assert_eq!(to_end.len(), 25);
        assert_eq!(check(to_end), Err(Error::Truncated { bit: 25 }));
        // Beyond the next instruction: RETURN 2 is never run.
        let over = cat(&[&jump_header(34), &ret(1), &ret(2), &ret(3)]);
        assert_eq!(check(over), Err(Error::Unreachable { bit: h(34) + 17 }));
        // Short of the end of the first branch's last instruction.
        let first = default(5, matching(&[true], ret(1)));
        assert_eq!(first.len(), 19 + 5 + 17);
        let into = cat(&[&jump_header(30), &first, &ret(2)]);
        assert_eq!(
            check(into),
            Err(Error::JumpIntoInstruction { bit: h(30) + 24 })
        );
        // Inside an earlier instruction of the first branch.
        let into = cat(&[&jump_header(20), &first, &ret(2)]);
        assert_eq!(
            check(into),
            Err(Error::JumpIntoInstruction { bit: h(20) + 24 })
        );
        // An inner jump to the outer one's target.
        let outer = h(34) + 34;
        let crossing = cat(&[
            &jump_header(outer),
            &jump_header(34),
            &ret(1),
            &ret(2),
            &ret(3),
        ]);
        assert_eq!(
            check(crossing),
            Err(Error::JumpIntoInstruction { bit: h(outer) })
        );
        // And the same, nested properly.
        let nested = cat(&[&jump_header(h(17) + 34), &jump(ret(1), ret(2)), &ret(3)]);
        assert_eq!(nested, jump(jump(ret(1), ret(2)), ret(3)));
        let map = check(nested).unwrap();
        assert_eq!(map.lookup(ip("::")), Some(1));
        assert_eq!(map.lookup(ip("4000::")), Some(2));
        assert_eq!(map.lookup(ip("8000::")), Some(3));
    }

    #[test]
    fn reading_past_the_address_is_rejected() {
        // Sixteen 8-bit MATCHes use all 128 bits; a seventeenth does not fit, nor does a JUMP.
        let zeros = [false; 8];
        let mut full = ret(1);
        for _ in 0..16 {
            full = matching(&zeros, full);
        }
        Asmap::from_bytes(&pack(&full)).unwrap();
        let over = matching(&zeros, full.clone());
        assert_eq!(
            Asmap::from_bytes(&pack(&over)),
            Err(Error::AddressOverrun { bit: 16 * 18 })
        );
        let mut deep = jump(ret(1), ret(2));
        for _ in 0..16 {
            deep = matching(&zeros, deep);
        }
        assert_eq!(
            Asmap::from_bytes(&pack(&deep)),
            Err(Error::AddressOverrun { bit: 16 * 18 })
        );
    }

    #[test]
    fn non_canonical_instructions_are_rejected() {
        let twice = default(1, default(2, matching(&[true], ret(3))));
        assert!(matches!(
            Asmap::from_bytes(&pack(&twice)),
            Err(Error::InvalidInstruction { bit: 19, .. })
        ));
        let default_return = default(1, ret(3));
        assert!(matches!(
            Asmap::from_bytes(&pack(&default_return)),
            Err(Error::InvalidInstruction { bit: 19, .. })
        ));
        let short_short = matching(&[true], matching(&[false], ret(3)));
        assert!(matches!(
            Asmap::from_bytes(&pack(&short_short)),
            Err(Error::InvalidInstruction { bit: 5, .. })
        ));
        // A short MATCH after a full one is canonical.
        Asmap::from_bytes(&pack(&matching(&[true; 8], matching(&[false], ret(3))))).unwrap();
    }

    #[test]
    fn too_large_is_rejected_before_reading() {
        let bytes = vec![0u8; MAX_BYTES + 1];
        assert_eq!(
            Asmap::from_bytes(&bytes),
            Err(Error::TooLarge {
                len: MAX_BYTES + 1,
                max: MAX_BYTES
            })
        );
    }

    #[test]
    fn checksum_is_fnv1a_of_the_bytes() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let map = Asmap::from_bytes(&CORE_TEST_ASMAP).unwrap();
        assert_eq!(map.checksum(), fnv1a64(&CORE_TEST_ASMAP));
        assert_eq!(map.as_bytes(), CORE_TEST_ASMAP);
        let other = Asmap::from_bytes(&pack(&ret(1))).unwrap();
        assert_ne!(map.checksum(), other.checksum());
        assert!(format!("{map:?}").contains("len: 59"));
    }

    /// A prefix of `len` bits of `base` (an IPv4 one under `::ffff:0:0/96` if `v4`).
    fn prefix_of(base: u128, len: u32, v4: bool) -> (u128, u32) {
        let (value, len) = if v4 {
            ((0xffff << 32) | (base & 0xffff_ffff), 96 + len % 33)
        } else {
            (base, len)
        };
        (value & mask(len), len)
    }

    proptest! {
        #[test]
        fn lookups_match_longest_prefix(
            bases in proptest::array::uniform3(any::<u128>()),
            raw in proptest::collection::vec(
                (0usize..3, 0u32..=128, any::<bool>(), 1u32..=MAX_ASN), 1..12),
            probes in proptest::collection::vec((0usize..3, 0u32..129, any::<bool>()), 1..64),
        ) {
            let entries: Vec<Entry> = raw
                .iter()
                .map(|&(b, len, v4, asn)| {
                    let (prefix, len) = prefix_of(bases[b], len, v4);
                    (prefix, len, asn)
                })
                .collect();
            let bytes = pack(&encode(&trie(&entries)).unwrap());
            let map = Asmap::from_bytes(&bytes).unwrap();
            for &(b, flip, v4) in &probes {
                // A base address, with one bit flipped (or none): inside some of the
                // prefixes made from it, outside others. An IPv4 probe flips one of the
                // IPv4 bits or the lowest bit of the ::ffff mark.
                let (mut addr, flip) = if v4 {
                    ((0xffff << 32) | (bases[b] & 0xffff_ffff), flip % 34)
                } else {
                    (bases[b], flip)
                };
                if flip < 128 {
                    addr ^= 1 << flip;
                }
                let want = model(&entries, addr);
                prop_assert_eq!(map.lookup(Ipv6Addr::from(addr).into()), want, "{:032x}", addr);
                if let Some(v4) = Ipv6Addr::from(addr).to_ipv4_mapped() {
                    prop_assert_eq!(map.lookup(v4.into()), want);
                }
            }
        }

        #[test]
        fn a_checked_map_never_runs_off_its_end(
            base in any::<u128>(),
            raw in proptest::collection::vec((0u32..=128, 1u32..=MAX_ASN), 1..8),
            flips in proptest::collection::vec(any::<proptest::sample::Index>(), 1..4),
            tail in proptest::collection::vec(any::<u8>(), 0..24),
            probes in proptest::collection::vec(any::<u128>(), 1..16),
        ) {
            // Corrupt a valid map, or append noise to Core's IPv4 prefix, as Core's fuzzer;
            // whatever the check accepts, every lookup finds a RETURN (else `lookup` asserts).
            let entries: Vec<Entry> =
                raw.iter().map(|&(len, asn)| (base & mask(len), len, asn)).collect();
            let mut bits = encode(&trie(&entries)).unwrap();
            for i in &flips {
                let i = i.index(bits.len());
                bits[i] = !bits[i];
            }
            let mut fuzzed = CORE_IPV4_PREFIX.to_vec();
            fuzzed.extend(&tail);
            for bytes in [pack(&bits), fuzzed] {
                if let Ok(map) = Asmap::from_bytes(&bytes) {
                    for &p in &probes {
                        let _ = map.lookup(Ipv6Addr::from(p).into());
                        let _ = map.lookup(Ipv6Addr::from(base ^ (p >> 100)).into());
                    }
                }
            }
        }
    }
}
