//! `peerage sim`: the simulator ([`peerage_sim`]) from the command line, with a progress bar,
//! a table or one JSON object, the event log and an HTML report; `--scenario eclipse` runs the
//! eclipse attack on one victim instead ([`peerage_sim::eclipse`]).

use std::{io::BufWriter, process::ExitCode, time::Duration};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use peerage_sim::{
    Options, Scenario,
    eclipse::{self, EclipseOptions},
};

use crate::cli::{SimArgs, Toggle};

/// Runs `peerage sim`. Exit code 0 when the run ends with every live node within its bounds
/// and one connected component, 1 otherwise.
///
/// # Errors
///
/// An unknown or invalid scenario, or a log or report that cannot be written.
pub fn sim(args: &SimArgs, json: bool) -> anyhow::Result<ExitCode> {
    if args.scenario == "eclipse" {
        return eclipse(args, json);
    }
    if let Some(flag) = args.eclipse.given().first() {
        anyhow::bail!("{flag} is a flag of --scenario eclipse");
    }
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(n) = args.nodes {
        scenario.nodes = n as usize;
        scenario.bootstrap = scenario.bootstrap.min(scenario.nodes);
    }
    if let Some(d) = args.duration {
        scenario.duration = d;
    }
    scenario.validate()?;
    let total = scenario.duration;
    // The command exits after the report: it need not wait for the nodes to be freed.
    let mut options = Options::new(scenario)
        .with_seed(args.seed)
        .with_threads(usize::from(args.threads.unwrap_or(1)))
        .with_free_in_background(true);
    if let Some(path) = &args.log {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create the log file {}", path.display()))?;
        options = options.with_log(Box::new(BufWriter::with_capacity(1 << 20, file)));
    }
    let bar =
        ProgressBar::with_draw_target(Some(total.as_secs().max(1)), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} simulated s {msg}",
        )
        .expect("valid template"),
    );
    let shown = bar.clone();
    options = options.with_progress(Box::new(move |t: Duration| shown.set_position(t.as_secs())));
    let report = peerage_sim::run(options)?;
    bar.finish_and_clear();
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
        let html = dir.join("report.html");
        std::fs::write(&html, report.html())
            .with_context(|| format!("cannot write {}", html.display()))?;
        let data = dir.join("report.json");
        std::fs::write(
            &data,
            serde_json::to_vec_pretty(&report).expect("report serializes"),
        )
        .with_context(|| format!("cannot write {}", data.display()))?;
        eprintln!("report: {}", html.display());
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
    } else {
        print!("{}", report.table());
    }
    Ok(
        if report.within_bounds == 1.0 && report.giant_component == 1.0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Runs `peerage sim --scenario eclipse`: one seed or several, with the address book on or
/// off, or both (`--compare`). Exit code 1 when a seed run with the book on is eclipsed.
///
/// # Errors
///
/// A flag of the multi-node scenarios, or options that do not describe a run.
fn eclipse(args: &SimArgs, json: bool) -> anyhow::Result<ExitCode> {
    let engine_only = [
        ("--nodes", args.nodes.is_some()),
        ("--duration", args.duration.is_some()),
        ("--log", args.log.is_some()),
        ("--report", args.report.is_some()),
    ];
    if let Some((flag, _)) = engine_only.iter().find(|(_, given)| *given) {
        anyhow::bail!("{flag} is not a flag of --scenario eclipse (see --honest, --days, --seeds)");
    }
    let e = &args.eclipse;
    let defaults = EclipseOptions::new();
    let options = EclipseOptions {
        seed: args.seed,
        seeds: e.seeds.unwrap_or(defaults.seeds),
        addrbook: e.addrbook.map_or(defaults.addrbook, |t| t == Toggle::On),
        honest: e.honest.map_or(defaults.honest, |n| n as usize),
        honest_groups: e.honest_groups.map(|n| n as usize),
        attacker_ips: e.attacker_ips.map_or(defaults.attacker_ips, |n| n as usize),
        attacker_groups: e
            .attacker_groups
            .map_or(defaults.attacker_groups, |n| n as usize),
        days: e.days.unwrap_or(defaults.days),
        churn_per_hour: e.churn.unwrap_or(defaults.churn_per_hour),
        attack_interval: e.attack_interval.unwrap_or(defaults.attack_interval),
        attacker_answers_inbound: e
            .attacker_inbound_answers
            .map_or(defaults.attacker_answers_inbound, |t| t == Toggle::On),
        attacker_holds_outbound: e
            .attacker_holds_outbound
            .map_or(defaults.attacker_holds_outbound, |t| t == Toggle::On),
        honest_relay: e.honest_relay.unwrap_or(defaults.honest_relay),
        threads: args.threads.map(usize::from),
        runs_dir: e.runs_dir.clone(),
    };
    options.validate()?;
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(200));
    let runs = if e.curve {
        "book off, then on, at 16 to 256 attacker groups"
    } else if e.compare {
        "book off, then on"
    } else {
        ""
    };
    spinner.set_message(format!(
        "eclipse: {} seed(s) of {} simulated days {runs}",
        options.seeds, options.days
    ));
    let (text, value, eclipsed) = if e.curve {
        let c = eclipse::curve(&options)?;
        if let Some(path) = &e.svg {
            std::fs::write(path, c.svg())
                .with_context(|| format!("writing the plot to {}", path.display()))?;
        }
        let eclipsed = c.points.iter().map(|p| p.on.eclipsed_seeds).sum();
        (c.table(), serde_json::to_string(&c), eclipsed)
    } else if e.compare {
        let c = eclipse::compare(&options)?;
        let eclipsed = c.on.eclipsed_seeds;
        (c.table(), serde_json::to_string(&c), eclipsed)
    } else {
        let r = eclipse::run(&options)?;
        let eclipsed = if r.addrbook { r.eclipsed_seeds } else { 0 };
        (r.table(), serde_json::to_string(&r), eclipsed)
    };
    spinner.finish_and_clear();
    if json {
        println!("{}", value.expect("report serializes"));
    } else {
        print!("{text}");
    }
    Ok(if eclipsed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
