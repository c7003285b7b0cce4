//! The Debian package, built with the documented command (`cargo deb -p ovlaudit --locked`), checked by
//! lintian, and installed, removed and purged with apt in the Debian root under a real systemd that the
//! systemd test boots (see `systemd_unit`): the service is enabled and started by the package, reports
//! the engine's containers in the journal, stops on removal, keeps its configuration on removal and loses
//! it, its enablement and its logs on purge.

use crate::harness::{Engine, EngineOptions};
use crate::systemd_unit::{
    boot_systemd_host, by_container, dataset, engine_sizes, run_here, systemd_root_tar, DataRootBind,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const LINTIAN: &str = "/usr/bin/lintian";
const CONFFILE: &str = "/etc/ovlaudit/ovlaudit.toml";
/// What the package installs besides the configuration, and must take away again.
const INSTALLED: [&str; 10] = [
    "/usr/bin/ovlaudit",
    "/usr/lib/systemd/system/ovlaudit.service",
    "/usr/share/man/man1/ovlaudit.1.gz",
    "/usr/share/man/man1/ovlaudit-report.1.gz",
    "/usr/share/man/man1/ovlaudit-run.1.gz",
    "/usr/share/man/man5/ovlaudit.toml.5.gz",
    "/usr/share/bash-completion/completions/ovlaudit",
    "/usr/share/zsh/vendor-completions/_ovlaudit",
    "/usr/share/fish/vendor_completions.d/ovlaudit.fish",
    "/usr/share/doc/ovlaudit/copyright",
];

/// `cargo-deb`, from PATH or cargo's own bin directory; `None` when it is not installed.
fn cargo_deb() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    dirs.into_iter().chain(home.map(|h| h.join("bin"))).map(|d| d.join("cargo-deb")).find(|p| p.is_file())
}

/// Builds the package as docs/packaging.md says, at the lowest CPU priority; returns the .deb's path.
fn build_deb(cargo_deb: &Path) -> PathBuf {
    let started = Instant::now();
    let stdout = run_here(
        Command::new("nice")
            .args(["-n", "19"])
            .arg(cargo_deb)
            .args(["-p", "ovlaudit", "--locked", "--manifest-path"])
            .arg(format!("{REPO}/Cargo.toml")),
    );
    let deb = String::from_utf8_lossy(&stdout)
        .lines()
        .rev()
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .expect("cargo deb names the package it wrote");
    eprintln!("package: {} ({:.0} s)", deb.display(), started.elapsed().as_secs_f64());
    deb
}

#[test]
fn debian_package_installs_runs_removes_and_purges_under_real_systemd() {
    let options = EngineOptions { data_root_named: Some(PathBuf::from("/var/lib/docker")), ..EngineOptions::default() };
    let Some(engine) = Engine::start_with(options).unwrap_or_else(|e| panic!("cannot start a private dockerd: {e}"))
    else {
        return;
    };
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let tools = [("cargo-deb", cargo_deb()), ("lintian", Some(PathBuf::from(LINTIAN)).filter(|p| p.exists()))];
    for (name, found) in &tools {
        if found.is_none() {
            assert!(!ci, "{name} is missing (.ci/run installs it)");
            eprintln!("SKIP: no {name}; the package test needs it");
            return;
        }
    }
    let cargo_deb = tools[0].1.clone().expect("checked");
    if !Path::new("/usr/sbin/debootstrap").exists() {
        assert!(!ci, "debootstrap is missing");
        eprintln!("SKIP: no debootstrap");
        return;
    }

    let (root_tar, deb) = std::thread::scope(|scope| {
        let root = scope.spawn(systemd_root_tar);
        let deb = build_deb(&cargo_deb);
        (root.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), deb)
    });

    // lintian: no tag left but those overridden, with their reasons, in packaging/lintian/ovlaudit.
    let out =
        Command::new(LINTIAN).args(["-I", "--pedantic", "--no-tag-display-limit"]).arg(&deb).output().expect("lintian");
    let tags = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && tags.trim().is_empty(),
        "lintian ({}):\n{tags}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    engine.docker(&["import", root_tar.to_str().expect("utf-8"), "debian-systemd:root"]);
    let host = boot_systemd_host(&engine, "debian-systemd:root", DataRootBind::Directory);
    host.install(&std::fs::read(&deb).expect("read the package"), "/tmp/ovlaudit.deb", "0644");

    // Install: enabled and started by the package; `systemctl start` of the Type=notify unit (from the
    // package's postinst) returned after the first scan.
    let t_install = Instant::now();
    host.run(&["apt-get", "install", "-y", "-q", "/tmp/ovlaudit.deb"]);
    eprintln!("apt-get install ./ovlaudit.deb: {} ms, service started", t_install.elapsed().as_millis());
    assert_eq!(host.run(&["systemctl", "is-enabled", "ovlaudit"]).trim(), "enabled");
    let s = host.show(&["ActiveState", "SubState", "FragmentPath", "StatusText"]);
    assert_eq!((s["ActiveState"].as_str(), s["SubState"].as_str()), ("active", "running"), "{s:?}");
    // Debian's merged /usr: /lib is /usr/lib, and systemd names the unit by its /lib path.
    assert!(
        ["/lib/systemd/system/ovlaudit.service", "/usr/lib/systemd/system/ovlaudit.service"]
            .contains(&s["FragmentPath"].as_str()),
        "the package's unit, not a copy in /etc: {s:?}"
    );
    assert!(s["StatusText"].starts_with("scan "), "{s:?}");
    for path in INSTALLED.iter().chain([&CONFFILE]) {
        host.run(&["test", "-f", path]);
    }
    // systemd made the unit's LogsDirectory= for its dynamic user: the purge must take it away.
    host.run(&["test", "-d", "/var/log/private/ovlaudit"]);
    let conffiles = host.run(&["dpkg-query", "-W", "-f=${Conffiles}", "ovlaudit"]);
    assert!(conffiles.contains(CONFFILE), "the configuration is a conffile: {conffiles}");
    let shipped = std::fs::read(format!("{REPO}/systemd/ovlaudit.service")).expect("read the unit");
    let installed = host.run(&["cat", "/usr/lib/systemd/system/ovlaudit.service"]);
    assert_eq!(installed.as_bytes(), shipped.as_slice(), "the package's unit is the shipped one");
    let version = host.run(&["ovlaudit", "--version"]);
    assert_eq!(version.trim(), format!("ovlaudit {}", env!("CARGO_PKG_VERSION")));

    // Reporting: the first scan lists every container of the engine (this systemd host among them).
    host.wait_for(Duration::from_secs(60), "a scan in the journal", |h| !h.scans().is_empty());
    let scans = host.scans();
    let listed: Vec<String> = by_container(&scans[0]).into_keys().collect();
    let engine_ids: Vec<String> = engine_sizes(&engine).into_keys().collect();
    assert_eq!(listed, engine_ids, "the service reports the engine's containers");
    assert!(engine_ids.contains(&host.id));
    assert_eq!(scans[0].last().map(dataset), Some("ovlaudit.scan"));

    // Remove: the service stops, the files go, the (edited) configuration stays.
    host.run(&["sh", "-c", &format!("echo 'interval = \"5m\"' >> {CONFFILE}")]);
    host.run(&["apt-get", "remove", "-y", "-q", "ovlaudit"]);
    let s = host.show(&["ActiveState", "LoadState"]);
    assert_eq!(s["ActiveState"], "inactive", "{s:?}");
    // The Debian way (deb-systemd-helper): the unit is masked while only the configuration is left.
    assert_eq!(s["LoadState"], "masked", "{s:?}");
    for path in INSTALLED {
        let gone = host.output(&["test", "-e", path]);
        assert!(!gone.status.success(), "{path} is removed");
    }
    let kept = host.run(&["cat", CONFFILE]);
    assert!(kept.ends_with("interval = \"5m\"\n"), "the edited configuration is kept on remove");
    let status = host.run(&["dpkg-query", "-W", "-f=${Status}", "ovlaudit"]);
    assert_eq!(status, "deinstall ok config-files");
    let journal = host.journal();
    assert!(journal.contains("SIGTERM: stopping"), "stopped by the removal:\n{journal}");

    // Purge: the configuration, the unit's enablement and the logs directory go too.
    host.run(&["apt-get", "purge", "-y", "-q", "ovlaudit"]);
    for path in [
        "/etc/ovlaudit",
        "/etc/systemd/system/multi-user.target.wants/ovlaudit.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/ovlaudit.service.dsh-also",
        "/var/log/private/ovlaudit",
        "/var/log/ovlaudit",
    ] {
        let gone = host.output(&["test", "-e", path]);
        assert!(!gone.status.success(), "{path} is gone after purge");
    }
    assert_eq!(host.prop("LoadState"), "not-found", "unmasked and gone after purge");
    let status = host.output(&["dpkg-query", "-W", "-f=${Status}", "ovlaudit"]);
    assert!(
        !status.status.success() || String::from_utf8_lossy(&status.stdout).contains("not-installed"),
        "{status:?}"
    );
}
