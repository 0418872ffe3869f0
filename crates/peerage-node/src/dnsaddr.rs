//! `/dnsaddr` bootstrap points (the form of the IPFS bootstrap list,
//! `/dnsaddr/bootstrap.libp2p.io/p2p/QmNnoo...`): the node resolves them into the addresses
//! they name and trusts those.
//!
//! A `/dnsaddr/<host>` address has no port, so it is no point of the pool (Octez's points are
//! `ip:port`). The node looks up the TXT records of `_dnsaddr.<host>` (the `dnsaddr`
//! multiaddr spec, as libp2p-dns does when dialing), keeps the `dnsaddr=<multiaddr>` ones that
//! end in the point's `/p2p/<id>` (if it names one), follows nested `/dnsaddr` ones, and adds
//! each address found as a trusted point. Bounded as libp2p-dns bounds a dial: at most
//! [`MAX_TXT_RECORDS`] records per name and [`MAX_LOOKUPS`] lookups per point. A point that
//! resolves to nothing (the name server is down, say) is tried again every
//! [`RETRY_INTERVAL`].

use std::time::Duration;

use anyhow::Context;
use hickory_resolver::{TokioResolver, net::runtime::TokioRuntimeProvider};
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

/// Most TXT records read per name (libp2p-dns's `MAX_TXT_RECORDS`).
pub const MAX_TXT_RECORDS: usize = 16;

/// Most lookups per bootstrap point, nested ones included (libp2p-dns's `MAX_DNS_LOOKUPS`).
pub const MAX_LOOKUPS: usize = 32;

/// How long a point that resolved to nothing waits before it is looked up again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// Whether `addr` is a `/dnsaddr` point: `/dnsaddr/<host>`, optionally with `/p2p/<id>`.
pub fn is_dnsaddr(addr: &Multiaddr) -> bool {
    matches!(addr.iter().next(), Some(Protocol::Dnsaddr(_)))
}

/// The host and the expected peer of a `/dnsaddr` point.
///
/// # Errors
///
/// If `addr` has anything but `/dnsaddr/<host>` and an optional `/p2p/<id>`.
pub fn split(addr: &Multiaddr) -> anyhow::Result<(String, Option<PeerId>)> {
    let mut iter = addr.iter();
    let host = match iter.next() {
        Some(Protocol::Dnsaddr(host)) => host.into_owned(),
        _ => anyhow::bail!("{addr} does not start with /dnsaddr"),
    };
    let peer = match iter.next() {
        None => None,
        Some(Protocol::P2p(peer)) => Some(peer),
        Some(p) => anyhow::bail!("{addr}: /dnsaddr takes only /p2p after its host, not {p}"),
    };
    if iter.next().is_some() {
        anyhow::bail!("{addr}: nothing may follow /p2p");
    }
    Ok((host, peer))
}

/// The addresses of `dnsaddr=` TXT strings (the first [`MAX_TXT_RECORDS`]) that end in
/// `/p2p/<peer>` when `peer` is given; others, and strings that do not parse, are left out.
pub fn parse_records<'a>(
    records: impl IntoIterator<Item = &'a str>,
    peer: Option<PeerId>,
) -> Vec<Multiaddr> {
    records
        .into_iter()
        .take(MAX_TXT_RECORDS)
        .filter_map(|r| r.strip_prefix("dnsaddr=")?.parse::<Multiaddr>().ok())
        .filter(|a| match peer {
            None => true,
            Some(p) => a.iter().last() == Some(Protocol::P2p(p)),
        })
        .collect()
}

/// Resolves a `/dnsaddr` point into the addresses it names, following nested ones.
///
/// # Errors
///
/// If the point is malformed or a lookup fails.
pub async fn resolve(
    resolver: &TokioResolver,
    point: &Multiaddr,
) -> anyhow::Result<Vec<Multiaddr>> {
    let mut found = Vec::new();
    let mut queue = vec![point.clone()];
    let mut lookups = 0;
    while let Some(addr) = queue.pop() {
        if !is_dnsaddr(&addr) {
            if !found.contains(&addr) {
                found.push(addr);
            }
            continue;
        }
        if lookups == MAX_LOOKUPS {
            tracing::warn!(%point, "more than {MAX_LOOKUPS} nested /dnsaddr lookups; the rest left out");
            break;
        }
        lookups += 1;
        let (host, peer) = split(&addr)?;
        let name = format!("_dnsaddr.{host}");
        let lookup = resolver
            .txt_lookup(name.clone())
            .await
            .with_context(|| format!("looking up the TXT records of {name}"))?;
        let texts: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                hickory_resolver::proto::rr::RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect();
        queue.extend(parse_records(texts.iter().map(String::as_str), peer));
    }
    Ok(found)
}

/// A resolver with this configuration, on tokio.
pub fn resolver(
    (config, options): (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts),
) -> anyhow::Result<TokioResolver> {
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .context("building the DNS resolver")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_a_host_and_an_optional_peer() {
        let peer = PeerId::random();
        let (host, p) =
            split(&format!("/dnsaddr/boot.example/p2p/{peer}").parse().unwrap()).unwrap();
        assert_eq!((host.as_str(), p), ("boot.example", Some(peer)));
        assert!(split(&"/dnsaddr/boot.example/tcp/1".parse().unwrap()).is_err());
        assert!(split(&"/dns4/boot.example/tcp/1".parse().unwrap()).is_err());
    }

    #[test]
    fn records_keep_the_dnsaddr_ones_of_the_peer() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let records = [
            format!("dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{a}"),
            format!("dnsaddr=/ip4/192.0.2.2/tcp/4001/p2p/{b}"),
            "dnsaddr=not a multiaddr".to_owned(),
            "v=spf1 -all".to_owned(),
            format!("dnsaddr=/dnsaddr/nested.example/p2p/{a}"),
        ];
        let got = parse_records(records.iter().map(String::as_str), Some(a));
        assert_eq!(
            got,
            vec![
                format!("/ip4/192.0.2.1/tcp/4001/p2p/{a}")
                    .parse::<Multiaddr>()
                    .unwrap(),
                format!("/dnsaddr/nested.example/p2p/{a}").parse().unwrap(),
            ]
        );
        assert_eq!(
            parse_records(records.iter().map(String::as_str), None).len(),
            3
        );
        let many: Vec<String> = (0..40)
            .map(|i| format!("dnsaddr=/ip4/192.0.2.{i}/tcp/4001"))
            .collect();
        assert_eq!(
            parse_records(many.iter().map(String::as_str), None).len(),
            MAX_TXT_RECORDS
        );
    }
}
