//! The pool's access control and trust as methods of the [`Behaviour`]: each changes the pool
//! (Octez `P2p_acl`, `Points`/`Peers` `ban`, `trust`, `open`) and then carries out what the
//! change asks, as [`Behaviour::update_pool`] does: banned or greylisted peers are
//! disconnected, after the change so that they cannot come back, and trusted peers are
//! protected in the connection manager. What the ACL holds is read from
//! [`Behaviour::pool`]`().acl()` ([`pool::Acl`]).

use std::net::IpAddr;

use libp2p::{Multiaddr, PeerId};
use peerage_core::pool::{self, IpBan, IpUnban};

use crate::Behaviour;

impl Behaviour {
    /// Bans `peer` (Octez `Peers.ban`): blacklisted, no longer trusted, and disconnected.
    pub fn ban_peer(&mut self, peer: &PeerId) {
        self.update_pool(|pool, _| pool.ban_peer(*peer));
    }

    /// Removes `peer` from the blacklist and the greylist.
    pub fn unban_peer(&mut self, peer: &PeerId) {
        self.update_pool(|pool, _| pool.unban_peer(peer));
    }

    /// Bans `ip` (Octez `Points.ban`): every peer connected from it is disconnected and, if
    /// `ban_peers`, banned and no longer trusted too. Returns what changed, which
    /// [`Behaviour::unban_ip`] undoes.
    pub fn ban_ip(&mut self, ip: IpAddr, ban_peers: bool) -> IpBan {
        self.update_pool(|pool, _| pool.ban_ip(ip, ban_peers))
    }

    /// Unbans `ip` and undoes what [`Behaviour::ban_ip`] did: the peers it banned are
    /// unbanned and those it untrusted are trusted again (Octez's `Points.unban` unbans the IP
    /// only). Returns what changed.
    pub fn unban_ip(&mut self, ip: IpAddr) -> IpUnban {
        self.update_pool(|pool, _| pool.unban_ip(ip))
    }

    /// Trusts `peer` (Octez `Peers.trust`): unbanned, kept, protected in the connection
    /// manager and admitted in private mode.
    pub fn trust_peer(&mut self, peer: &PeerId) {
        self.update_pool(|pool, now| pool.trust_peer(*peer, now));
    }

    /// Stops trusting `peer`; returns whether it was known.
    pub fn untrust_peer(&mut self, peer: &PeerId) -> bool {
        self.update_pool(|pool, _| pool.untrust_peer(peer))
    }

    /// Trusts the point `addr` (Octez `Points.trust`): its IP unbanned, then registered
    /// trusted, dialed by the maintenance and never collected. Returns the point (the address
    /// without `/p2p`).
    ///
    /// # Errors
    ///
    /// A [`pool::Error`] if `addr` is not a dialable point or is one of our own.
    pub fn trust_point(&mut self, addr: &Multiaddr) -> Result<Multiaddr, pool::Error> {
        self.update_pool(|pool, now| pool.trust_point(addr, now))
    }

    /// Stops trusting the point `point`; returns whether it was known.
    pub fn untrust_point(&mut self, point: &Multiaddr) -> bool {
        self.update_pool(|pool, _| pool.untrust_point(point))
    }

    /// Greylists `ip` for the pool's greylist timeout: no connection from or to it until then.
    /// Connections already running from it stay.
    pub fn greylist_ip(&mut self, ip: IpAddr) {
        self.update_pool(|pool, now| pool.greylist_ip(ip, now));
    }

    /// Greylists `peer` and the IP of its current or last connection (Octez
    /// `greylist_peer`), and disconnects it.
    pub fn greylist_peer(&mut self, peer: &PeerId) {
        self.update_pool(|pool, now| pool.greylist_peer(*peer, now));
    }

    /// Empties both greylists (peers and IPs); bans stay.
    pub fn clear_greylist(&mut self) {
        self.update_pool(|pool, _| pool.clear_greylist());
    }

    /// Sets the peer the point `addr` must reach (Octez `set_expected_peer_id`): a connection
    /// to it with another peer greylists its IP and is closed. Returns the point.
    ///
    /// # Errors
    ///
    /// A [`pool::Error`] if `addr` is not a dialable point or is one of our own.
    pub fn set_expected_peer_id(
        &mut self,
        addr: &Multiaddr,
        expected: &PeerId,
    ) -> Result<Multiaddr, pool::Error> {
        self.update_pool(|pool, now| pool.set_expected_peer_id(addr, *expected, now))
    }
}
