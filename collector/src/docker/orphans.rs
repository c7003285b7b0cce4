//! Storage under a Docker data root that belongs to nobody: what `docker system df` cannot see because the
//! engine's own metadata no longer names it. Crashes, interrupted pulls and builds, and half-finished
//! removals leave it behind. This module finds it and sizes it; it never removes anything.
//!
//! What counts as referenced, from the engine's own bookkeeping (moby `layer/layer_store.go`,
//! `daemon/graphdriver/overlay2`):
//! - an overlay2 directory is referenced when a layer (`layerdb/sha256/*/cache-id`) or a container
//!   (`layerdb/mounts/*/{mount-id,init-id}`) names it;
//! - an overlay2 directory that BuildKit's `buildkit/snapshots.db` names is build cache;
//! - `overlay2/l/<short>` is the short link of the directory it points to;
//! - a layer being deleted is first renamed `layerdb/sha256/<chain-id>-<random>-removing`, then its
//!   directory is removed, then the renamed entry; a crash in between leaves both;
//! - a layer being registered (pull, load, build step, commit) is written under `layerdb/tmp/write-set-*`
//!   while its directory fills, and moved into `layerdb/sha256/` at the end.
//!
//! Safety rules, because an operator may act on this list: a directory that any live mount uses (its
//! mountpoint, upperdir, workdir or a lowerdir) is never an orphan; entries younger than the minimum age are
//! held back, since they may belong to an operation in progress; and when the layer database has entries
//! that cannot be read, unreferenced layer directories are held back too, since one of them may be named
//! by exactly such an entry.

use super::layerdb::{list_dir, read_field};
use super::DockerStore;
use crate::digest::{chain_ids, is_hex64};
use crate::engine::size_orphan;
use crate::finding::Findings;
use crate::mount_table::OverlayMount;
use crate::mountinfo::MountEntry;
use crate::report::Orphan;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Entries of `overlay2/` that the driver itself keeps there and that are not layers.
const DRIVER_ENTRIES: [&str; 2] = ["l", "backingFsBlockDev"];
/// How close in time a layer directory and a layer transaction must be to belong together: the driver
/// creates the directory just before it opens the transaction.
const TRANSACTION_SLACK: Duration = Duration::from_secs(120);
/// How many held-back paths a finding names.
const NAMED_IN_FINDING: usize = 5;

/// Finds and sizes every orphan under the data root of `store`. `mounts` is the whole mount table and
/// `overlays` its overlay mounts, both with host paths; `min_age` holds back entries modified more recently.
pub fn find_orphans(
    store: &DockerStore,
    mounts: &[MountEntry],
    overlays: &[OverlayMount],
    min_age: Duration,
    findings: &mut Findings,
) -> Vec<Orphan> {
    let audit = Audit::new(store, mounts, overlays, min_age, findings);
    let mut found = Vec::new();
    audit.layer_dirs(&mut found, findings);
    audit.short_links(&mut found);
    audit.layerdb_leftovers(&mut found, findings);
    audit.layers_without_dir(&mut found, findings);

    let mut out: Vec<Orphan> = found.into_iter().map(|c| c.measure(store, findings)).collect();
    out.sort_by(|a, b| b.allocated_bytes.cmp(&a.allocated_bytes).then_with(|| a.path.cmp(&b.path)));
    out
}

/// An orphan before it is sized.
struct Candidate {
    /// Where this process reads it.
    path: PathBuf,
    kind: &'static str,
    detail: String,
    modified: Option<SystemTime>,
}

impl Candidate {
    fn measure(self, store: &DockerStore, findings: &mut Findings) -> Orphan {
        let host = host_path(store, &self.path);
        // Through the data root's descriptor, no symlink followed in any component: a component swapped
        // for a link since the listing leads nowhere.
        let (apparent, allocated) = match size_orphan(&store.dir, &self.path) {
            Ok(u) => {
                if u.errors > 0 {
                    findings.warn(
                        "orphan_partly_unreadable",
                        format!(
                            "{} entries of an orphan could not be read, so its size is a lower bound; first: {}",
                            u.errors,
                            u.error_samples.join("; ")
                        ),
                        Some(&host),
                    );
                }
                (u.apparent, u.allocated)
            }
            Err(e) => {
                findings.warn(e.code("orphan_partly_unreadable"), format!("cannot size an orphan: {e}"), Some(&host));
                (0, 0)
            }
        };
        Orphan {
            path: host.to_string_lossy().into_owned(),
            runtime: "docker".to_owned(),
            kind: self.kind.to_owned(),
            apparent_bytes: apparent,
            allocated_bytes: allocated,
            detail: self.detail,
            modified: self.modified.map(crate::scan::rfc3339),
        }
    }
}

/// One unfinished layer database transaction (`layerdb/tmp/<name>`).
struct Transaction {
    path: PathBuf,
    modified: Option<SystemTime>,
    cache_id: Option<String>,
}

struct Audit<'a> {
    store: &'a DockerStore,
    overlay2: PathBuf,
    now: SystemTime,
    min_age: Duration,
    /// overlay2 directory → what references it.
    referenced: HashMap<String, String>,
    /// overlay2 directories and short links a live mount uses.
    live_dirs: HashSet<String>,
    live_links: HashSet<String>,
    /// overlay2 directory → the leftover metadata that last named it (a `-removing` entry, a transaction).
    leftover_refs: HashMap<String, String>,
    transactions: Vec<Transaction>,
    /// Layer database entries that exist but could not be read.
    unreadable_entries: Vec<PathBuf>,
    /// Directories found to be orphans, by name.
    orphan_dirs: std::cell::RefCell<HashSet<String>>,
}

impl<'a> Audit<'a> {
    fn new(
        store: &'a DockerStore,
        mounts: &[MountEntry],
        overlays: &[OverlayMount],
        min_age: Duration,
        findings: &mut Findings,
    ) -> Audit<'a> {
        let db = &store.layerdb;
        let layerdb_dir = store.root.path.join("image/overlay2/layerdb");
        let mut referenced = HashMap::new();
        for l in db.layers.values() {
            referenced.insert(l.cache_id.clone(), format!("layer {}", l.chain_id));
        }
        for rw in db.rw_layers.values() {
            referenced.insert(rw.mount_id.clone(), format!("container {}", rw.container_id));
            if let Some(init) = &rw.init_id {
                referenced.insert(init.clone(), format!("container {}", rw.container_id));
            }
        }
        // BuildKit's snapshots are overlay2 directories too: build cache, never orphans.
        for dir in super::buildcache::build_cache_dirs(&store.root.path, findings) {
            referenced.entry(dir.clone()).or_insert_with(|| format!("build cache snapshot {dir}"));
        }

        let host_overlay2 = store.root.host_path.join("overlay2");
        let mut live_dirs = HashSet::new();
        let mut live_links = HashSet::new();
        let mut note = |p: &Path| {
            let Ok(rel) = p.strip_prefix(&host_overlay2) else { return };
            let mut parts = rel.components().filter_map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            });
            match (parts.next(), parts.next()) {
                (Some("l"), Some(short)) => {
                    live_links.insert(short.to_owned());
                    if let Some(cache) = store.short_links.get(short) {
                        live_dirs.insert(cache.clone());
                    }
                }
                (Some(dir), _) => {
                    live_dirs.insert(dir.to_owned());
                }
                _ => {}
            }
        };
        for m in mounts {
            note(&m.mount_point);
        }
        for o in overlays {
            let l = &o.layers;
            for p in l.lower.iter().chain(&l.data_only).chain(&l.upper).chain(&l.work) {
                note(p);
            }
        }

        let mut leftover_refs = HashMap::new();
        for path in &db.removing {
            if let Ok(Some(cache)) = read_field(&store.dir, path, "cache-id") {
                leftover_refs
                    .insert(cache, format!("left by an interrupted removal ({})", host_path(store, path).display()));
            }
        }
        let mut transactions = Vec::new();
        for (_, path) in list_dir(&store.dir, &layerdb_dir.join("tmp"), findings) {
            let cache_id = read_field(&store.dir, &path, "cache-id").ok().flatten().filter(|c| !c.is_empty());
            if let Some(c) = &cache_id {
                leftover_refs.insert(
                    c.clone(),
                    format!("named only by the unfinished layer transaction {}", host_path(store, &path).display()),
                );
            }
            transactions.push(Transaction { modified: mtime(store, &path), path, cache_id });
        }

        let mut unreadable_entries = Vec::new();
        for (name, path) in list_dir(&store.dir, &layerdb_dir.join("sha256"), findings) {
            if is_hex64(&name) && !db.layers.contains_key(&format!("sha256:{name}")) {
                unreadable_entries.push(path);
            }
        }
        for (name, path) in list_dir(&store.dir, &layerdb_dir.join("mounts"), findings) {
            if !db.rw_layers.contains_key(&name) {
                unreadable_entries.push(path);
            }
        }

        Audit {
            store,
            overlay2: store.root.path.join("overlay2"),
            now: SystemTime::now(),
            min_age,
            referenced,
            live_dirs,
            live_links,
            leftover_refs,
            transactions,
            unreadable_entries,
            orphan_dirs: Default::default(),
        }
    }

    fn is_recent(&self, modified: Option<SystemTime>) -> bool {
        modified.is_some_and(|t| self.now.duration_since(t).unwrap_or_default() < self.min_age)
    }

    /// Transactions still in progress: changed less than the minimum age ago.
    fn open_transactions(&self) -> Vec<&Transaction> {
        self.transactions.iter().filter(|t| self.is_recent(t.modified)).collect()
    }

    /// Every entry of `overlay2/`: referenced directories are checked for their link, the others are
    /// orphans unless something live or recent explains them.
    fn layer_dirs(&self, found: &mut Vec<Candidate>, findings: &mut Findings) {
        let open = self.open_transactions();
        let mut withheld = Vec::new();
        for (name, path) in list_dir(&self.store.dir, &self.overlay2, findings) {
            if DRIVER_ENTRIES.contains(&name.as_str()) {
                continue;
            }
            let host = host_path(self.store, &path);
            if let Some(owner) = self.referenced.get(&name) {
                self.check_referenced(&name, &path, owner, findings);
                continue;
            }
            if self.live_dirs.contains(&name) {
                findings.warn(
                    "layer_dir_unreferenced_in_use",
                    "no layer or container names this directory, but a live mount uses it; it is not an orphan",
                    Some(&host),
                );
                continue;
            }
            let modified = mtime(self.store, &path);
            if self.is_recent(modified) {
                findings.info(
                    "orphan_candidate_recent",
                    format!(
                        "nothing names this directory, but it changed less than {} s ago and may belong to an \
                         operation in progress; run the report again later",
                        self.min_age.as_secs()
                    ),
                    Some(&host),
                );
                continue;
            }
            let in_open_transaction = open.iter().any(|t| match (t.modified, modified) {
                (Some(tx), Some(dir)) => dir + TRANSACTION_SLACK >= tx,
                _ => false,
            }) || open.iter().any(|t| t.cache_id.as_deref() == Some(name.as_str()));
            if in_open_transaction {
                findings.info(
                    "orphan_candidate_recent",
                    "nothing names this directory yet, but a layer transaction is in progress (a pull, load, \
                     build or commit) and it may be filling it; run the report again later",
                    Some(&host),
                );
                continue;
            }
            let layer_name = is_layer_dir_name(&name);
            if layer_name && !self.unreadable_entries.is_empty() {
                withheld.push(host);
                continue;
            }
            let (kind, detail) = if !layer_name {
                ("stray_entry", "not a layer directory, and nothing in the data root names it".to_owned())
            } else if let Some(why) = self.leftover_refs.get(&name) {
                ("layer_dir", format!("no layer or container names it; {why}"))
            } else if self.store.dir.metadata(&path.join("link")).is_err() {
                (
                    "layer_dir_without_link",
                    "no layer or container names it and it has no link file: its creation was interrupted".to_owned(),
                )
            } else {
                (
                    "layer_dir",
                    "no layer (layerdb/sha256/*/cache-id) and no container (layerdb/mounts/*/mount-id, init-id) \
                     names it"
                        .to_owned(),
                )
            };
            self.orphan_dirs.borrow_mut().insert(name);
            found.push(Candidate { path, kind, detail, modified });
        }
        if !withheld.is_empty() {
            let names: Vec<String> =
                withheld.iter().take(NAMED_IN_FINDING).map(|p| p.to_string_lossy().into_owned()).collect();
            let unreadable: Vec<String> = self
                .unreadable_entries
                .iter()
                .take(NAMED_IN_FINDING)
                .map(|p| host_path(self.store, p).to_string_lossy().into_owned())
                .collect();
            findings.warn(
                "orphans_withheld",
                format!(
                    "{} unreferenced layer director{} not reported as orphans because {} layer database entr{} \
                     could not be read and may name them (fix or remove those first: {}): {}",
                    withheld.len(),
                    if withheld.len() == 1 { "y is" } else { "ies are" },
                    self.unreadable_entries.len(),
                    if self.unreadable_entries.len() == 1 { "y" } else { "ies" },
                    unreadable.join(", "),
                    names.join(", ")
                ),
                Some(&self.store.root.host_path.join("overlay2")),
            );
        }
    }

    /// A referenced layer directory must have its `link` file, its short link, and a `lower` file whose
    /// links all exist.
    fn check_referenced(&self, name: &str, path: &Path, owner: &str, findings: &mut Findings) {
        let host = host_path(self.store, path);
        let writable = self.store.layerdb.rw_layers.values().any(|rw| rw.mount_id == name);
        match read_field(&self.store.dir, path, "link") {
            Ok(None) => findings.error(
                "layer_link_missing",
                format!("the directory of {owner} has no link file, so no layer above it can be mounted"),
                Some(&host.join("link")),
            ),
            Ok(Some(short)) => {
                if self.store.short_links.get(&short).map(String::as_str) != Some(name) {
                    let message = format!(
                        "the short link l/{short} of {owner} is missing or points elsewhere{}",
                        if writable { "" } else { ", so no layer above it can be mounted" }
                    );
                    let at = Some(self.store.root.host_path.join("overlay2/l").join(&short));
                    if writable {
                        findings.warn("short_link_missing", message, at.as_deref());
                    } else {
                        findings.error("short_link_missing", message, at.as_deref());
                    }
                }
            }
            Err(why) => findings.error("layer_link_missing", why, Some(&host.join("link"))),
        }
        // A container's own lower chain is checked where the container is reported.
        if !writable {
            if let Err(why) = self.store.lower_chain(name) {
                findings.error("lower_file_unresolved", why, Some(&host.join("lower")));
            }
        }
    }

    /// `l/` links whose directory is gone, or is an orphan.
    fn short_links(&self, found: &mut Vec<Candidate>) {
        let links: BTreeMap<&String, &String> = self.store.short_links.iter().collect();
        let orphan_dirs = self.orphan_dirs.borrow();
        for (short, cache) in links {
            if self.live_links.contains(short.as_str()) || self.referenced.contains_key(cache.as_str()) {
                continue;
            }
            let path = self.overlay2.join("l").join(short);
            let modified = mtime(self.store, &path);
            if self.is_recent(modified) {
                continue;
            }
            // Where the kernel would go when mounting through the link (its target, `../<cache>/diff`, was
            // checked when it was read), looked up beneath the store with no link followed, like every read.
            if self.store.dir.metadata(&self.overlay2.join(cache.as_str()).join("diff")).is_err() {
                found.push(Candidate {
                    path,
                    kind: "short_link_dangling",
                    detail: format!("points to ../{cache}/diff, which does not exist"),
                    modified,
                });
            } else if orphan_dirs.contains(cache.as_str()) {
                found.push(Candidate {
                    path,
                    kind: "short_link_unreferenced",
                    detail: format!("the short link of the orphan layer directory {cache}"),
                    modified,
                });
            }
        }
    }

    /// `-removing` entries and stale transactions in the layer database.
    fn layerdb_leftovers(&self, found: &mut Vec<Candidate>, findings: &mut Findings) {
        for path in &self.store.layerdb.removing {
            let modified = mtime(self.store, path);
            if self.is_recent(modified) {
                continue;
            }
            let cache = read_field(&self.store.dir, path, "cache-id").ok().flatten().unwrap_or_default();
            let dir_state = if cache.is_empty() {
                "it names no layer directory".to_owned()
            } else if !crate::hostfs::is_dir_name(&cache) {
                format!("its cache-id {:?} is not a layer directory name", crate::hostfs::excerpt(&cache, 80))
            } else if self.overlay2.join(&cache).exists() {
                format!("its layer directory {cache} is still there (listed separately)")
            } else {
                format!("its layer directory {cache} is already gone")
            };
            found.push(Candidate {
                path: path.clone(),
                kind: "layerdb_removing",
                detail: format!("a layer whose removal was interrupted; {dir_state}"),
                modified,
            });
        }
        for t in &self.transactions {
            if self.is_recent(t.modified) {
                findings.info(
                    "layer_transaction_in_progress",
                    "a layer database transaction changed recently (a pull, load, build or commit may be running); \
                     it is not reported as an orphan",
                    Some(&host_path(self.store, &t.path)),
                );
                continue;
            }
            let detail = match &t.cache_id {
                Some(c) => format!("an unfinished layer registration (interrupted pull, load, build or commit) for layer directory {c}"),
                None => "an unfinished layer registration (interrupted pull, load, build or commit)".to_owned(),
            };
            found.push(Candidate { path: t.path.clone(), kind: "layerdb_tmp", detail, modified: t.modified });
        }
    }

    /// Layer database entries whose overlay2 directory is gone: an orphan when nothing uses the layer,
    /// an error when an image or container needs it.
    fn layers_without_dir(&self, found: &mut Vec<Candidate>, findings: &mut Findings) {
        let db = &self.store.layerdb;
        let mut used: HashMap<String, Vec<String>> = HashMap::new();
        for img in self.store.images.values() {
            for c in chain_ids(&img.diff_ids) {
                used.entry(c).or_default().push(format!("image {}", img.id));
            }
        }
        for rw in db.rw_layers.values() {
            let mut next = rw.parent.clone();
            let mut steps = 0;
            while let Some(c) = next {
                steps += 1;
                if steps > 1000 {
                    break;
                }
                next = db.layers.get(&c).and_then(|l| l.parent.clone());
                used.entry(c).or_default().push(format!("container {}", rw.container_id));
            }
        }
        for l in db.layers.values() {
            if self.overlay2.join(&l.cache_id).exists() || self.is_recent(mtime(self.store, &l.path)) {
                continue;
            }
            let dir = self.store.host_layer_dir(&l.cache_id);
            match used.get(&l.chain_id) {
                Some(users) => {
                    let mut users = users.clone();
                    users.sort();
                    users.dedup();
                    findings.error(
                        "layer_dir_missing",
                        format!(
                            "layer {} has no layer directory, so {} cannot be used (remove and pull or build again)",
                            l.chain_id,
                            users.join(", ")
                        ),
                        Some(&dir),
                    );
                }
                None => found.push(Candidate {
                    path: l.path.clone(),
                    kind: "layerdb_without_layer_dir",
                    detail: format!(
                        "layer {}: no image or container uses it and its directory {} is gone",
                        l.chain_id,
                        dir.display()
                    ),
                    modified: mtime(self.store, &l.path),
                }),
            }
        }
    }
}

/// `<64 hex>` or `<64 hex>-init`: the names the overlay2 driver gives layer directories.
fn is_layer_dir_name(name: &str) -> bool {
    is_hex64(name.strip_suffix("-init").unwrap_or(name))
}

fn mtime(store: &DockerStore, path: &Path) -> Option<SystemTime> {
    let st = store.dir.metadata(path).ok()?;
    let secs = u64::try_from(st.st_mtime).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::new(secs, u32::try_from(st.st_mtime_nsec).unwrap_or(0)))
}

/// The host's name for a path this process reads under the data root.
fn host_path(store: &DockerStore, path: &Path) -> PathBuf {
    match path.strip_prefix(&store.root.path) {
        Ok(rel) => store.root.host_path.join(rel),
        Err(_) => path.to_owned(),
    }
}
