//! Incremental writable-layer accounting for `ovlaudit run`: a [`LayerState`] per writable layer, brought
//! up to date at each scan from the directories the fanotify group ([`ChangeFeed`]) saw change, so that a
//! scan costs what changed since the last one instead of a walk of every file.
//!
//! Whatever can make the state wrong or unavailable falls back to walking, is logged once with its reason
//! and counted in the scan event (`ovlaudit.scan.incremental`): no fanotify (kernel, seccomp filter,
//! privilege) → every layer walked as before; the kernel's queue overflowed → every state built again; a
//! directory that cannot be marked (the per-user mark limit) → that layer walked in full at every scan and
//! named, the marks it took removed so they leave room for other layers; a state that cannot be brought up to date (a directory moved under the scan, a new hard link to
//! a file with data) → that layer walked again into a new state. Every `reconcile_interval` every state is
//! built again from a full walk and compared with the one it replaces; the difference is reported as drift
//! (what no event reports, such as writes through a memory map).

use crate::fanotify::ChangeFeed;
use collector::engine::LayerSpec;
use collector::layer_state::{Changed, DirWatch, LayerState, RefreshError};
use collector::usage::{OverlayXattrs, UsageError, WritableUsage};
use collector::KnownUsages;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the incremental accounting did in one scan, for the scan event.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ScanCounters {
    /// Whether change notification is in use at all.
    pub enabled: bool,
    /// Why not, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// Layers whose figures came from their state.
    pub layers_incremental: u64,
    /// Layers walked in full this scan (new layers, rebuilt states, layers beyond the mark limit).
    pub layers_walked: u64,
    /// How many layers cannot be followed and are walked at every scan.
    pub unwatched: u64,
    /// The first of them (at most 20), each with the reason.
    pub unwatched_layers: BTreeMap<String, String>,
    /// Directories listed again because they changed.
    pub dirs_relisted: u64,
    /// New directories walked.
    pub dirs_walked: u64,
    /// Directories dropped because they are gone.
    pub dirs_dropped: u64,
    /// Directories followed (one fanotify mark each) after the scan.
    pub dirs_watched: u64,
    /// Change events read since the last scan.
    pub events: u64,
    /// States built again this scan, by reason.
    pub rebuilds: BTreeMap<String, u64>,
    /// Queue overflows since the agent started.
    pub overflows: u64,
    /// Whether this scan was a reconciliation (every state checked by a full walk).
    pub reconciled: bool,
    /// Layers whose state differed from the full walk at the last reconciliation.
    pub drift_layers: u64,
    /// The sum of the absolute differences of `apparent_bytes` and `allocated_bytes` found then.
    pub drift_bytes: u64,
}

/// Unwatched layers named in a scan event at most.
const MAX_NAMED_UNWATCHED: usize = 20;

struct Layer {
    id: u64,
    state: LayerState,
    xattrs: OverlayXattrs,
}

/// The agent's incremental accounting: the change feed, one state per followed layer, and counters.
pub struct Incremental {
    feed: Option<ChangeFeed>,
    unavailable: Option<String>,
    layers: HashMap<PathBuf, Layer>,
    /// Which layer and directory each marked directory's key belongs to.
    keys: HashMap<Box<[u8]>, (u64, u64)>,
    unwatched: BTreeMap<PathBuf, String>,
    next_id: u64,
    top_files: usize,
    threads: usize,
    reconcile_every: Duration,
    next_reconcile: Instant,
    overflows: u64,
    last: ScanCounters,
}

struct Watcher<'a> {
    feed: &'a ChangeFeed,
    keys: &'a mut HashMap<Box<[u8]>, (u64, u64)>,
    layer: u64,
}

impl DirWatch for Watcher<'_> {
    fn watch(&mut self, dir: BorrowedFd<'_>, ino: u64) -> io::Result<Box<[u8]>> {
        let key = self.feed.mark(dir)?;
        self.keys.insert(key.clone(), (self.layer, ino));
        Ok(key)
    }

    fn forget(&mut self, key: &[u8]) {
        if self.keys.get(key).is_some_and(|&(l, _)| l == self.layer) {
            self.keys.remove(key);
        }
    }

    fn unwatch(&mut self, dir: BorrowedFd<'_>) {
        self.feed.unmark(dir);
    }
}

impl Incremental {
    /// Starts the change feed; without fanotify the accounting says why and walks every layer. A layer's
    /// state is first built on `threads` threads (0: the walk's default), as the full walk uses them.
    pub fn start(top_files: usize, threads: usize, reconcile_every: Duration) -> Incremental {
        let (feed, unavailable) = match ChangeFeed::start() {
            Ok(f) => (Some(f), None),
            Err(e) => {
                let why = format!("fanotify_init: {}", io::Error::from(e));
                tracing::warn!("incremental accounting unavailable ({why}): every scan walks every writable layer");
                (None, Some(why))
            }
        };
        Incremental {
            feed,
            unavailable,
            layers: HashMap::new(),
            keys: HashMap::new(),
            unwatched: BTreeMap::new(),
            next_id: 1,
            top_files,
            threads,
            reconcile_every,
            next_reconcile: Instant::now() + reconcile_every,
            overflows: 0,
            last: ScanCounters::default(),
        }
    }

    /// Takes a new configuration's settings (a reload); a new top-files count rebuilds the states.
    pub fn configure(&mut self, top_files: usize, threads: usize, reconcile_every: Duration) {
        self.threads = threads;
        if top_files != self.top_files {
            self.top_files = top_files;
            self.drop_all();
        }
        if reconcile_every != self.reconcile_every {
            self.next_reconcile = self.next_reconcile - self.reconcile_every + reconcile_every;
            self.reconcile_every = reconcile_every;
        }
    }

    /// What the last scan did.
    pub fn counters(&self) -> &ScanCounters {
        &self.last
    }

    fn drop_all(&mut self) {
        let Some(feed) = &self.feed else { return };
        for (_, l) in self.layers.drain() {
            l.state.release(&mut Watcher { feed, keys: &mut self.keys, layer: l.id });
        }
    }

    /// Builds the state of `upperdir`; on a watch error the layer is walked at every scan from now on.
    fn build(&mut self, spec: &LayerSpec, upperdir: &PathBuf, c: &mut ScanCounters) -> Option<&Layer> {
        let xattrs = spec.xattrs;
        let feed = self.feed.as_ref()?;
        let id = self.next_id;
        self.next_id += 1;
        c.layers_walked += 1;
        let mut watcher = Watcher { feed, keys: &mut self.keys, layer: id };
        match LayerState::build(upperdir, xattrs, self.top_files, spec.beneath.clone(), self.threads, &mut watcher) {
            Ok(state) => {
                self.layers.insert(upperdir.clone(), Layer { id, state, xattrs });
                self.layers.get(upperdir)
            }
            Err(e) => {
                self.keys.retain(|_, (l, _)| *l != id);
                if let RefreshError::Watch { .. } = e {
                    tracing::warn!(
                        "writable layer {} cannot be followed ({e}); it is walked in full at every scan",
                        upperdir.display()
                    );
                    self.unwatched.insert(upperdir.clone(), e.to_string());
                }
                None
            }
        }
    }
}

impl KnownUsages for Incremental {
    fn known(&mut self, specs: &[LayerSpec]) -> Vec<Option<Result<WritableUsage, UsageError>>> {
        let mut c = ScanCounters {
            enabled: self.feed.is_some(),
            unavailable: self.unavailable.clone(),
            overflows: self.overflows,
            ..ScanCounters::default()
        };
        let Some(feed) = &self.feed else {
            c.layers_walked = specs.iter().filter(|s| s.upperdir.is_some()).count() as u64;
            self.last = c;
            return Vec::new();
        };
        let changes = feed.drain();
        c.events = changes.events;
        let reconcile = Instant::now() >= self.next_reconcile;
        if changes.overflow {
            self.overflows += 1;
            c.overflows = self.overflows;
            tracing::warn!("the change notification queue overflowed: every writable layer is walked again");
        }
        // Changed directories by layer.
        let mut changed: HashMap<u64, HashMap<u64, Changed>> = HashMap::new();
        for (key, new_dirs) in changes.dirs {
            if let Some(&(layer, ino)) = self.keys.get(&key) {
                changed.entry(layer).or_default().entry(ino).or_default().new_dirs.extend(new_dirs);
            }
        }
        // Layers gone from the host are let go; their marks went with their directories.
        // A layer holding a nested engine's data root is walked at every scan, without that root: its
        // state here would count the root too.
        let wanted: HashMap<&PathBuf, OverlayXattrs> = specs
            .iter()
            .filter(|s| s.exclude.is_empty())
            .filter_map(|s| s.upperdir.as_ref().map(|p| (p, s.xattrs)))
            .collect();
        let gone: Vec<PathBuf> = self.layers.keys().filter(|p| !wanted.contains_key(p)).cloned().collect();
        for p in gone {
            if let Some(l) = self.layers.remove(&p) {
                l.state.release(&mut Watcher { feed, keys: &mut self.keys, layer: l.id });
            }
        }
        self.unwatched.retain(|p, _| wanted.contains_key(p));
        let mut drift = (0u64, 0u64);
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let Some(upper) = &spec.upperdir else {
                out.push(None);
                continue;
            };
            if self.unwatched.contains_key(upper) || !spec.exclude.is_empty() {
                c.layers_walked += 1;
                out.push(None);
                continue;
            }
            let mut rebuild: Option<String> = None;
            // At a reconciliation the state is first brought up to date, so that what the walk finds
            // beyond it is what no event reported.
            let mut compare = false;
            if changes.overflow {
                rebuild = Some("queue overflow".into());
            } else if let Some(l) = self.layers.get_mut(upper) {
                if l.xattrs != spec.xattrs {
                    rebuild = Some("overlay xattr namespace changed".into());
                } else {
                    let mine = changed.remove(&l.id).unwrap_or_default();
                    let feed = self.feed.as_ref().expect("checked above");
                    let mut watcher = Watcher { feed, keys: &mut self.keys, layer: l.id };
                    match l.state.refresh(mine, &mut watcher) {
                        Ok(s) => {
                            c.dirs_relisted += s.dirs_relisted;
                            c.dirs_walked += s.dirs_walked;
                            c.dirs_dropped += s.dirs_dropped;
                            if !reconcile {
                                c.layers_incremental += 1;
                                out.push(Some(Ok(l.state.usage())));
                                continue;
                            }
                            rebuild = Some("reconciliation".into());
                            compare = true;
                        }
                        Err(RefreshError::Watch { path, source }) => {
                            let why = format!("cannot watch {}: {source}", path.display());
                            tracing::warn!(
                                "writable layer {} cannot be followed ({why}); it is walked in full at every scan",
                                upper.display()
                            );
                            self.unwatched.insert(upper.clone(), why);
                            self.abandon(upper);
                            c.layers_walked += 1;
                            out.push(None);
                            continue;
                        }
                        Err(e) => {
                            tracing::info!("writable layer {}: walking it again ({e})", upper.display());
                            rebuild = Some(rebuild_reason(&e).into());
                        }
                    }
                }
            }
            let old = self.layers.contains_key(upper).then(|| self.release(upper)).flatten();
            if let Some(r) = &rebuild {
                *c.rebuilds.entry(r.clone()).or_default() += 1;
            }
            match self.build(spec, upper, &mut c) {
                Some(l) => {
                    let new = l.state.usage();
                    if let (Some(old), true) = (old, compare) {
                        let d = old.apparent_bytes.abs_diff(new.apparent_bytes)
                            + old.allocated_bytes.abs_diff(new.allocated_bytes);
                        if old != new {
                            drift.0 += 1;
                            drift.1 += d;
                            tracing::warn!(
                                "reconciliation: writable layer {} had drifted by {d} bytes \
                                 (apparent {} → {}, allocated {} → {}, files {} → {}); corrected",
                                upper.display(),
                                old.apparent_bytes,
                                new.apparent_bytes,
                                old.allocated_bytes,
                                new.allocated_bytes,
                                old.files,
                                new.files
                            );
                        }
                    }
                    out.push(Some(Ok(new)));
                }
                None => out.push(None),
            }
        }
        if reconcile {
            self.next_reconcile = Instant::now() + self.reconcile_every;
            c.reconciled = true;
            c.drift_layers = drift.0;
            c.drift_bytes = drift.1;
            tracing::info!("reconciliation: {} layers drifted, {} bytes in all", drift.0, drift.1);
        } else {
            c.drift_layers = self.last.drift_layers;
            c.drift_bytes = self.last.drift_bytes;
        }
        // Named up to a limit, so the scan event stays small however many layers are beyond the mark limit.
        c.unwatched = self.unwatched.len() as u64;
        c.unwatched_layers = self
            .unwatched
            .iter()
            .take(MAX_NAMED_UNWATCHED)
            .map(|(p, why)| (p.to_string_lossy().into_owned(), why.clone()))
            .collect();
        c.dirs_watched = self.keys.len() as u64;
        self.last = c;
        out
    }
}

impl Incremental {
    /// Lets go of the state of `upper`, returning its last figures.
    fn release(&mut self, upper: &PathBuf) -> Option<WritableUsage> {
        let feed = self.feed.as_ref()?;
        let l = self.layers.remove(upper)?;
        let usage = l.state.usage();
        l.state.release(&mut Watcher { feed, keys: &mut self.keys, layer: l.id });
        Some(usage)
    }
}

impl Incremental {
    /// Gives up the state of `upper` for good, its marks removed so that they leave room for other layers.
    fn abandon(&mut self, upper: &PathBuf) {
        let Some(feed) = self.feed.as_ref() else { return };
        let Some(l) = self.layers.remove(upper) else { return };
        l.state.abandon(&mut Watcher { feed, keys: &mut self.keys, layer: l.id });
    }
}

fn rebuild_reason(e: &RefreshError) -> &'static str {
    match e {
        RefreshError::Open(_) => "upperdir unreadable",
        RefreshError::Watch { .. } => "mark failed",
        RefreshError::Replaced { .. } => "upperdir replaced",
        RefreshError::Lost { .. } => "directory moved during the scan",
        RefreshError::NewHardLink { .. } => "new hard link",
    }
}

/// Adds the counters to the scan event (the last of a scan's events) as `ovlaudit.scan.incremental`.
pub fn annotate(events: &mut [serde_json::Value], c: &ScanCounters) {
    let Some(scan) = events.last_mut().and_then(|e| e.pointer_mut("/ovlaudit/scan")) else { return };
    if let (Some(obj), Ok(v)) = (scan.as_object_mut(), serde_json::to_value(c)) {
        obj.insert("incremental".into(), v);
    }
}
