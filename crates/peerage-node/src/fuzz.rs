//! Fuzz targets of the node's decoders: plain functions over bytes from outside, called by the
//! cargo-fuzz project in `fuzz/` and, over the committed corpora (`fuzz/corpus/<target>/`), by
//! this crate's tests.

use std::path::Path;

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    config::{self, FileConfig},
};

/// A configuration file (`--config FILE`, TOML): parsing and checking it never panics, and a
/// configuration that passes is a fixed point of `config show`: what `show` prints parses and
/// passes again, and shows the same.
///
/// # Panics
///
/// If either does not hold.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = FileConfig::parse(text, Path::new("/fuzz")) else {
        return;
    };
    let cli = Cli::parse_from(["peerage", "run"]);
    let admin = cli.client;
    let Command::Run(args) = cli.command else {
        unreachable!("parsed as run");
    };
    let Ok(effective) = config::resolve_file(file, &args, &admin) else {
        return;
    };
    let shown = config::show(&effective);
    let again = FileConfig::parse(&shown, Path::new("/elsewhere"))
        .unwrap_or_else(|e| panic!("config show printed what does not parse: {e:#}\n{shown}"));
    let again = config::resolve_file(again, &args, &admin)
        .unwrap_or_else(|e| panic!("config show printed what does not pass: {e:#}\n{shown}"));
    assert_eq!(
        config::show(&again),
        shown,
        "config show is not a fixed point"
    );
}

#[cfg(test)]
mod tests {
    use peerage::fuzz::{corpus, replay};

    use super::*;

    #[test]
    fn the_config_toml_corpus_replays() {
        assert!(replay(&corpus("config_toml"), config_toml) > 0);
    }
}
