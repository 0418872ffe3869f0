//! The peers file: what it keeps, what it writes, what it refuses, and what survives a SIGKILL
//! in the middle of a save.
//!
//! The crash test's child is this same test binary, run with `PEERAGE_PEERS_CRASH_CHILD` set.

#![allow(clippy::disallowed_methods)]

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use peerage_core::pool::CloseReason;
use peerage_store::peers_file::{
    self, Entry, Event, EventKind, FILE_NAME, MAX_EVENTS, MAX_FILE_BYTES, PeersFile,
};

const CHILD_ENV: &str = "PEERAGE_PEERS_CRASH_CHILD";

fn peer(i: u32) -> PeerId {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_be_bytes());
    seed[31] = 7;
    Keypair::ed25519_from_bytes(seed)
        .unwrap()
        .public()
        .to_peer_id()
}

fn addr(i: u32) -> Multiaddr {
    format!(
        "/ip4/10.0.{}.{}/tcp/{}",
        i / 256 % 256,
        i % 256,
        4000 + i % 1000
    )
    .parse()
    .unwrap()
}

/// A time with whole milliseconds, which the file keeps exactly.
fn ms(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// An entry with every field set.
fn full_entry(i: u32) -> Entry {
    let base = 1_795_255_200_000 + u64::from(i) * 1000; // 2026-11-21T10:00:00Z
    let mut metadata = BTreeMap::new();
    metadata.insert("responses".to_owned(), serde_json::json!(i));
    metadata.insert(
        "nested".to_owned(),
        serde_json::json!({"a": [1, 2, {"b": null}], "s": "x"}),
    );
    Entry {
        peer_id: peer(i),
        created: ms(base + 123),
        trusted: i.is_multiple_of(2),
        score: Some(f64::from(i) / 4.0 - 1.0),
        peer_metadata: metadata,
        events: vec![
            Event {
                kind: EventKind::IncomingRequest,
                timestamp: ms(base + 1),
                point: Some(addr(i)),
                reason: None,
            },
            Event {
                kind: EventKind::RejectingRequest,
                timestamp: ms(base + 2),
                point: None,
                reason: None,
            },
            Event {
                kind: EventKind::RequestRejected,
                timestamp: ms(base + 3),
                point: Some(addr(i + 1)),
                reason: None,
            },
            Event {
                kind: EventKind::ConnectionEstablished,
                timestamp: ms(base + 4),
                point: Some(addr(i)),
                reason: None,
            },
            Event {
                kind: EventKind::Disconnection,
                timestamp: ms(base + 5),
                point: Some(addr(i)),
                reason: Some(CloseReason::EvictionMostRepresentedGroup),
            },
            Event {
                kind: EventKind::ExternalDisconnection,
                timestamp: ms(base + 6),
                point: Some(addr(i)),
                reason: Some(CloseReason::Remote),
            },
        ],
        last_failed_connection: Some((addr(i + 2), ms(base + 7))),
        last_rejected_connection: Some((addr(i + 3), ms(base + 8))),
        last_established_connection: Some((addr(i), ms(base + 4))),
        last_disconnection: Some((addr(i), ms(base + 6))),
    }
}

fn file_in(dir: &Path) -> PeersFile {
    PeersFile::new(dir.join(FILE_NAME))
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn every_field_round_trips_in_octez_shape() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    let minimal = Entry::new(peer(99), ms(1_795_255_200_999));
    let entries = vec![full_entry(1), full_entry(2), minimal.clone()];
    file.save(&entries).unwrap();
    assert_eq!(file.load().unwrap(), entries);

    let text = std::fs::read_to_string(file.path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = json.as_array().expect("a list at top level");
    assert_eq!(list.len(), 3);
    let first = list[0].as_object().unwrap();
    for key in [
        "peer_id",
        "created",
        "trusted",
        "score",
        "peer_metadata",
        "events",
        "last_failed_connection",
        "last_rejected_connection",
        "last_established_connection",
        "last_disconnection",
    ] {
        assert!(first.contains_key(key), "missing {key} in {text}");
    }
    assert_eq!(first["peer_id"], peer(1).to_string());
    assert_eq!(first["created"], "2026-11-21T10:00:01.123Z");
    assert_eq!(first["trusted"], false);
    assert_eq!(
        first["last_established_connection"],
        serde_json::json!([addr(1).to_string(), "2026-11-21T10:00:01.004Z"])
    );
    assert_eq!(
        first["events"][3],
        serde_json::json!({
            "kind": "connection_established",
            "timestamp": "2026-11-21T10:00:01.004Z",
            "point": "/ip4/10.0.0.1/tcp/4001",
        })
    );
    assert_eq!(first["events"][1]["kind"], "rejecting_request");
    assert!(first["events"][1].get("point").is_none());

    // Optional fields are absent, not null.
    let last = list[2].as_object().unwrap();
    let mut keys: Vec<&str> = last.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created", "events", "peer_id", "peer_metadata", "trusted"]
    );
    assert_eq!(last["peer_metadata"], serde_json::json!({}));
    assert_eq!(last["events"], serde_json::json!([]));
}

#[test]
fn lenient_on_defaults_and_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    let text = format!(
        r#"[{{"peer_id": "{}", "created": "2026-11-21T10:00:00Z", "future_field": [1, 2],
             "last_disconnection": null,
             "events": [{{"kind": "disconnection", "timestamp": "2026-11-21T10:00:00.5Z",
                          "point": null, "extra": true}}]}}]"#,
        peer(5)
    );
    std::fs::write(file.path(), text).unwrap();
    let mut want = Entry::new(peer(5), ms(1_795_255_200_000));
    want.events.push(Event {
        kind: EventKind::Disconnection,
        timestamp: ms(1_795_255_200_500),
        point: None,
        reason: None,
    });
    assert_eq!(file.load().unwrap(), vec![want]);
}

#[test]
fn missing_file_is_empty_and_save_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    let file = file_in(&nested);
    assert_eq!(file.load().unwrap(), vec![]);
    assert!(!nested.exists(), "load created something");
    let loaded = file.load_or_set_aside(SystemTime::now()).unwrap();
    assert!(loaded.entries.is_empty() && loaded.set_aside.is_none());

    file.save(&[full_entry(3)]).unwrap();
    assert_eq!(dir_listing(&nested), [FILE_NAME]);
    file.save(&[]).unwrap();
    assert_eq!(dir_listing(&nested), [FILE_NAME]);
    assert_eq!(file.load().unwrap(), vec![]);
    assert_eq!(std::fs::read_to_string(file.path()).unwrap().trim(), "[]");
}

/// A saved file of two entries, and the same text with `edit` applied.
fn corrupt(dir: &Path, edit: impl FnOnce(String) -> String) -> (PeersFile, Vec<u8>) {
    let file = file_in(dir);
    file.save(&[full_entry(1), full_entry(2)]).unwrap();
    let text = edit(std::fs::read_to_string(file.path()).unwrap());
    std::fs::write(file.path(), &text).unwrap();
    (file, text.into_bytes())
}

fn line_of(bytes: &[u8], needle: &str) -> usize {
    let text = std::str::from_utf8(bytes).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn corrupt_files_are_reported_and_set_aside_whole() {
    type Case = (&'static str, fn(String) -> String, &'static str);
    let cases: [Case; 4] = [
        ("truncated", |t| t[..t.len() / 2].to_owned(), "EOF"),
        (
            "wrong type",
            |t| t.replacen("\"trusted\": true", "\"trusted\": \"yes\"", 1),
            "expected a boolean",
        ),
        (
            "bad peer id",
            |t| t.replacen(&peer(2).to_string(), "12D3KooWnotapeer", 1),
            "invalid peer id",
        ),
        (
            "not a list",
            |_| "{\"peers\": []}".to_owned(),
            "expected a sequence",
        ),
    ];
    for (name, edit, reason_has) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (file, bytes) = corrupt(dir.path(), edit);

        let err = file.load().unwrap_err();
        let text = err.to_string();
        match &err {
            peers_file::Error::Parse {
                path, line, reason, ..
            } => {
                assert_eq!(path, file.path(), "{name}");
                assert!(reason.contains(reason_has), "{name}: {text}");
                let want = match name {
                    "wrong type" => line_of(&bytes, "\"yes\""),
                    "bad peer id" => line_of(&bytes, "notapeer"),
                    "truncated" => std::str::from_utf8(&bytes).unwrap().lines().count(),
                    _ => 1,
                };
                assert_eq!(*line, want, "{name}: {text}");
            }
            _ => panic!("{name}: {text}"),
        }
        assert!(
            text.starts_with(&format!(
                "peers file {} is corrupt at line ",
                file.path().display()
            )),
            "{text}"
        );
        assert_eq!(std::fs::read(file.path()).unwrap(), bytes, "{name}");

        let now = UNIX_EPOCH + Duration::from_secs(1_795_255_200);
        let loaded = file.load_or_set_aside(now).unwrap();
        assert!(loaded.entries.is_empty());
        let (err, moved) = loaded.set_aside.expect("set aside");
        assert!(matches!(err, peers_file::Error::Parse { .. }), "{err}");
        assert_eq!(moved, dir.path().join("peers.json.corrupt-1795255200"));
        assert_eq!(std::fs::read(&moved).unwrap(), bytes);
        assert!(!file.path().exists());
        assert_eq!(file.load().unwrap(), vec![]);

        // Corrupt again at the same second: a new name, the first one kept.
        let (_, bytes2) = corrupt(dir.path(), |_| "[".to_owned());
        let (_, moved2) = file.load_or_set_aside(now).unwrap().set_aside.unwrap();
        assert_eq!(moved2, dir.path().join("peers.json.corrupt-1795255200-1"));
        assert_eq!(std::fs::read(&moved2).unwrap(), bytes2);
        assert_eq!(std::fs::read(&moved).unwrap(), bytes);
        std::fs::write(file.path(), "nope").unwrap();
        let moved3 = file.set_aside(now).unwrap();
        assert_eq!(moved3, dir.path().join("peers.json.corrupt-1795255200-2"));
        assert_eq!(
            dir_listing(dir.path()),
            [
                "peers.json.corrupt-1795255200",
                "peers.json.corrupt-1795255200-1",
                "peers.json.corrupt-1795255200-2"
            ]
        );
    }
}

#[test]
fn io_errors_are_not_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    // A directory where the file should be: it cannot be read, and it is not corrupt data.
    std::fs::create_dir(file.path()).unwrap();
    let err = file.load_or_set_aside(SystemTime::now()).unwrap_err();
    assert!(matches!(err, peers_file::Error::Io { .. }), "{err}");
    assert!(err.to_string().contains(&file.path().display().to_string()));
    assert!(file.path().is_dir());
    assert_eq!(dir_listing(dir.path()), [FILE_NAME]);
    // Nor can it be replaced by a save.
    let err = file.save(&[full_entry(1)]).unwrap_err();
    assert!(matches!(err, peers_file::Error::Io { .. }), "{err}");
    assert_eq!(dir_listing(dir.path()), [FILE_NAME]);
    // Setting aside a missing file is an I/O error.
    let missing = PeersFile::new(dir.path().join("other.json"));
    assert!(matches!(
        missing.set_aside(SystemTime::now()).unwrap_err(),
        peers_file::Error::Io { .. }
    ));
}

fn with_events(i: u32, n: usize) -> Entry {
    let mut e = Entry::new(peer(i), ms(1_000));
    e.events = (0..n)
        .map(|k| Event {
            kind: EventKind::IncomingRequest,
            timestamp: ms(2_000 + k as u64),
            point: None,
            reason: None,
        })
        .collect();
    e
}

#[test]
fn too_many_events_are_refused_on_load_and_truncated_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    let entries = vec![with_events(1, MAX_EVENTS), with_events(2, MAX_EVENTS + 1)];
    let text = serde_json::to_string(&entries).unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let err = file.load().unwrap_err();
    match &err {
        peers_file::Error::TooMany {
            path,
            what,
            count,
            max,
        } => {
            assert_eq!(path, file.path());
            assert_eq!(what, &format!("events of peer {}", peer(2)));
            assert_eq!((*count, *max), (MAX_EVENTS + 1, MAX_EVENTS));
        }
        _ => panic!("{err}"),
    }
    assert_eq!(std::fs::read_to_string(file.path()).unwrap(), text);
    let loaded = file.load_or_set_aside(UNIX_EPOCH).unwrap();
    assert!(matches!(
        loaded.set_aside,
        Some((peers_file::Error::TooMany { .. }, _))
    ));

    let long = with_events(3, 250);
    file.save(std::slice::from_ref(&long)).unwrap();
    let loaded = file.load().unwrap();
    assert_eq!(loaded[0].events.len(), MAX_EVENTS);
    assert_eq!(loaded[0].events, long.events[250 - MAX_EVENTS..]);
}

#[test]
fn too_many_peers_are_refused_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    let entry = Entry::new(PeerId::random(), ms(0));
    let entries = vec![entry; peers_file::MAX_PEERS + 1];
    let err = file.save(&entries).unwrap_err();
    assert!(
        matches!(&err, peers_file::Error::TooMany { what, count, .. }
            if what == "peers" && *count == peers_file::MAX_PEERS + 1),
        "{err}"
    );
    assert!(!file.path().exists());
    assert_eq!(dir_listing(dir.path()), Vec::<String>::new());
}

#[test]
fn an_oversized_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    // Sparse: no data blocks, so reading it would parse zero bytes, not refuse its size.
    File::create(file.path())
        .unwrap()
        .set_len(MAX_FILE_BYTES + 1)
        .unwrap();
    let err = file.load().unwrap_err();
    match &err {
        peers_file::Error::TooLarge { path, bytes, max } => {
            assert_eq!(path, file.path());
            assert_eq!((*bytes, *max), (MAX_FILE_BYTES + 1, MAX_FILE_BYTES));
        }
        _ => panic!("{err}"),
    }
    assert_eq!(
        std::fs::metadata(file.path()).unwrap().len(),
        MAX_FILE_BYTES + 1
    );
    let loaded = file.load_or_set_aside(UNIX_EPOCH).unwrap();
    let (err, moved) = loaded.set_aside.unwrap();
    assert!(matches!(err, peers_file::Error::TooLarge { .. }), "{err}");
    assert_eq!(std::fs::metadata(moved).unwrap().len(), MAX_FILE_BYTES + 1);
}

#[test]
fn an_oversized_save_is_refused_and_the_old_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_in(dir.path());
    file.save(&[full_entry(1)]).unwrap();
    let before = std::fs::read(file.path()).unwrap();
    let mut big = full_entry(2);
    big.peer_metadata.insert(
        "blob".to_owned(),
        serde_json::Value::String("x".repeat(MAX_FILE_BYTES as usize)),
    );
    let err = file.save(&[big]).unwrap_err();
    assert!(matches!(err, peers_file::Error::TooLarge { .. }), "{err}");
    assert_eq!(std::fs::read(file.path()).unwrap(), before);
    assert_eq!(dir_listing(dir.path()), [FILE_NAME]);
}

// --- Crash safety -------------------------------------------------------------------------------

/// The entries of the `n`th save: `n` entries, entry `i` being [`full_entry`]`(i)`.
fn crash_entries(n: u32) -> Vec<Entry> {
    (0..n).map(full_entry).collect()
}

/// Saves 1, 2, 3... entries forever, printing `saved N` once each save returned.
fn child(path: &Path) -> ! {
    let file = PeersFile::new(path);
    let mut entries = Vec::new();
    for n in 1.. {
        entries.push(full_entry(n - 1));
        file.save(&entries).unwrap();
        println!("saved {n}");
    }
    unreachable!()
}

/// The numbers in the complete `saved N` lines of `out`, until EOF or `stop` of them.
fn read_acks(out: &mut impl BufRead, stop: usize, acks: &mut Vec<u32>) {
    let mut line = String::new();
    while acks.len() < stop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            return;
        }
        // A line cut short by the kill is no acknowledgement. The first `saved` follows the
        // harness's `test <name> ... ` on the same line.
        if let Some((_, n)) = line
            .strip_suffix('\n')
            .and_then(|l| l.rsplit_once("saved "))
        {
            acks.push(n.parse().unwrap());
        }
    }
}

fn crash_round(path: &Path, lines: usize, delay: Duration) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_9_mid_save_keeps_a_whole_file",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acks = Vec::new();
    read_acks(&mut out, lines, &mut acks);
    assert_eq!(acks.len(), lines, "the child stopped saving");
    std::thread::sleep(delay);
    // SIGKILL, most likely in the middle of the next save.
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever it printed before dying was acknowledged too.
    read_acks(&mut out, usize::MAX, &mut acks);
    let acknowledged = *acks.iter().max().unwrap();

    let loaded = PeersFile::new(path)
        .load()
        .expect("a whole file after SIGKILL");
    let n = loaded.len() as u32;
    assert!(
        n == acknowledged || n == acknowledged + 1,
        "{n} entries on disk, {acknowledged} acknowledged"
    );
    assert_eq!(loaded, crash_entries(n));
}

#[test]
fn kill_9_mid_save_keeps_a_whole_file() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let start = Instant::now();
    // Each round starts from the file the previous one left, and from 1 entry again.
    for (round, lines) in [1usize, 3, 8, 2, 15].into_iter().enumerate() {
        let jitter = start.elapsed().subsec_nanos() % 3_000;
        let delay = Duration::from_micros(u64::from(jitter) + 500 * round as u64);
        crash_round(&path, lines, delay);
    }
    assert!(start.elapsed() < Duration::from_secs(10), "too slow");
}
