//! Writes the seed corpora of the fuzz targets into `corpus/<target>/`: a few valid inputs of
//! each (and near-misses: a forged record, a record in rust-libp2p's legacy domain), from
//! which the fuzzer mutates. Run from `fuzz/`: `cargo run --release --example seeds`.

use std::{fs, time::SystemTime};

use futures::executor::block_on;
use libp2p::{Multiaddr, identity::Keypair, request_response::Codec as _};
use peerage::{
    node::pex::Point,
    pex::{self, Request, Response},
};
use peerage_core::peerstore::conformance::{
    protobuf_bytes, protobuf_varint, signed_record, signed_record_for,
};

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(format!("corpus/{target}")).unwrap();
    fs::write(format!("corpus/{target}/seed-{name}"), bytes).unwrap();
}

fn main() {
    let key = Keypair::ed25519_from_bytes([3; 32]).unwrap();
    let peer = key.public().to_peer_id();
    let other = Keypair::ed25519_from_bytes([4; 32]).unwrap();
    let addrs: Vec<Multiaddr> = vec![
        "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
        format!("/ip4/192.0.2.1/tcp/9732/p2p/{peer}")
            .parse()
            .unwrap(),
        "/ip6/::1/udp/4001/quic-v1".parse().unwrap(),
        "/dns4/boot.example.org/tcp/9732".parse().unwrap(),
        "/dnsaddr/bootstrap.libp2p.io".parse().unwrap(),
        "/ip4/0.0.0.0/tcp/0".parse().unwrap(),
    ];
    for (i, a) in addrs.iter().enumerate() {
        write("multiaddr", &format!("bytes-{i}"), a.to_vec());
        write("multiaddr", &format!("text-{i}"), a.to_string());
    }

    let record = signed_record(&key, 5, &addrs[..3]).into_protobuf_encoding();
    write("peer_record", "standard", &record);
    write(
        "peer_record",
        "forged",
        signed_record_for(&other, peer, 6, &addrs[..1]).into_protobuf_encoding(),
    );
    let legacy = libp2p::core::PeerRecord::new(&key, addrs[..2].to_vec()).unwrap();
    write(
        "peer_record",
        "legacy-domain",
        legacy.into_signed_envelope().into_protobuf_encoding(),
    );
    write(
        "peer_record",
        "no-addresses",
        signed_record(&key, 7, &[]).into_protobuf_encoding(),
    );

    let defaults = peerage_core::rcmgr::LimitConfig::default();
    write("limits_json", "defaults", defaults.to_json());
    write(
        "limits_json",
        "kubo",
        r#"{"System":{"Conns":"unlimited","ConnsInbound":123,"Memory":"default"},"Peer":{"12D3KooWLk5eN6yP2X79V5xHvwLLEQ7k1xCPS8majiRANu39TifZ":{"Streams":"blockAll"}},"Protocol":{"/ipfs/id/1.0.0":{"StreamsInbound":8}}}"#,
    );
    write("limits_json", "empty", "{}");

    let protocol = pex::PROTOCOL;
    let mut codec = pex::Codec::default();
    let response = Response {
        points: addrs[..3].iter().cloned().map(Point::from).collect(),
        nack: true,
        record: Some(record.clone()),
        records: vec![record.clone()],
    };
    let mut bytes = Vec::new();
    block_on(codec.write_response(&protocol, &mut bytes, response)).unwrap();
    write("pex_response", "full", &bytes);
    let mut bytes = Vec::new();
    block_on(codec.write_response(&protocol, &mut bytes, Response::default())).unwrap();
    write("pex_response", "empty", &bytes);
    let mut bytes = Vec::new();
    block_on(codec.write_request(
        &protocol,
        &mut bytes,
        pex::WireRequest::Valid(Request { need: true }),
    ))
    .unwrap();
    write("pex_request", "need", &bytes);

    // identify.proto: 1 publicKey, 2 listenAddrs, 3 protocols, 4 observedAddr,
    // 5 protocolVersion, 6 agentVersion, 8 signedPeerRecord; length-prefixed.
    let mut m = Vec::new();
    protobuf_bytes(0x0a, &key.public().encode_protobuf(), &mut m);
    for a in &addrs[..3] {
        protobuf_bytes(0x12, &a.to_vec(), &mut m);
    }
    for p in ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", pex::PROTOCOL.as_ref()] {
        protobuf_bytes(0x1a, p.as_bytes(), &mut m);
    }
    protobuf_bytes(0x22, &addrs[0].to_vec(), &mut m);
    protobuf_bytes(0x2a, b"ipfs/0.1.0", &mut m);
    protobuf_bytes(0x32, b"go-libp2p/0.43.0", &mut m);
    protobuf_bytes(0x42, &record, &mut m);
    let mut framed = Vec::new();
    protobuf_varint(m.len() as u64, &mut framed);
    framed.extend_from_slice(&m);
    write("identify_message", "full", framed);

    let mut entry = peerage_store::peers_file::Entry::new(peer, SystemTime::UNIX_EPOCH);
    entry.trusted = true;
    entry.last_established_connection = Some((
        addrs[0].clone(),
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(60),
    ));
    let other_entry =
        peerage_store::peers_file::Entry::new(other.public().to_peer_id(), SystemTime::UNIX_EPOCH);
    write(
        "peers_file",
        "two-peers",
        serde_json::to_vec_pretty(&vec![entry, other_entry]).unwrap(),
    );
    write("peers_file", "empty", "[]");

    // The configuration file: every key at a value, the keys of one table, and near-misses.
    let full = r#"data_dir = "/var/lib/peerage"
listen = ["/ip4/0.0.0.0/tcp/9732", "/ip4/0.0.0.0/udp/9732/quic-v1"]
bootstrap = ["/dns4/boot.example.org/tcp/9732", "/dnsaddr/bootstrap.libp2p.io"]
dns_servers = ["9.9.9.9", "127.0.0.1:5353"]
ephemeral = false
private_mode = false
peers_file_period = "30s"
limits = "limits.json"
admin = "127.0.0.1:8732"
metrics = "127.0.0.1:9090"
admin_token = "secret"
log = "info,peerage=debug"

[connections]
connections = 50
low_water = 40
high_water = 75
grace_period = "1m"

[pool]
max_known_points = [400, 300]
max_known_peers = [400, 300]
ip_greylist_size = 16384
ip_greylist_cleanup_delay = "1day"
peer_greylist_size = 1023

[resource_manager]
enabled = true
max_memory = "2GiB"
max_file_descriptors = 4096
allowlist = ["/ip4/10.0.0.0/ipcidr/8"]
loopback_exempt = true

[addrbook]
enabled = true
asmap = "asmap.dat"
loopback_as_public = false
outbound_target = 8
max_inbound = 100
max_inbound_per_group = 7
"#;
    write("config_toml", "full", full);
    write("config_toml", "empty", "");
    write(
        "config_toml",
        "bounds",
        "[connections]\nmin = 2\nexpected = 3\nmax = 4\n[pool]\nmax_known_points = [8, 4]\n",
    );
    write(
        "config_toml",
        "relative-paths",
        "data_dir = \"data\"\nlimits = \"../l.json\"\n[addrbook]\nasmap = \"\"\n",
    );
    write("config_toml", "unknown-key", "colour = \"blue\"\n");
    write(
        "config_toml",
        "bad-values",
        "peers_file_period = \"0s\"\n[resource_manager]\nmax_memory = \"1.5GiB\"\n",
    );

    // Admin API requests: the method's byte (0 GET, 1 POST, 2 PUT, 3 PATCH, 4 DELETE), the
    // path, a newline, the body.
    let id = peer.to_string();
    let requests: Vec<(&str, u8, String, String)> = vec![
        ("self", 0, "/network/self".into(), String::new()),
        ("stat", 0, "/network/stat".into(), String::new()),
        (
            "log",
            0,
            "/network/log?limit=5&kind=peer".into(),
            String::new(),
        ),
        (
            "connections",
            0,
            "/network/connections".into(),
            String::new(),
        ),
        (
            "connection",
            0,
            format!("/network/connections/{id}"),
            String::new(),
        ),
        (
            "close",
            4,
            format!("/network/connections/{id}"),
            String::new(),
        ),
        (
            "peers",
            0,
            "/network/peers?state=running".into(),
            String::new(),
        ),
        ("peer", 0, format!("/network/peers/{id}"), String::new()),
        (
            "peer-log",
            0,
            format!("/network/peers/{id}/log"),
            String::new(),
        ),
        (
            "ban-peer",
            3,
            format!("/network/peers/{id}"),
            r#"{"acl":"ban"}"#.into(),
        ),
        (
            "trust-peer",
            3,
            format!("/network/peers/{id}"),
            r#"{"acl":"trust"}"#.into(),
        ),
        (
            "points",
            0,
            "/network/points?state=disconnected".into(),
            String::new(),
        ),
        (
            "point",
            0,
            "/network/points/192.0.2.1:9732".into(),
            String::new(),
        ),
        (
            "point-multiaddr",
            0,
            "/network/points/%2Fip4%2F192.0.2.1%2Ftcp%2F9732".into(),
            String::new(),
        ),
        (
            "point-log",
            0,
            "/network/points/192.0.2.1:9732/log".into(),
            String::new(),
        ),
        (
            "ban-point",
            3,
            "/network/points/192.0.2.1:9732".into(),
            r#"{"acl":"ban"}"#.into(),
        ),
        (
            "expect-point",
            3,
            "/network/points/192.0.2.1:9732".into(),
            format!(r#"{{"acl":"open","peer_id":"{id}"}}"#),
        ),
        (
            "greylist-ips",
            0,
            "/network/greylist/ips".into(),
            String::new(),
        ),
        (
            "greylist-peers",
            0,
            "/network/greylist/peers".into(),
            String::new(),
        ),
        (
            "clear-greylist",
            4,
            "/network/greylist".into(),
            String::new(),
        ),
        ("addrbook", 0, "/network/addrbook".into(), String::new()),
        ("connmgr", 0, "/connmgr".into(), String::new()),
        (
            "tag",
            2,
            format!("/connmgr/tags/{id}/app"),
            r#"{"value":42}"#.into(),
        ),
        ("untag", 4, format!("/connmgr/tags/{id}/app"), String::new()),
        (
            "protect",
            2,
            format!("/connmgr/protect/{id}/app"),
            String::new(),
        ),
        (
            "unprotect",
            4,
            format!("/connmgr/protect/{id}/app"),
            String::new(),
        ),
        ("rcmgr-stat", 0, "/rcmgr/stat".into(), String::new()),
        ("limits", 0, "/rcmgr/limits".into(), String::new()),
        (
            "set-limits",
            2,
            "/rcmgr/limits".into(),
            r#"{"System":{"ConnsInbound":77}}"#.into(),
        ),
        ("metrics", 0, "/metrics".into(), String::new()),
        ("openapi", 0, "/openapi.json".into(), String::new()),
        (
            "bad-body",
            3,
            format!("/network/peers/{id}"),
            r#"{"acl":"#.into(),
        ),
        ("no-route", 1, "/nowhere".into(), "{}".into()),
    ];
    for (name, method, path, body) in requests {
        let mut bytes = vec![method];
        bytes.extend_from_slice(path.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(body.as_bytes());
        write("admin_request", name, bytes);
    }
}
