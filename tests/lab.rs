//! A throwaway Docker lab for seeing ovlaudit work in a minute: a private dockerd with a few varied
//! containers, then `ovlaudit report` on it, checked against the engine and printed. It needs a `dockerd`
//! (whichever is installed: Debian's `docker.io`, Docker CE; or the one `OVLAUDIT_DOCKERD` names), the
//! `/usr/bin/docker` client and a static `/bin/busybox`; it installs nothing, and when something is
//! missing it says what, and the command that would install it without removing anything. Ignored in the
//! normal run; the README gives the command:
//!
//!     cargo test -p ovlaudit --test tests lab -- --ignored --nocapture

use crate::common::report_json;
use crate::harness::{Engine, BUSYBOX};

#[test]
#[ignore = "a demonstration; run it with --ignored --nocapture"]
fn lab() {
    // ldd says so of a static binary (on stderr, or stdout, by version).
    let static_busybox = std::process::Command::new("ldd").arg(BUSYBOX).output().is_ok_and(|o| {
        let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        said.contains("not a dynamic executable") || said.contains("statically linked")
    });
    assert!(
        static_busybox,
        "the lab builds its images from a static {BUSYBOX}; it would install it with\n    \
         apt-get install --no-remove busybox-static\n(--no-remove: apt stops rather than remove any package)"
    );
    let engine = Engine::start().expect("start a private dockerd").unwrap_or_else(|| {
        panic!(
            "the lab needs a dockerd (any: Debian's docker.io or Docker CE) and the /usr/bin/docker client; \
             none was found. On a host without Docker:\n    apt-get install --no-remove docker.io\n\
             (--no-remove: apt stops rather than remove anything; docker.io conflicts with Docker CE)"
        )
    });
    eprintln!("lab: a private dockerd with its data root at {}", engine.data_root().display());
    engine.import_busybox("busybox:lab");
    engine.build("app:1", "FROM busybox:lab\nRUN mkdir -p /srv/www && echo '<h1>hi</h1>' > /srv/www/index.html\n");
    engine.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "com.docker.compose.project=shop",
        "app:1",
        "sh",
        "-c",
        "for i in $(seq 1 200); do echo \"GET /$i 200\" >> /srv/www/access.log; done; touch /ready; exec sleep 3600",
    ]);
    engine.docker(&[
        "run",
        "-d",
        "--name",
        "cache",
        "app:1",
        "sh",
        "-c",
        "mkdir -p /data && i=0; while [ $i -lt 2000 ]; do echo $i > /data/k$i; i=$((i+1)); done; touch /ready; exec sleep 3600",
    ]);
    engine.docker(&[
        "run",
        "--name",
        "batch",
        "busybox:lab",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dump bs=1M count=24 2>/dev/null && truncate -s 1G /sparse && rm -r /bin/vi /bin/ls",
    ]);
    engine.docker(&["create", "--name", "idle", "busybox:lab", "true"]);
    // What a crash during `docker rmi` leaves: the image's layer directory and its short link survive the
    // removal of its metadata. Made by copying them aside and putting them back after the removal.
    engine.build("old:1", "FROM busybox:lab\nRUN head -c 300000 /bin/busybox > /old.bin\n");
    let upper = engine.docker(&["image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "old:1"]);
    let layer = std::path::Path::new(&upper).parent().expect("layer dir").to_path_buf();
    let short = std::fs::read_to_string(layer.join("link")).expect("link file");
    let aside = engine.dir().join("aside");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        assert!(std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().is_ok_and(|s| s.success()));
    };
    cp(&layer, &aside);
    engine.docker(&["rmi", "old:1"]);
    cp(&aside, &layer);
    std::os::unix::fs::symlink(
        format!("../{}/diff", layer.file_name().expect("name").to_string_lossy()),
        layer.parent().expect("overlay2").join("l").join(short),
    )
    .expect("restore the short link");
    // Let the running ones finish writing.
    for name in ["web", "cache"] {
        engine.docker(&["exec", name, "sh", "-c", "while [ ! -f /ready ]; do sleep 0.1; done"]);
    }

    let report = report_json(engine.data_root());
    let listed = engine.api_get("/containers/json?all=1&size=1");
    for c in listed.as_array().expect("containers") {
        let ours = crate::common::container(&report, c["Id"].as_str().expect("Id"));
        assert_eq!(ours["writable"]["apparent_bytes"].as_u64(), Some(c["SizeRw"].as_u64().unwrap_or(0)));
    }
    let out = crate::common::hermetic_ovlaudit()
        .args(["report", "--orphan-min-age", "0", "--docker-root", engine.data_root().to_str().expect("utf-8")])
        .output()
        .expect("run ovlaudit");
    assert!(out.status.success());
    println!("\n$ ovlaudit report --orphan-min-age 0 --docker-root {}\n", engine.data_root().display());
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!(
        "(each WRITABLE figure equals the engine's own SizeRw, each image's SIZE and SHARED its /system/df; \
         the orphans were just made, so --orphan-min-age 0 shows them at once; the lab is removed when this ends)"
    );
}
