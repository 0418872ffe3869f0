//! The peer-exchange messages: Octez's `Bootstrap`/`Advertise` (`p2p_message.ml`) as a request
//! and a response, with their bounds. The wire codec (CBOR over libp2p request-response) lives
//! in the glue; the policy (whom to ask, when, how to answer) in the [node machine](super).

use std::time::Duration;

use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Serialize};

/// The protocol name.
pub const PROTOCOL: &str = "/peerage/pex/1.0.0";
/// Most points sent in a response (Octez `list_known_points ~size:50`).
pub const MAX_POINTS_SENT: usize = 50;
/// Most points accepted in a response (Octez `Advertise`: `Variable.list ~max_length:100`).
pub const MAX_POINTS_ACCEPTED: usize = 100;
/// Largest request accepted, in bytes.
pub const MAX_REQUEST_BYTES: u64 = 1024;
/// Largest response accepted, in bytes.
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024;
/// Least time between two answers to one peer (Octez's per-connection throttle of 100 ms).
pub const ANSWER_COOLDOWN: Duration = Duration::from_millis(100);
/// How long a request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request for points (Octez `Bootstrap`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The asker is below its minimum of connections and wants this one kept: a node that
    /// nacked the connection for being at its `max_threshold` admits it after all while under
    /// its `max` (its maintenance then makes room). Octez's `Bootstrap` has no such field.
    #[serde(default)]
    pub need: bool,
}

/// The points a peer knows (Octez `Advertise`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Points, each with the peer at it when known. On the wire, a list of multiaddrs as text,
    /// each ending in `/p2p/<id>` when the peer is known; one that does not parse is dropped
    /// when the list is read, and the list as sent counts toward [`MAX_POINTS_ACCEPTED`] only
    /// through what remains.
    #[serde(with = "text")]
    pub points: Vec<Point>,
    /// The answering node is full and is about to close this connection (Octez's `Nack`): the
    /// asker should back off from it as from a refused connection and try the points instead.
    #[serde(default)]
    pub nack: bool,
    /// The answering node's own signed peer record (a libp2p signed envelope, domain
    /// `libp2p-peer-record`, protobuf-encoded), so that its addresses are certified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Vec<u8>>,
    /// Advertised peers that have a signed peer record, as those records (same encoding):
    /// their addresses are certified at the asker. They count with `points` toward
    /// [`MAX_POINTS_ACCEPTED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Vec<u8>>,
}

/// A point as an answer carries it: its address and, when known, the peer at it. Kept apart
/// inside the node, so that neither side writes the peer into the address and cuts it off
/// again; joined on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// The address, without a `/p2p` suffix.
    pub addr: Multiaddr,
    /// The peer at the point, if known.
    pub peer: Option<PeerId>,
}

impl From<Multiaddr> for Point {
    /// Splits a trailing `/p2p/<id>` off into [`Point::peer`].
    fn from(mut addr: Multiaddr) -> Self {
        let peer = match addr.iter().last() {
            Some(Protocol::P2p(id)) => Some(id),
            _ => None,
        };
        if peer.is_some() {
            addr.pop();
        }
        Self { addr, peer }
    }
}

impl Point {
    /// The address with its `/p2p/<id>` suffix if the peer is known.
    pub fn to_multiaddr(&self) -> Multiaddr {
        match self.peer {
            Some(id) => self.addr.clone().with(Protocol::P2p(id)),
            None => self.addr.clone(),
        }
    }
}

/// Points as text on the wire: the encoding of `/peerage/pex/1.0.0` since its first version,
/// kept so that every node reads every other. The node machine and the simulator see parsed
/// [`Multiaddr`]s only.
mod text {
    use std::fmt;

    use multiaddr::Multiaddr;
    use serde::{
        Deserializer, Serializer,
        de::{SeqAccess, Visitor},
        ser::SerializeSeq,
    };

    pub(super) fn serialize<S: Serializer>(
        points: &[super::Point],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(points.len()))?;
        for point in points {
            seq.serialize_element(&point.to_multiaddr().to_string())?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<super::Point>, D::Error> {
        struct Points;
        impl<'de> Visitor<'de> for Points {
            type Value = Vec<super::Point>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of multiaddrs as text")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // The codec bounds the message's bytes; the list is no longer than they allow.
                let mut points = Vec::new();
                while let Some(text) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    if let Ok(addr) = text.parse::<Multiaddr>() {
                        points.push(addr.into());
                    }
                }
                Ok(points)
            }
        }
        deserializer.deserialize_seq(Points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_text_on_the_wire_and_unreadable_ones_are_dropped() {
        let peer: PeerId = "12D3KooWDZJ7AeptbzZJaH3zj1htGT67nFzykiWthgzQaCRkBz3S"
            .parse()
            .unwrap();
        let addr: Multiaddr = "/ip4/1.2.3.4/tcp/9732".parse().unwrap();
        let response = Response {
            points: vec![
                Point {
                    addr: addr.clone(),
                    peer: None,
                },
                Point {
                    addr: addr.clone(),
                    peer: Some(peer),
                },
            ],
            ..Default::default()
        };
        let json = serde_json::to_string(&response).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"points":["{addr}","{addr}/p2p/{peer}"],"nack":false}}"#)
        );
        assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), response);
        let read: Response = serde_json::from_str(
            r#"{"points":["/ip4/1.2.3.4/tcp/9732","/nonsense/1","/ip6/::1/udp/1/quic-v1"]}"#,
        )
        .unwrap();
        assert_eq!(
            read.points,
            vec![
                Point { addr, peer: None },
                Point {
                    addr: "/ip6/::1/udp/1/quic-v1".parse().unwrap(),
                    peer: None
                }
            ]
        );
    }
}
