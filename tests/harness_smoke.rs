//! The harness itself, end to end: a private engine comes up, makes images and a container that its
//! own API reports, and leaves nothing behind when dropped.

use crate::harness::Engine;

#[test]
fn engine_starts_imports_builds_and_stops() {
    let engine = match Engine::start() {
        Ok(Some(engine)) => engine,
        // No engine on this machine and not CI: Engine::start printed the SKIP line.
        Ok(None) => return,
        Err(e) => panic!("{e}"),
    };
    assert!(engine.socket().exists(), "{}", engine.socket().display());
    assert!(
        engine.data_root().join("overlay2").is_dir(),
        "the engine must use overlay2 under {}",
        engine.data_root().display()
    );

    let base = engine.import_busybox("bb:1");
    let two = engine.build("two:1", "FROM bb:1\nRUN echo hi > /a\n");
    assert!(base.starts_with("sha256:"), "{base}");
    assert!(two.starts_with("sha256:"), "{two}");
    assert_ne!(base, two);

    let container = engine.docker(&["run", "-d", "--name", "s1", "two:1", "sleep", "300"]);
    assert_eq!(engine.docker(&["exec", "s1", "cat", "/a"]), "hi");

    let listed = engine.api_get("/containers/json?all=1&size=1");
    let listed = listed.as_array().expect("/containers/json is an array");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let s1 = &listed[0];
    assert_eq!(s1["Id"], container.as_str());
    assert_eq!(s1["Names"], serde_json::json!(["/s1"]));
    assert_eq!(s1["State"], "running");
    assert_eq!(s1["ImageID"], two.as_str());
    // SizeRw is omitted while the writable layer is empty; SizeRootFs is always there with size=1.
    assert!(s1["SizeRootFs"].as_u64().is_some_and(|size| size > 0), "size=1 reports SizeRootFs: {s1}");

    let base_layers = engine.api_get(&format!("/images/{base}/json"))["RootFS"]["Layers"].clone();
    let two_layers = engine.api_get(&format!("/images/{two}/json"))["RootFS"]["Layers"].clone();
    let base_layers = base_layers.as_array().expect("RootFS.Layers is an array");
    let two_layers = two_layers.as_array().expect("RootFS.Layers is an array");
    assert_eq!(base_layers.len(), 1, "{base_layers:?}");
    assert_eq!(two_layers.len(), 2, "{two_layers:?}");
    assert_eq!(two_layers[0], base_layers[0], "the build sits on the import");

    let pid = engine.pid();
    let dir = engine.dir().to_path_buf();
    let containerd_pid = std::fs::read_to_string(engine.exec_root().join("containerd/containerd.pid"))
        .expect("dockerd started its own containerd and wrote its pid")
        .trim()
        .parse::<u32>()
        .expect("containerd.pid holds a pid");
    drop(engine);

    assert!(!running(pid), "dockerd pid {pid} is still running");
    assert!(!running(containerd_pid), "containerd pid {containerd_pid} is still running");
    assert!(!dir.exists(), "{} was not removed", dir.display());
    let dir_text = dir.to_str().expect("an ASCII temp dir");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    assert!(!mountinfo.contains(dir_text), "mounts left under {dir_text}:\n{mountinfo}");
    // Shims name the exec root on their command line; container processes carry the id in their
    // cgroup path.
    for entry in std::fs::read_dir("/proc").expect("list /proc") {
        let proc_dir = entry.expect("read a /proc entry").path();
        let Some(pid) = proc_dir.file_name().and_then(|n| n.to_str()?.parse::<u32>().ok()) else {
            continue;
        };
        if !running(pid) {
            continue;
        }
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains(dir_text), "process {pid} outlived the engine: {cmdline}");
        let cgroup = std::fs::read_to_string(proc_dir.join("cgroup")).unwrap_or_default();
        assert!(!cgroup.contains(&container), "process {pid} of container s1 outlived the engine: {cmdline}");
    }
}

/// Whether `pid` is a process that has not exited. A zombie has exited: it only waits for a parent
/// (here often an init that reaps lazily) to collect its status.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, fields)| !fields.starts_with(['Z', 'X'])))
}
