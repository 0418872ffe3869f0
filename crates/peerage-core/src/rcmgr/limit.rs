//! Limits: go's limit model (a base plus an increase per GiB of memory), its default values, and
//! its JSON limit-config format.

use std::collections::BTreeMap;

use libp2p_identity::PeerId;

use super::Direction;

/// The value of an unlimited count or memory limit (go `Unlimited`, which it stores as
/// `MaxInt`).
pub const UNLIMITED: u64 = u64::MAX;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Concrete limits of one scope (go `BaseLimit`). A count of 0 blocks everything of that kind;
/// [`UNLIMITED`] never blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct BaseLimit {
    /// Streams in both directions.
    pub streams: u64,
    /// Inbound streams.
    pub streams_inbound: u64,
    /// Outbound streams.
    pub streams_outbound: u64,
    /// Connections in both directions.
    pub conns: u64,
    /// Inbound connections.
    pub conns_inbound: u64,
    /// Outbound connections.
    pub conns_outbound: u64,
    /// File descriptors.
    pub fd: u64,
    /// Memory, in bytes.
    pub memory: u64,
}

impl BaseLimit {
    /// Limits that block everything (go `BlockAllLimit` everywhere): every field 0.
    pub const BLOCK_ALL: Self = Self {
        streams: 0,
        streams_inbound: 0,
        streams_outbound: 0,
        conns: 0,
        conns_inbound: 0,
        conns_outbound: 0,
        fd: 0,
        memory: 0,
    };

    /// Limits that block nothing (go `InfiniteLimits`): every field [`UNLIMITED`].
    pub const UNLIMITED: Self = Self {
        streams: UNLIMITED,
        streams_inbound: UNLIMITED,
        streams_outbound: UNLIMITED,
        conns: UNLIMITED,
        conns_inbound: UNLIMITED,
        conns_outbound: UNLIMITED,
        fd: UNLIMITED,
        memory: UNLIMITED,
    };

    /// The stream limit in one direction.
    pub fn streams_in(&self, dir: Direction) -> u64 {
        match dir {
            Direction::Inbound => self.streams_inbound,
            Direction::Outbound => self.streams_outbound,
        }
    }

    /// The connection limit in one direction.
    pub fn conns_in(&self, dir: Direction) -> u64 {
        match dir {
            Direction::Inbound => self.conns_inbound,
            Direction::Outbound => self.conns_outbound,
        }
    }
}

/// How a scope's limits grow with the memory given to the node (go `BaseLimitIncrease`): counts
/// and memory are added per GiB; `fd_fraction` (0 to 1) is the share of the node's file
/// descriptors.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LimitIncrease {
    /// Streams in both directions, per GiB.
    pub streams: u64,
    /// Inbound streams, per GiB.
    pub streams_inbound: u64,
    /// Outbound streams, per GiB.
    pub streams_outbound: u64,
    /// Connections in both directions, per GiB.
    pub conns: u64,
    /// Inbound connections, per GiB.
    pub conns_inbound: u64,
    /// Outbound connections, per GiB.
    pub conns_outbound: u64,
    /// Memory, in bytes per GiB.
    pub memory: u64,
    /// Share of the node's file descriptors, from 0 to 1.
    pub fd_fraction: f64,
}

/// A scope's limits before scaling: a base and an increase (go's `{X}BaseLimit` and
/// `{X}LimitIncrease` pair).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScaledLimit {
    /// The limits with 128 MiB or less.
    pub base: BaseLimit,
    /// What is added per GiB above that.
    pub increase: LimitIncrease,
}

impl ScaledLimit {
    /// Scales to `memory` bytes and `fds` file descriptors, as go `scale`: at or below 128 MiB
    /// only the base applies; above it each count and the memory grow by their increase per GiB
    /// (integer arithmetic on whole MiB, saturating); the FD limit is `fd_fraction * fds`, never
    /// below the base.
    pub fn scale(&self, memory: u64, fds: u64) -> BaseLimit {
        let mib = if memory > 128 * MIB { memory >> 20 } else { 0 };
        let grow = |base: u64, inc: u64| base.saturating_add(inc.saturating_mul(mib) >> 10);
        let (b, i) = (&self.base, &self.increase);
        let fd = if i.fd_fraction > 0.0 && fds > 0 {
            ((i.fd_fraction * fds as f64) as u64).max(b.fd)
        } else {
            b.fd
        };
        BaseLimit {
            streams: grow(b.streams, i.streams),
            streams_inbound: grow(b.streams_inbound, i.streams_inbound),
            streams_outbound: grow(b.streams_outbound, i.streams_outbound),
            conns: grow(b.conns, i.conns),
            conns_inbound: grow(b.conns_inbound, i.conns_inbound),
            conns_outbound: grow(b.conns_outbound, i.conns_outbound),
            fd,
            memory: grow(b.memory, i.memory),
        }
    }
}

/// Limits of every scope, concrete ([`LimitConfig`]) or before scaling
/// ([`ScalingLimitConfig`]), in go's `PartialLimitConfig` shape: one value per fixed scope, a
/// default plus per-key entries for services, protocols and peers.
///
/// A lookup with a key that has no entry gives the default of its kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits<T> {
    pub(super) system: T,
    pub(super) transient: T,
    pub(super) allowlisted_system: T,
    pub(super) allowlisted_transient: T,
    pub(super) service_default: T,
    pub(super) service: BTreeMap<String, T>,
    pub(super) service_peer_default: T,
    pub(super) service_peer: BTreeMap<String, T>,
    pub(super) protocol_default: T,
    pub(super) protocol: BTreeMap<String, T>,
    pub(super) protocol_peer_default: T,
    pub(super) protocol_peer: BTreeMap<String, T>,
    pub(super) peer_default: T,
    pub(super) peer: BTreeMap<PeerId, T>,
    pub(super) conn: T,
    pub(super) stream: T,
}

/// Concrete limits of every scope, as go `ConcreteLimitConfig`.
pub type LimitConfig = Limits<BaseLimit>;

/// Limits of every scope before scaling, as go `ScalingLimitConfig`; its [`Default`] is go's
/// `DefaultLimits` with go's two default-value bugs fixed (see [`ScalingLimitConfig::default`]).
pub type ScalingLimitConfig = Limits<ScaledLimit>;

macro_rules! fixed_scopes {
    ($($field:ident, $with:ident, $doc:literal;)*) => {
        $(
            #[doc = concat!("The limits of the ", $doc, ".")]
            pub fn $field(&self) -> &T {
                &self.$field
            }

            #[doc = concat!("Sets the limits of the ", $doc, ".")]
            pub fn $with(mut self, limit: T) -> Self {
                self.$field = limit;
                self
            }
        )*
    };
}

macro_rules! keyed_scopes {
    ($($field:ident, $default:ident, $with:ident, $with_default:ident, $key:ty, $borrowed:ty, $doc:literal;)*) => {
        $(
            #[doc = concat!("The limits of the ", $doc, " `key`, or the default ones if it has no entry.")]
            pub fn $field(&self, key: &$borrowed) -> &T {
                self.$field.get(key).unwrap_or(&self.$default)
            }

            #[doc = concat!("The default limits of a ", $doc, ".")]
            pub fn $default(&self) -> &T {
                &self.$default
            }

            #[doc = concat!("Sets the limits of the ", $doc, " `key`.")]
            pub fn $with(mut self, key: impl Into<$key>, limit: T) -> Self {
                self.$field.insert(key.into(), limit);
                self
            }

            #[doc = concat!("Sets the default limits of a ", $doc, ".")]
            pub fn $with_default(mut self, limit: T) -> Self {
                self.$default = limit;
                self
            }
        )*
    };
}

impl<T> Limits<T> {
    fixed_scopes! {
        system, with_system, "system scope (everything)";
        transient, with_transient, "transient scope (connections before their peer is known, streams before their protocol)";
        allowlisted_system, with_allowlisted_system, "allowlisted system scope";
        allowlisted_transient, with_allowlisted_transient, "allowlisted transient scope";
        conn, with_conn, "scope of each connection";
        stream, with_stream, "scope of each stream";
    }

    keyed_scopes! {
        service, service_default, with_service, with_service_default, String, str, "service";
        service_peer, service_peer_default, with_service_peer, with_service_peer_default, String, str, "per-peer scope of the service";
        protocol, protocol_default, with_protocol, with_protocol_default, String, str, "protocol";
        protocol_peer, protocol_peer_default, with_protocol_peer, with_protocol_peer_default, String, str, "per-peer scope of the protocol";
        peer, peer_default, with_peer, with_peer_default, PeerId, PeerId, "peer";
    }

    /// Applies `f` to every value, keeping the shape.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Limits<U> {
        let mut map_keyed =
            |m: &BTreeMap<String, T>| m.iter().map(|(k, v)| (k.clone(), f(v))).collect();
        let service = map_keyed(&self.service);
        let service_peer = map_keyed(&self.service_peer);
        let protocol = map_keyed(&self.protocol);
        let protocol_peer = map_keyed(&self.protocol_peer);
        Limits {
            system: f(&self.system),
            transient: f(&self.transient),
            allowlisted_system: f(&self.allowlisted_system),
            allowlisted_transient: f(&self.allowlisted_transient),
            service_default: f(&self.service_default),
            service,
            service_peer_default: f(&self.service_peer_default),
            service_peer,
            protocol_default: f(&self.protocol_default),
            protocol,
            protocol_peer_default: f(&self.protocol_peer_default),
            protocol_peer,
            peer_default: f(&self.peer_default),
            peer: self.peer.iter().map(|(k, v)| (*k, f(v))).collect(),
            conn: f(&self.conn),
            stream: f(&self.stream),
        }
    }

    fn all(value: T) -> Self
    where
        T: Clone,
    {
        Limits {
            system: value.clone(),
            transient: value.clone(),
            allowlisted_system: value.clone(),
            allowlisted_transient: value.clone(),
            service_default: value.clone(),
            service: BTreeMap::new(),
            service_peer_default: value.clone(),
            service_peer: BTreeMap::new(),
            protocol_default: value.clone(),
            protocol: BTreeMap::new(),
            protocol_peer_default: value.clone(),
            protocol_peer: BTreeMap::new(),
            peer_default: value.clone(),
            peer: BTreeMap::new(),
            conn: value.clone(),
            stream: value,
        }
    }
}

impl LimitConfig {
    /// Limits that block nothing (go `InfiniteLimits`).
    pub fn unlimited() -> Self {
        Self::all(BaseLimit::UNLIMITED)
    }

    /// Limits that block everything.
    pub fn block_all() -> Self {
        Self::all(BaseLimit::BLOCK_ALL)
    }
}

impl Default for LimitConfig {
    /// go's `DefaultLimits` at their base values, as scaled for 128 MiB of memory and 256 file
    /// descriptors. A node should rather scale them to its machine (`peerage::rcmgr::auto_scale`).
    fn default() -> Self {
        ScalingLimitConfig::default().scale(128 * MIB, 256)
    }
}

impl ScalingLimitConfig {
    /// Scales every scope to `memory` bytes and `fds` file descriptors (go `Scale`; see
    /// [`ScaledLimit::scale`]).
    pub fn scale(&self, memory: u64, fds: u64) -> LimitConfig {
        self.map(|l| l.scale(memory, fds))
    }

    /// Adds the limits of the services a Peerage node runs: go-libp2p's
    /// `SetDefaultServiceLimits` (`limits.go`, which go-libp2p applies before `AutoScale`) for
    /// identify and ping, and Peerage's for peer exchange. Streams inbound/outbound/total,
    /// then memory; above 128 MiB the increase is added per GiB of memory; service-peer and protocol-peer
    /// limits do not grow:
    ///
    /// | scope | base | increase |
    /// |---|---|---|
    /// | service `libp2p.identify`; protocols `/ipfs/id/1.0.0`, `/ipfs/id/push/1.0.0` | 64/64/128, 4 MiB | 64/64/128, 4 MiB |
    /// | its service-peer scope | 16/16/32, 1 MiB | – |
    /// | the protocols' protocol-peer scopes | 16/16/32, 32 × (256 MiB + 16 KiB) | – |
    /// | service `libp2p.ping`; protocol `/ipfs/ping/1.0.0` | 64/64/64, 4 MiB | 64/64/64, 4 MiB |
    /// | their service-peer and protocol-peer scopes | 2/3/4, 32 × (256 MiB + 16 KiB) | – |
    /// | service `peerage.pex`; protocol `/peerage/pex/1.0.0` | 1024/1024/2048, 16 MiB | 1024/1024/2048, 16 MiB |
    /// | their service-peer and protocol-peer scopes | 4/4/8, 1 MiB | – |
    ///
    /// Peer exchange: a node asks each peer at most once per round and answers each peer at
    /// most once per cooldown with one more request waiting, so an honest peer holds at most
    /// two inbound streams and one outbound; 4 leaves room for a second connection. The
    /// service-wide limit only bounds the total, at a node answering a thousand peers at once.
    pub fn with_default_service_limits(mut self) -> Self {
        let (k, m) = (1 << 10, MIB);
        let window = 32 * (256 * MIB + 16 * k);
        let limit = |streams: [u64; 3], memory: u64, inc: [u64; 3], inc_memory: u64| ScaledLimit {
            base: counts([0; 3], streams, memory, 0),
            increase: increase([0; 3], inc, inc_memory, 0.0),
        };
        let fixed = |streams: [u64; 3], memory: u64| limit(streams, memory, [0; 3], 0);
        let identify = limit([64, 64, 128], 4 * m, [64, 64, 128], 4 * m);
        self.service
            .insert(super::IDENTIFY_SERVICE.into(), identify);
        self.service_peer
            .insert(super::IDENTIFY_SERVICE.into(), fixed([16, 16, 32], m));
        for p in super::IDENTIFY_PROTOCOLS {
            self.protocol.insert(p.into(), identify);
            self.protocol_peer
                .insert(p.into(), fixed([16, 16, 32], window));
        }
        let services = [
            (
                super::PING_SERVICE,
                super::PING_PROTOCOL,
                limit([64, 64, 64], 4 * m, [64, 64, 64], 4 * m),
                fixed([2, 3, 4], window),
            ),
            (
                super::PEX_SERVICE,
                super::PEX_PROTOCOL,
                limit([1024, 1024, 2048], 16 * m, [1024, 1024, 2048], 16 * m),
                fixed([4, 4, 8], m),
            ),
        ];
        for (service, protocol, all, per_peer) in services {
            self.service.insert(service.into(), all);
            self.protocol.insert(protocol.into(), all);
            self.service_peer.insert(service.into(), per_peer);
            self.protocol_peer.insert(protocol.into(), per_peer);
        }
        self
    }
}

fn counts(conns: [u64; 3], streams: [u64; 3], memory: u64, fd: u64) -> BaseLimit {
    BaseLimit {
        conns_inbound: conns[0],
        conns_outbound: conns[1],
        conns: conns[2],
        streams_inbound: streams[0],
        streams_outbound: streams[1],
        streams: streams[2],
        memory,
        fd,
    }
}

fn increase(conns: [u64; 3], streams: [u64; 3], memory: u64, fd_fraction: f64) -> LimitIncrease {
    LimitIncrease {
        conns_inbound: conns[0],
        conns_outbound: conns[1],
        conns: conns[2],
        streams_inbound: streams[0],
        streams_outbound: streams[1],
        streams: streams[2],
        memory,
        fd_fraction,
    }
}

impl Default for ScalingLimitConfig {
    /// go-libp2p `DefaultLimits` (limit_defaults.go), with two fixes:
    ///
    /// - the per-peer protocol memory grows by 4 MiB per GiB, where go's value is 4 bytes (an
    ///   evident slip: its golden file has 16 MiB + 32 B at 8 GiB);
    /// - the stream scope scales with its own increase, where go scales it with the connection
    ///   scope's (both are zero by default, so the default numbers do not change).
    ///
    /// Base values (at 128 MiB or less), inbound/outbound/total:
    ///
    /// | scope | connections | streams | memory | FDs |
    /// |---|---|---|---|---|
    /// | system, allowlisted system | 64/128/128 | 1024/2048/2048 | 128 MiB | 256 |
    /// | transient, allowlisted transient | 32/64/64 | 128/256/256 | 32 MiB | 64 |
    /// | service | – | 1024/4096/4096 | 64 MiB | – |
    /// | service-peer | – | 128/256/256 | 16 MiB | – |
    /// | protocol | – | 512/2048/2048 | 64 MiB | – |
    /// | protocol-peer | – | 64/128/256 | 16 MiB | – |
    /// | peer | 8/8/8 | 256/512/512 | 64 MiB | 4 |
    /// | connection | 1/1/1 | – | 32 MiB | 1 |
    /// | stream | – | 1/1/1 | 16 MiB | – |
    fn default() -> Self {
        let none = [0; 3];
        let system = ScaledLimit {
            base: counts([64, 128, 128], [1024, 2048, 2048], 128 * MIB, 256),
            increase: increase([64, 128, 128], [1024, 2048, 2048], GIB, 1.0),
        };
        let transient = ScaledLimit {
            base: counts([32, 64, 64], [128, 256, 256], 32 * MIB, 64),
            increase: increase([16, 32, 32], [128, 256, 256], 128 * MIB, 0.25),
        };
        Limits {
            system,
            transient,
            allowlisted_system: system,
            allowlisted_transient: transient,
            service_default: ScaledLimit {
                base: counts(none, [1024, 4096, 4096], 64 * MIB, 0),
                increase: increase(none, [512, 2048, 2048], 128 * MIB, 0.0),
            },
            service: BTreeMap::new(),
            service_peer_default: ScaledLimit {
                base: counts(none, [128, 256, 256], 16 * MIB, 0),
                increase: increase(none, [4, 8, 8], 4 * MIB, 0.0),
            },
            service_peer: BTreeMap::new(),
            protocol_default: ScaledLimit {
                base: counts(none, [512, 2048, 2048], 64 * MIB, 0),
                increase: increase(none, [256, 512, 512], 164 * MIB, 0.0),
            },
            protocol: BTreeMap::new(),
            protocol_peer_default: ScaledLimit {
                base: counts(none, [64, 128, 256], 16 * MIB, 0),
                increase: increase(none, [4, 8, 16], 4 * MIB, 0.0),
            },
            protocol_peer: BTreeMap::new(),
            peer_default: ScaledLimit {
                base: counts([8, 8, 8], [256, 512, 512], 64 * MIB, 4),
                increase: increase(none, [128, 256, 256], 128 * MIB, 1.0 / 64.0),
            },
            peer: BTreeMap::new(),
            conn: ScaledLimit {
                base: counts([1, 1, 1], none, 32 * MIB, 1),
                increase: LimitIncrease::default(),
            },
            stream: ScaledLimit {
                base: counts(none, [1, 1, 1], 16 * MIB, 0),
                increase: LimitIncrease::default(),
            },
        }
    }
}
