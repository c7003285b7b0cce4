//! The table for people in a real terminal: `ovlaudit report` run inside tmux at 80 columns over an engine
//! with long container names, long tags and hidden build steps. Nothing may wrap: the pane's lines joined
//! (`capture-pane -J`) are the lines as drawn, and each fits 80 columns.

use crate::common::OVLAUDIT;
use crate::harness::start_engine;
use std::process::Command;

/// A private tmux server, killed when the test ends however it ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").status();
    }
}

#[test]
fn report_fits_80_columns_in_a_real_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "tmux is needed under CI");
        eprintln!("SKIP: no tmux");
        return;
    }
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    engine.build("steps:1", "FROM bb:1\nRUN echo 1 > /1\nRUN echo 2 > /2\nRUN echo 3 > /3\n");
    let long_tag = "registry.example.internal:5000/platform-team/a-rather-long-service-name:2026.12.02-release";
    engine.docker(&["tag", "steps:1", long_tag]);
    engine.docker(&["tag", "steps:1", "steps:latest"]);
    let long_name = "a-container-whose-name-is-much-longer-than-any-column-should-be";
    engine.docker(&["run", "--name", long_name, long_tag, "sh", "-c", "chown -R 1 /bin"]);
    engine.docker(&["run", "--name", "short", "-v", "data-volume-with-a-long-name:/d", "bb:1", "true"]);

    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let tmux = Tmux { socket: format!("ovlaudit-test-{}", std::process::id()) };
    let done = engine.dir().join("report-done");
    let script = format!("{OVLAUDIT} report --docker-root {root}; touch {}; sleep 600", done.display());
    tmux.run(&["new-session", "-d", "-x", "80", "-y", "120", &script]);
    let start = std::time::Instant::now();
    while !done.exists() {
        assert!(start.elapsed().as_secs() < 60, "ovlaudit report did not finish in tmux");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(tmux.run(&["display-message", "-p", "#{window_width}"]).trim(), "80");
    let joined = tmux.run(&["capture-pane", "-p", "-J", "-S", "-", "-E", "-"]);
    let drawn = tmux.run(&["capture-pane", "-p", "-S", "-", "-E", "-"]);
    let lines: Vec<&str> = joined.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    assert!(lines.iter().any(|l| l.contains("CONTAINER")), "the report is in the pane:\n{joined}");
    for l in &lines {
        assert!(l.chars().count() <= 80, "a line passes 80 columns ({}): {l}", l.chars().count());
    }
    assert_eq!(
        joined.lines().map(str::trim_end).collect::<Vec<_>>(),
        drawn.lines().map(str::trim_end).collect::<Vec<_>>(),
        "no line wrapped"
    );
    // Long cells are cut with a marker, hidden build steps and their count in one line.
    assert!(lines.iter().any(|l| l.contains('…')), "a cut cell is marked:\n{joined}");
    assert!(!joined.contains(long_name), "the long name is cut at 80 columns");
    // Three RUN steps: the last is the tagged image, the two before it hidden build steps.
    assert!(lines.iter().any(|l| l.starts_with("+ 2 hidden build steps")), "{joined}");
    assert!(lines.iter().any(|l| l.contains("… +2")), "the tag count survives the cut:\n{joined}");

    // --wide prints it all.
    let out = Command::new(OVLAUDIT).args(["report", "--wide", "--all", "--docker-root", &root]).output().expect("run");
    let wide = String::from_utf8_lossy(&out.stdout);
    assert!(wide.contains(long_name) && wide.contains(long_tag), "{wide}");
}
