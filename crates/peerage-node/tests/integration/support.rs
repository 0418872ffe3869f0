//! Running the `peerage` binary in tests.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// A free TCP port on 127.0.0.1, for `--listen`.
pub(crate) const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

/// The `peerage` binary.
pub(crate) fn peerage() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peerage"))
}

/// The lines of `output` (a child's stdout or stderr), read on a thread until it ends or the
/// receiver is dropped.
pub(crate) fn lines(output: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A `peerage run` child process, killed on drop.
pub(crate) struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `peerage run` with `args` (logs quiet).
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut command = peerage();
        command
            .arg("run")
            .args(args)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
        Self::spawn(command)
    }

    /// Starts `command`, a `peerage run` (or a wrapper that execs one), its stdout read for
    /// [`line`](Self::line) and its stderr as `command` sets it.
    pub(crate) fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn peerage run");
        let lines = lines(child.stdout.take().expect("piped"));
        Self { child, lines }
    }

    /// The lines of its stderr, which must have been piped; once.
    pub(crate) fn stderr_lines(&mut self) -> mpsc::Receiver<String> {
        lines(
            self.child
                .stderr
                .take()
                .expect("stderr piped, and taken once"),
        )
    }

    /// Its process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Starts `peerage run` on the data directory `dir`, listening on [`LOOPBACK`], with
    /// `extra` arguments.
    pub(crate) fn start_in(dir: &std::path::Path, extra: &[&str]) -> Self {
        let data = dir.to_str().expect("UTF-8 path");
        let mut args = vec!["--data-dir", data, "--listen", LOOPBACK];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// The next stdout line starting with `prefix`, without the prefix.
    pub(crate) fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line starting with {prefix:?} within 20 s"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// Kills the process with SIGKILL (`kill -9`): no shutdown code runs.
    pub(crate) fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// Sends SIGTERM and waits for the exit (at most 10 s).
    pub(crate) fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 50 ms until it holds; panics naming `what` after 20 s.
pub(crate) fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `peerage` with `args` to completion; returns (exit code, stdout, stderr).
pub(crate) fn output(args: &[&str]) -> (i32, String, String) {
    let out = peerage()
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run peerage");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
