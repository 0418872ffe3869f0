//! Learning a stream's protocol from its multistream-select negotiation as the bytes go by,
//! without changing any of them: the [`Sniffer`] a muxer wrapper feeds with what it writes and
//! reads on each stream, so that every stream can be charged to its protocol's scope (go-libp2p
//! calls `SetProtocol` once multistream-select has negotiated, swarm_stream.go and
//! basic_host.go; a rust-libp2p muxer never learns the protocol otherwise).
//!
//! ## The wire format (multistream-select 1.0.0)
//!
//! Each message is an unsigned varint length, then that many bytes ending in `\n`. Both sides
//! first send the header `/multistream/1.0.0\n`. The dialer then proposes a protocol
//! (`/ipfs/ping/1.0.0\n`); the listener answers with the same message to accept it or with
//! `na\n` to refuse it, and the dialer may propose the next. In the optimistic form (rust-libp2p
//! `Version::V1Lazy`, js-libp2p's lazy select) the dialer sends the header, its only proposal
//! and then its data at once, without waiting for the answer.
//!
//! ## What the sniffer reports
//!
//! - As **dialer** (we opened the stream): [`Sniffed::Proposed`] when we write a proposal, so
//!   that a lazily proposed stream is charged at once; then [`Sniffed::Refused`] if the remote
//!   answers `na` (release the charge; the next proposal is reported again) or
//!   [`Sniffed::Confirmed`] when it echoes the proposal. What we write after a proposal is not
//!   read until the answer comes: with the optimistic form it is already the protocol's data.
//! - As **listener** (the remote opened it): [`Sniffed::Accepted`] when we write our acceptance.
//!   What the remote proposes is not read at all: only a protocol we accept is ever named, so a
//!   remote cannot create scopes for names of its choosing.
//!
//! ## Bounds
//!
//! A message longer than [`MAX_MESSAGE`] bytes (a protocol name of [`MAX_PROTOCOL_LEN`] bytes
//! and its `\n`, go-multistream's limit), more than [`MAX_PROPOSALS`] of our proposals, a
//! first message that is not the header, a name that is not UTF-8, `ls` (the listing request)
//! or an answer that is neither `na` nor the proposal end the sniffing with
//! [`Sniffed::GaveUp`]: the stream stays unattributed. As listener, a remote that proposes
//! more than [`MAX_PROPOSALS`] protocols on one stream gets [`Sniffed::TooManyProposals`]
//! instead, and the stream is refused: otherwise eight unknown proposals and then a real one
//! would take a stream past the sniffer's bound and out of its protocol's limits. The only
//! allocation is the protocol name's (as dialer, the buffer of our proposal, which the answer
//! is compared with in place).

/// The longest protocol name read, in bytes (go-multistream's limit).
pub const MAX_PROTOCOL_LEN: usize = 1024;

/// The longest message read, in bytes: a protocol name of [`MAX_PROTOCOL_LEN`] and its `\n`.
pub const MAX_MESSAGE: usize = MAX_PROTOCOL_LEN + 1;

/// Proposals read on one stream before giving up.
pub const MAX_PROPOSALS: u8 = 8;

/// The multistream-select header, with its `\n`.
pub const HEADER: &[u8] = b"/multistream/1.0.0\n";

const NA: &[u8] = b"na\n";

/// Which side of the negotiation we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We opened the stream and propose protocols.
    Dialer,
    /// The remote opened the stream; we accept or refuse its proposals.
    Listener,
}

/// What one message of the negotiation means for the stream's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed<'a> {
    /// We proposed this protocol (dialer): charge the stream to it now.
    Proposed(&'a str),
    /// The remote refused our last proposal with `na` (dialer): release the charge.
    Refused,
    /// The remote accepted our proposal (dialer); the negotiation is over.
    Confirmed,
    /// We accepted this protocol (listener); the negotiation is over.
    Accepted(&'a str),
    /// Not a negotiation within the bounds: release any charge; the stream stays unattributed.
    GaveUp,
    /// The remote proposed more than [`MAX_PROPOSALS`] protocols (listener): refuse the stream.
    TooManyProposals,
}

/// Reads the frames of one direction: a varint length, then the body, in pieces.
/// Small, as each open stream holds one (every length fits in 14 bits).
#[derive(Debug, Default, Clone, Copy)]
struct Frames {
    /// The body bytes still to come; 0 while reading the length (a body is never empty).
    remaining: u16,
    len: u16,
    shift: u8,
}

enum Piece<'b> {
    /// Part of a body (of a message of `len` bytes), and whether it ends it.
    Body {
        bytes: &'b [u8],
        len: usize,
        end: bool,
    },
    /// A length of 0, above [`MAX_MESSAGE`], or a varint too long for one.
    Bad,
}

impl Frames {
    /// The next piece of `input`, consuming it, or `None` once `input` is used up.
    fn next<'b>(&mut self, input: &mut &'b [u8]) -> Option<Piece<'b>> {
        loop {
            let (&first, rest) = input.split_first()?;
            if self.remaining == 0 {
                *input = rest;
                self.len |= u16::from(first & 0x7f) << self.shift;
                self.shift += 7;
                if first & 0x80 != 0 {
                    // Two varint bytes hold 16,383, well above the longest message.
                    if self.shift >= 14 {
                        return Some(Piece::Bad);
                    }
                    continue;
                }
                if self.len == 0 || usize::from(self.len) > MAX_MESSAGE {
                    return Some(Piece::Bad);
                }
                self.remaining = self.len;
                self.shift = 0;
                continue;
            }
            let r = usize::from(self.remaining);
            let n = r.min(input.len());
            let (bytes, rest) = input.split_at(n);
            *input = rest;
            let left = r - n;
            let len = usize::from(self.len);
            // `left < remaining`, which fits.
            self.remaining = left as u16;
            if left == 0 {
                self.len = 0;
            }
            return Some(Piece::Body {
                bytes,
                len,
                end: left == 0,
            });
        }
    }
}

/// Compares a message with an expected one as its pieces arrive, without buffering it.
#[derive(Debug, Default, Clone, Copy)]
struct Compare {
    /// Bytes compared so far (a message is at most [`MAX_MESSAGE`] bytes).
    pos: u16,
    differs: bool,
}

impl Compare {
    fn feed(&mut self, expected: &[u8], bytes: &[u8]) {
        let pos = usize::from(self.pos);
        if !self.differs {
            self.differs = expected.get(pos..pos + bytes.len()) != Some(bytes);
        }
        // Within one message, which fits.
        self.pos = (pos + bytes.len()) as u16;
    }

    fn matches(self, expected: &[u8]) -> bool {
        !self.differs && usize::from(self.pos) == expected.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Expecting the header.
    Header,
    /// Expecting proposals (what we write as dialer, answers as listener).
    Messages,
    /// Dialer: our proposal is out; what we write next is not read until the answer.
    Awaiting,
    /// Over: agreed or given up.
    Done,
}

/// The negotiation of one stream, fed with the bytes written and read on it. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Sniffer {
    role: Role,
    /// The phase of what we write.
    write: Phase,
    /// Whether the remote's header was read (dialer).
    read_header: bool,
    proposals: u8,
    out: Frames,
    inbound: Frames,
    /// Our header, or the answer being read (against `na\n` and `message`).
    out_header: Compare,
    in_header: Compare,
    in_na: Compare,
    in_echo: Compare,
    /// The message we are writing; as dialer, our pending proposal with its `\n`.
    message: Vec<u8>,
}

impl Sniffer {
    /// A sniffer for a new stream.
    pub fn new(role: Role) -> Self {
        Sniffer {
            role,
            write: Phase::Header,
            read_header: false,
            proposals: 0,
            out: Frames::default(),
            inbound: Frames::default(),
            out_header: Compare::default(),
            in_header: Compare::default(),
            in_na: Compare::default(),
            in_echo: Compare::default(),
            message: Vec::new(),
        }
    }

    /// Whether the negotiation is over (agreed or given up): nothing more needs feeding.
    pub fn is_done(&self) -> bool {
        self.write == Phase::Done
    }

    fn give_up(&mut self, f: &mut impl FnMut(Sniffed<'_>)) {
        self.write = Phase::Done;
        self.message = Vec::new();
        f(Sniffed::GaveUp);
    }

    /// Feeds bytes we wrote on the stream (those the stream accepted), reporting what they mean
    /// to `f`.
    pub fn wrote(&mut self, mut bytes: &[u8], mut f: impl FnMut(Sniffed<'_>)) {
        while matches!(self.write, Phase::Header | Phase::Messages) {
            let Some(piece) = self.out.next(&mut bytes) else {
                return;
            };
            let (body, len, end) = match piece {
                Piece::Body { bytes, len, end } => (bytes, len, end),
                Piece::Bad => return self.give_up(&mut f),
            };
            if self.write == Phase::Header {
                // A wrong header is given up on at its first wrong byte.
                self.out_header.feed(HEADER, body);
                if self.out_header.differs || (end && !self.out_header.matches(HEADER)) {
                    return self.give_up(&mut f);
                }
                if end {
                    self.write = Phase::Messages;
                }
                continue;
            }
            if self.message.is_empty() {
                self.message.reserve_exact(len);
            }
            self.message.extend_from_slice(body);
            if end {
                self.written_message(&mut f);
            }
        }
    }

    /// A whole message we wrote after the header is in `message`.
    fn written_message(&mut self, f: &mut impl FnMut(Sniffed<'_>)) {
        let name = match self.message.split_last() {
            Some((b'\n', name)) if name.first() == Some(&b'/') => std::str::from_utf8(name).ok(),
            _ => None,
        };
        match (self.role, name) {
            (Role::Dialer, Some(_)) => {
                self.proposals += 1;
                if self.proposals > MAX_PROPOSALS {
                    return self.give_up(f);
                }
                self.write = Phase::Awaiting;
                self.in_na = Compare::default();
                self.in_echo = Compare::default();
                let name = &self.message[..self.message.len() - 1];
                f(Sniffed::Proposed(
                    std::str::from_utf8(name).expect("checked above"),
                ));
            }
            // `ls`, or a proposal that is no protocol name.
            (Role::Dialer, None) => self.give_up(f),
            (Role::Listener, Some(name)) => {
                self.write = Phase::Done;
                f(Sniffed::Accepted(name));
                self.message = Vec::new();
            }
            // `na`, or the listing answering `ls`: the next proposal may follow.
            (Role::Listener, None) => {
                self.proposals += 1;
                if self.proposals >= MAX_PROPOSALS {
                    self.write = Phase::Done;
                    self.message = Vec::new();
                    return f(Sniffed::TooManyProposals);
                }
                self.message.clear();
            }
        }
    }

    /// Feeds bytes we read from the stream, reporting what they mean to `f`. Only a dialer reads
    /// anything: the header and the answers to its proposals.
    pub fn read(&mut self, mut bytes: &[u8], mut f: impl FnMut(Sniffed<'_>)) {
        if self.role == Role::Listener {
            return;
        }
        while self.write != Phase::Done {
            let Some(piece) = self.inbound.next(&mut bytes) else {
                return;
            };
            let (body, end) = match piece {
                Piece::Body { bytes, end, .. } => (bytes, end),
                Piece::Bad => return self.give_up(&mut f),
            };
            if !self.read_header {
                self.in_header.feed(HEADER, body);
                if self.in_header.differs || (end && !self.in_header.matches(HEADER)) {
                    return self.give_up(&mut f);
                }
                self.read_header = end;
                continue;
            }
            // An answer with no proposal out breaks the protocol.
            if self.write != Phase::Awaiting {
                return self.give_up(&mut f);
            }
            self.in_na.feed(NA, body);
            self.in_echo.feed(&self.message, body);
            if !end {
                continue;
            }
            if self.in_echo.matches(&self.message) {
                self.write = Phase::Done;
                self.message = Vec::new();
                f(Sniffed::Confirmed);
            } else if self.in_na.matches(NA) {
                self.write = Phase::Messages;
                self.message.clear();
                f(Sniffed::Refused);
            } else {
                return self.give_up(&mut f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as multistream-select frames it.
    fn msg(text: &str) -> Vec<u8> {
        let body = format!("{text}\n");
        let mut out = Vec::new();
        let mut n = body.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(body.as_bytes());
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Ev {
        Proposed(String),
        Refused,
        Confirmed,
        Accepted(String),
        GaveUp,
        TooMany,
    }

    fn own(s: Sniffed<'_>) -> Ev {
        match s {
            Sniffed::Proposed(p) => Ev::Proposed(p.to_owned()),
            Sniffed::Refused => Ev::Refused,
            Sniffed::Confirmed => Ev::Confirmed,
            Sniffed::Accepted(p) => Ev::Accepted(p.to_owned()),
            Sniffed::GaveUp => Ev::GaveUp,
            Sniffed::TooManyProposals => Ev::TooMany,
        }
    }

    /// Feeds a script of (we wrote?, bytes), each split into `chunk`-byte pieces.
    fn run(role: Role, script: &[(bool, Vec<u8>)], chunk: usize) -> Vec<Ev> {
        let mut s = Sniffer::new(role);
        let mut evs = Vec::new();
        for (wrote, bytes) in script {
            for piece in bytes.chunks(chunk.max(1)) {
                if *wrote {
                    s.wrote(piece, |e| evs.push(own(e)));
                } else {
                    s.read(piece, |e| evs.push(own(e)));
                }
            }
        }
        evs
    }

    /// Feeds each script step split at the given cut points (modulo its length).
    fn run_cut(role: Role, script: &[(bool, Vec<u8>)], cuts: &[usize]) -> Vec<Ev> {
        let mut s = Sniffer::new(role);
        let mut evs = Vec::new();
        let mut cuts = cuts.iter().cycle();
        for (wrote, bytes) in script {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + cuts.next().copied().unwrap_or(0) % rest.len();
                let (piece, tail) = rest.split_at(n);
                rest = tail;
                if *wrote {
                    s.wrote(piece, |e| evs.push(own(e)));
                } else {
                    s.read(piece, |e| evs.push(own(e)));
                }
            }
        }
        evs
    }

    /// Nothing follows an event that ends the negotiation.
    fn well_formed(evs: &[Ev]) -> bool {
        evs.iter()
            .position(|e| {
                matches!(
                    e,
                    Ev::Confirmed | Ev::Accepted(_) | Ev::GaveUp | Ev::TooMany
                )
            })
            .is_none_or(|i| i == evs.len() - 1)
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            steps in proptest::collection::vec(
                (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
                0..8,
            ),
            cuts in proptest::collection::vec(0usize..64, 1..16),
            dialer in proptest::bool::ANY,
        ) {
            let role = if dialer { Role::Dialer } else { Role::Listener };
            let evs = run_cut(role, &steps, &cuts);
            proptest::prop_assert!(well_formed(&evs), "{evs:?}");
        }

        #[test]
        fn a_valid_negotiation_is_found_however_it_is_split(
            refused in proptest::collection::vec("/[a-z0-9/._-]{0,40}", 0..=7),
            chosen in "/[a-z0-9/._-]{0,1023}",
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            lazy in proptest::bool::ANY,
            cuts in proptest::collection::vec(0usize..2048, 1..16),
        ) {
            let h = msg("/multistream/1.0.0");
            // The dialer's side: each proposal refused, then the chosen one echoed.
            let mut script = vec![(true, h.clone()), (false, h.clone())];
            for p in &refused {
                script.push((true, msg(p)));
                script.push((false, msg("na")));
            }
            if lazy {
                script.push((true, cat(&[&msg(&chosen), &data])));
                script.push((false, cat(&[&msg(&chosen), &data])));
            } else {
                script.push((true, msg(&chosen)));
                script.push((false, cat(&[&msg(&chosen), &data])));
                script.push((true, data.clone()));
            }
            let mut want = Vec::new();
            for p in &refused {
                want.push(Ev::Proposed(p.clone()));
                want.push(Ev::Refused);
            }
            want.push(Ev::Proposed(chosen.clone()));
            want.push(Ev::Confirmed);
            proptest::prop_assert_eq!(run_cut(Role::Dialer, &script, &cuts), want);

            // The listener's side of the same negotiation.
            let mut proposals = h.clone();
            let mut answers = h.clone();
            for p in &refused {
                proposals.extend(msg(p));
                answers.extend(msg("na"));
            }
            proposals.extend(msg(&chosen));
            answers.extend(cat(&[&msg(&chosen), &data]));
            let script = [(false, proposals), (true, answers)];
            proptest::prop_assert_eq!(
                run_cut(Role::Listener, &script, &cuts),
                vec![Ev::Accepted(chosen.clone())]
            );
        }
    }

    #[test]
    fn a_sniffer_is_small() {
        // Every open stream holds one until its negotiation ends.
        assert!(
            std::mem::size_of::<Sniffer>() <= 64,
            "{}",
            std::mem::size_of::<Sniffer>()
        );
    }

    #[test]
    fn dialer_v1_with_a_refusal_then_an_acceptance() {
        let h = msg("/multistream/1.0.0");
        let script = [
            (true, cat(&[&h, &msg("/a/1")])),
            (false, cat(&[&h, &msg("na")])),
            (true, msg("/ipfs/ping/1.0.0")),
            (false, msg("/ipfs/ping/1.0.0")),
            (true, b"32 bytes of ping payload, ignored".to_vec()),
        ];
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(
                run(Role::Dialer, &script, chunk),
                [
                    Ev::Proposed("/a/1".into()),
                    Ev::Refused,
                    Ev::Proposed("/ipfs/ping/1.0.0".into()),
                    Ev::Confirmed
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn lazy_dialer_is_charged_at_once_and_its_data_is_not_read() {
        let h = msg("/multistream/1.0.0");
        // Data that looks like a proposal must not be taken for one.
        let script = [
            (true, cat(&[&h, &msg("/x/1"), &msg("/y/1"), b"data"])),
            (false, cat(&[&h, &msg("na")])),
        ];
        assert_eq!(
            run(Role::Dialer, &script, 1000),
            [Ev::Proposed("/x/1".into()), Ev::Refused]
        );
    }

    #[test]
    fn listener_reports_only_what_it_accepts() {
        let h = msg("/multistream/1.0.0");
        let script = [
            (false, cat(&[&h, &msg("/not/ours"), &msg("/ipfs/id/1.0.0")])),
            (true, cat(&[&h, &msg("na")])),
            (true, cat(&[&msg("/ipfs/id/1.0.0"), b"payload"])),
        ];
        for chunk in [1, 5, 1000] {
            assert_eq!(
                run(Role::Listener, &script, chunk),
                [Ev::Accepted("/ipfs/id/1.0.0".into())]
            );
        }
    }

    #[test]
    fn gives_up_past_the_bounds() {
        let h = msg("/multistream/1.0.0");
        // A name of 1,024 bytes is read; one of 1,025 is not.
        let long = format!("/{}", "a".repeat(MAX_PROTOCOL_LEN - 1));
        assert_eq!(
            run(Role::Dialer, &[(true, cat(&[&h, &msg(&long)]))], 100),
            [Ev::Proposed(long.clone())]
        );
        let longer = format!("{long}b");
        assert_eq!(
            run(Role::Dialer, &[(true, cat(&[&h, &msg(&longer)]))], 100),
            [Ev::GaveUp]
        );
        // Eight refusals are followed; the ninth proposal is one too many.
        let mut script = Vec::new();
        script.push((true, h.clone()));
        script.push((false, h.clone()));
        for i in 0..9 {
            script.push((true, msg(&format!("/p/{i}"))));
            script.push((false, msg("na")));
        }
        let evs = run(Role::Dialer, &script, 1000);
        assert_eq!(evs.len(), 17, "{evs:?}");
        assert_eq!(evs[16], Ev::GaveUp);
        // Not multistream-select at all; `ls`; an answer that is neither `na` nor the echo.
        assert_eq!(
            run(
                Role::Dialer,
                &[(true, b"GET / HTTP/1.1\r\n".to_vec())],
                1000
            ),
            [Ev::GaveUp]
        );
        assert_eq!(
            run(Role::Dialer, &[(true, cat(&[&h, &msg("ls")]))], 1000),
            [Ev::GaveUp]
        );
        assert_eq!(
            run(
                Role::Dialer,
                &[
                    (true, cat(&[&h, &msg("/a")])),
                    (false, cat(&[&h, &msg("/b")]))
                ],
                1000
            ),
            [Ev::Proposed("/a".into()), Ev::GaveUp]
        );
        // A remote that proposes protocols we refuse: refused at the eighth `na`, so that a
        // ninth proposal, one we would accept, cannot escape its protocol's scope.
        let mut answers = h.clone();
        for _ in 0..7 {
            answers.extend(msg("na"));
        }
        assert!(run(Role::Listener, &[(true, answers.clone())], 1000).is_empty());
        answers.extend(msg("na"));
        answers.extend(msg("/ipfs/ping/1.0.0"));
        assert_eq!(run(Role::Listener, &[(true, answers)], 1000), [Ev::TooMany]);
        // A varint of three bytes.
        assert_eq!(
            run(Role::Listener, &[(true, vec![0x80, 0x80, 0x01])], 1000),
            [Ev::GaveUp]
        );
    }
}
