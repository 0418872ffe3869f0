//! `peerage sim`: the simulator ([`peerage_sim`]) from the command line, with a progress bar,
//! a table or one JSON object, the event log and an HTML report.

use std::{io::BufWriter, process::ExitCode, time::Duration};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use peerage_sim::{Options, Scenario};

use crate::cli::SimArgs;

/// Runs `peerage sim`. Exit code 0 when the run ends with every live node within its bounds
/// and one connected component, 1 otherwise.
///
/// # Errors
///
/// An unknown or invalid scenario, or a log or report that cannot be written.
pub fn sim(args: &SimArgs, json: bool) -> anyhow::Result<ExitCode> {
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
    let mut options = Options::new(scenario)
        .with_seed(args.seed)
        .with_threads(usize::from(args.threads));
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
