//! go-libp2p's JSON limit-config format (`PartialLimitConfig`), read and written.
//!
//! Field names are go's (`System`, `PeerDefault`, `StreamsInbound`, `FD`, ...). A count is a
//! JSON integer or one of `"default"`, `"unlimited"`, `"blockAll"`; memory is written as a
//! decimal string (go's way to survive JSON doubles) and read as a string or an integer. An
//! explicit `0` means block-all and an absent field means the default, as in go.

use std::collections::BTreeMap;
use std::fmt;

use libp2p_identity::PeerId;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::limit::{BaseLimit, LimitConfig, Limits, UNLIMITED};

/// A limits file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid limits: `{path}`: {reason}")]
pub struct LimitsError {
    path: String,
    reason: String,
}

impl LimitsError {
    /// Where in the file the problem is, as `Scope.Field` (`.` for the top level).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong there.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A value of a count or memory field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Val {
    #[default]
    Default,
    Unlimited,
    BlockAll,
    Value(u64),
}

impl Val {
    fn is_default(&self) -> bool {
        *self == Val::Default
    }

    fn build(self, default: u64) -> u64 {
        match self {
            Val::Default => default,
            Val::Unlimited => UNLIMITED,
            Val::BlockAll => 0,
            Val::Value(v) => v,
        }
    }

    fn of(v: u64) -> Self {
        match v {
            0 => Val::BlockAll,
            UNLIMITED => Val::Unlimited,
            v => Val::Value(v),
        }
    }

    fn from_number(v: u64) -> Self {
        if v == 0 { Val::BlockAll } else { Val::Value(v) }
    }

    fn serialize_with<S: Serializer>(&self, s: S, as_string: bool) -> Result<S::Ok, S::Error> {
        match self {
            Val::Default => s.serialize_str("default"),
            Val::Unlimited => s.serialize_str("unlimited"),
            Val::BlockAll => s.serialize_str("blockAll"),
            Val::Value(v) if as_string => s.serialize_str(&v.to_string()),
            Val::Value(v) => s.serialize_u64(*v),
        }
    }
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Val;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a non-negative integer, a decimal string, \"default\", \"unlimited\" or \"blockAll\"",
                )
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val, E> {
                Ok(Val::from_number(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val, E> {
                u64::try_from(v).map(Val::from_number).map_err(|_| {
                    E::custom(format!("negative value {v}: limits are counts or bytes"))
                })
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Val, E> {
                match v {
                    "default" => Ok(Val::Default),
                    "unlimited" => Ok(Val::Unlimited),
                    "blockAll" => Ok(Val::BlockAll),
                    _ if v.starts_with('-') => Err(E::custom(format!(
                        "negative value {v}: limits are counts or bytes"
                    ))),
                    _ => v
                        .parse::<u64>()
                        .map(Val::from_number)
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn count<S: Serializer>(v: &Val, s: S) -> Result<S::Ok, S::Error> {
    v.serialize_with(s, false)
}

fn memory<S: Serializer>(v: &Val, s: S) -> Result<S::Ok, S::Error> {
    v.serialize_with(s, true)
}

/// One scope's limits in the file (go `ResourceLimits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Partial {
    #[serde(
        default,
        skip_serializing_if = "Val::is_default",
        serialize_with = "count"
    )]
    streams: Val,
    #[serde(
        default,
        skip_serializing_if = "Val::is_default",
        serialize_with = "count"
    )]
    streams_inbound: Val,
    #[serde(
        default,
        skip_serializing_if = "Val::is_default",
        serialize_with = "count"
    )]
    streams_outbound: Val,
    #[serde(
        default,
        skip_serializing_if = "Val::is_default",
        serialize_with = "count"
    )]
    conns: Val,
    #[serde(
        default,
        skip_serializing_if = "Val::is_default",
        serialize_with = "count"
    )]
    conns_inbound: Val,
    #[serde(
        default,
        skip_serializing_if = "Val::is_default",
        serialize_with = "count"
    )]
    conns_outbound: Val,
    #[serde(
        rename = "FD",
        default,
        skip_serializing_if = "Val::is_default",
        serialize_with = "count"
    )]
    fd: Val,
    #[serde(
        default,
        skip_serializing_if = "Val::is_default",
        serialize_with = "memory"
    )]
    memory: Val,
}

impl Partial {
    fn build(&self, d: &BaseLimit) -> BaseLimit {
        BaseLimit {
            streams: self.streams.build(d.streams),
            streams_inbound: self.streams_inbound.build(d.streams_inbound),
            streams_outbound: self.streams_outbound.build(d.streams_outbound),
            conns: self.conns.build(d.conns),
            conns_inbound: self.conns_inbound.build(d.conns_inbound),
            conns_outbound: self.conns_outbound.build(d.conns_outbound),
            fd: self.fd.build(d.fd),
            memory: self.memory.build(d.memory),
        }
    }

    fn of(l: &BaseLimit) -> Self {
        Partial {
            streams: Val::of(l.streams),
            streams_inbound: Val::of(l.streams_inbound),
            streams_outbound: Val::of(l.streams_outbound),
            conns: Val::of(l.conns),
            conns_inbound: Val::of(l.conns_inbound),
            conns_outbound: Val::of(l.conns_outbound),
            fd: Val::of(l.fd),
            memory: Val::of(l.memory),
        }
    }
}

fn is_none(p: &Option<Partial>) -> bool {
    p.is_none()
}

/// The whole file (go `PartialLimitConfig`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PartialConfig {
    #[serde(default, skip_serializing_if = "is_none")]
    system: Option<Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    transient: Option<Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    allowlisted_system: Option<Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    allowlisted_transient: Option<Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    service_default: Option<Partial>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    service: BTreeMap<String, Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    service_peer_default: Option<Partial>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    service_peer: BTreeMap<String, Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    protocol_default: Option<Partial>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    protocol: BTreeMap<String, Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    protocol_peer_default: Option<Partial>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    protocol_peer: BTreeMap<String, Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    peer_default: Option<Partial>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    peer: BTreeMap<String, Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    conn: Option<Partial>,
    #[serde(default, skip_serializing_if = "is_none")]
    stream: Option<Partial>,
}

fn build_one(p: &Option<Partial>, default: &BaseLimit) -> BaseLimit {
    p.as_ref().map_or(*default, |p| p.build(default))
}

/// go `buildMapWithDefault`: entries of `defaults` are kept; an entry of the file builds on the
/// default entry with its key if there is one, else on the (already built) kind default.
fn build_map<K: Ord + Clone>(
    file: impl IntoIterator<Item = (K, Partial)>,
    defaults: &BTreeMap<K, BaseLimit>,
    fallback: &BaseLimit,
) -> BTreeMap<K, BaseLimit> {
    let mut out = defaults.clone();
    for (k, p) in file {
        let base = out.get(&k).unwrap_or(fallback);
        let built = p.build(base);
        out.insert(k, built);
    }
    out
}

impl LimitConfig {
    /// Reads go's JSON limit-config format; what the file leaves out (absent scopes, absent
    /// fields, `"default"`) comes from `defaults`, as go `PartialLimitConfig::Build`.
    ///
    /// # Errors
    ///
    /// [`LimitsError`] naming the field (`System.Conns`, `Peer`) and the reason: an unknown scope
    /// or field, a negative value, a wrong type (a float, a bool, an unknown keyword), an invalid
    /// peer ID, or malformed JSON.
    pub fn from_json(text: &str, defaults: &LimitConfig) -> Result<LimitConfig, LimitsError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: PartialConfig =
            serde_path_to_error::deserialize(de).map_err(|e| LimitsError {
                path: e.path().to_string(),
                reason: e.into_inner().to_string(),
            })?;
        let mut peers = Vec::with_capacity(file.peer.len());
        for (key, p) in &file.peer {
            let peer = key.parse::<PeerId>().map_err(|e| LimitsError {
                path: format!("Peer.{key}"),
                reason: format!("invalid peer ID: {e}"),
            })?;
            peers.push((peer, *p));
        }
        let d = defaults;
        let service_default = build_one(&file.service_default, &d.service_default);
        let service_peer_default = build_one(&file.service_peer_default, &d.service_peer_default);
        let protocol_default = build_one(&file.protocol_default, &d.protocol_default);
        let protocol_peer_default =
            build_one(&file.protocol_peer_default, &d.protocol_peer_default);
        let peer_default = build_one(&file.peer_default, &d.peer_default);
        Ok(Limits {
            system: build_one(&file.system, &d.system),
            transient: build_one(&file.transient, &d.transient),
            allowlisted_system: build_one(&file.allowlisted_system, &d.allowlisted_system),
            allowlisted_transient: build_one(&file.allowlisted_transient, &d.allowlisted_transient),
            service: build_map(file.service, &d.service, &service_default),
            service_default,
            service_peer: build_map(file.service_peer, &d.service_peer, &service_peer_default),
            service_peer_default,
            protocol: build_map(file.protocol, &d.protocol, &protocol_default),
            protocol_default,
            protocol_peer: build_map(file.protocol_peer, &d.protocol_peer, &protocol_peer_default),
            protocol_peer_default,
            peer: build_map(peers, &d.peer, &peer_default),
            peer_default,
            conn: build_one(&file.conn, &d.conn),
            stream: build_one(&file.stream, &d.stream),
        })
    }

    /// Writes go's JSON limit-config format with every value explicit (go
    /// `ToPartialLimitConfig`): 0 as `"blockAll"`, [`UNLIMITED`](super::UNLIMITED) as
    /// `"unlimited"`, so that reading it back with any defaults gives this config.
    pub fn to_json(&self) -> String {
        let one = |l: &BaseLimit| Some(Partial::of(l));
        let map = |m: &BTreeMap<String, BaseLimit>| {
            m.iter().map(|(k, l)| (k.clone(), Partial::of(l))).collect()
        };
        let file = PartialConfig {
            system: one(&self.system),
            transient: one(&self.transient),
            allowlisted_system: one(&self.allowlisted_system),
            allowlisted_transient: one(&self.allowlisted_transient),
            service_default: one(&self.service_default),
            service: map(&self.service),
            service_peer_default: one(&self.service_peer_default),
            service_peer: map(&self.service_peer),
            protocol_default: one(&self.protocol_default),
            protocol: map(&self.protocol),
            protocol_peer_default: one(&self.protocol_peer_default),
            protocol_peer: map(&self.protocol_peer),
            peer_default: one(&self.peer_default),
            peer: self
                .peer
                .iter()
                .map(|(k, l)| (k.to_base58(), Partial::of(l)))
                .collect(),
            conn: one(&self.conn),
            stream: one(&self.stream),
        };
        serde_json::to_string_pretty(&file).expect("limits serialize to JSON")
    }
}
