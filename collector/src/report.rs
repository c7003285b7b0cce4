//! The report document (`ovlaudit.report/v1`): the serde types that `ovlaudit report --format json` writes
//! and that every shipped event nests under `ovlaudit.*`. This is a public contract: fields are added,
//! never renamed or removed. Sizes are integer bytes; paths that are not UTF-8 are written lossily and
//! flagged with a `path_not_utf8` finding.

use crate::finding::Finding;
use crate::usage::WritableUsage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The schema name written in `schema`.
pub const REPORT_SCHEMA: &str = "ovlaudit.report/v1";

/// One audit of one host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Always [`REPORT_SCHEMA`].
    pub schema: String,
    /// When the scan started, RFC 3339 UTC.
    pub generated_at: String,
    /// The audited host.
    pub host: HostInfo,
    /// What was read, and from where.
    pub sources: Sources,
    /// Every container of every engine found, running or not, largest writable layer first.
    pub containers: Vec<ContainerReport>,
    /// Every image.
    pub images: Vec<ImageReport>,
    /// Overlay mounts that belong to no known container (another engine, a hand-made mount), with their
    /// layers identified where possible.
    pub unowned_mounts: Vec<MountReport>,
    /// Storage that belongs to no image or container.
    pub orphans: Vec<Orphan>,
    /// Problems and notable facts.
    pub findings: Vec<Finding>,
    /// Sums over the report.
    pub totals: Totals,
    /// How long the scan took, in milliseconds.
    pub scan_duration_ms: u64,
    /// Docker's local volumes, largest first (`report` only; empty from `run`).
    #[serde(default)]
    pub volumes: Vec<VolumeReport>,
    /// BuildKit's build cache records in the Docker data root, largest first (`report` only).
    #[serde(default)]
    pub build_cache: Vec<BuildCacheRecord>,
    /// Kubernetes pods whose containers the CRI created here, with their containers' sums.
    #[serde(default)]
    pub pods: Vec<crate::kubernetes::PodReport>,
}

/// One local volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeReport {
    /// Its name (64 hex for an anonymous volume).
    pub name: String,
    /// Its `_data` directory, as the host names it.
    pub path: String,
    /// Bytes as `docker system df -v` counts them (the `SizeRw` rule).
    pub apparent_bytes: u64,
    /// Allocated bytes, each inode once.
    pub allocated_bytes: u64,
    /// Containers whose record mounts it, running or not (their number is Docker's `LINKS`).
    pub containers: Vec<String>,
    /// No container mounts it: `docker volume prune` removes it.
    pub dangling: bool,
    /// Made by the engine for a container (`-v /path`, an image's `VOLUME`), named by 64 hex.
    pub anonymous: bool,
    /// Entries that could not be read.
    pub errors: u64,
}

/// One BuildKit build cache record, as `docker system df -v` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildCacheRecord {
    /// Record id (`CACHE ID`).
    pub id: String,
    /// `regular`, `source.local`, `exec.cachemount`, … (`CACHE TYPE`).
    pub kind: String,
    /// What made it (`mount / from exec /bin/sh -c …`).
    pub description: String,
    /// Parent record.
    pub parent: Option<String>,
    /// Its data is an image layer: counted with the images, not freed by `docker builder prune`.
    pub shared: bool,
    /// Bytes (`SIZE`).
    pub size_bytes: u64,
    /// Allocated bytes of its own directory (0 when shared).
    pub allocated_bytes: u64,
    /// Its own overlay2 directory, when it has one.
    pub path: Option<String>,
    /// When it was made.
    pub created: Option<String>,
    /// When a build last used it.
    pub last_used: Option<String>,
    /// How many builds used it.
    pub usage_count: u64,
}

/// The audited host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub name: String,
}

/// What the scan read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sources {
    /// The mount table file that was parsed, or null when none could be read.
    pub mount_table: Option<String>,
    /// The Docker data root as the host names it.
    pub docker_root: String,
    /// Whether a Docker overlay2 data root was found there.
    pub docker_found: bool,
    /// Every engine store that was read (Docker, containers-storage, containerd), and any named on the
    /// command line that could not be.
    #[serde(default)]
    pub engines: Vec<EngineSource>,
}

/// One engine's store on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineSource {
    /// `docker`, `podman` (containers-storage, also used by CRI-O and Buildah) or `containerd`.
    pub engine: String,
    /// The store's root as the host names it.
    pub root: String,
    /// Whether it was found and read.
    pub found: bool,
    /// containerd namespaces seen in it (empty for other engines).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// For an engine nested in a container of another (Docker-in-Docker): that container, and where its
    /// data root is. Null for an engine of the host itself.
    #[serde(default)]
    pub nested_in: Option<NestedIn>,
}

/// The container an engine is nested in: its data root is a volume or bind mount of that container, or lies
/// in that container's writable layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedIn {
    /// The outer container's id.
    pub container_id: String,
    /// The outer container's name.
    pub container_name: String,
    /// The outer container's engine (`docker`).
    pub runtime: String,
    /// Where the nested data root is mounted inside the outer container (`/var/lib/docker`).
    pub path_in_container: String,
    /// `volume` or `bind`.
    pub mount_type: String,
    /// The volume's name, for a volume.
    pub volume: Option<String>,
}

/// One container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerReport {
    /// 64-hex id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// The engine that owns it: `docker`, `podman`, `cri-o` or `containerd`.
    pub runtime: String,
    /// The containerd namespace (`default`, `k8s.io`, `moby`); null for other engines.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `running`, `exited`, `created`, `paused`, `restarting`, `removing`, `dead`, or `unknown` when the
    /// record could not be read.
    pub state: String,
    /// Creation time as the engine recorded it.
    pub created: Option<String>,
    /// The container's image.
    pub image: ImageRef,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The writable layer and its usage; null when the engine records none.
    pub writable: Option<WritableReport>,
    /// The init layer Docker puts between image and writable layer.
    pub init_layer: Option<InitLayer>,
    /// Image layers, base first.
    pub layers: Vec<LayerReport>,
    /// The live overlay mount, for a running container.
    pub mount: Option<MountReport>,
    /// The json-file log.
    pub log_path: Option<String>,
    /// For a container of a nested engine (Docker-in-Docker): the container that engine runs in. Null for a
    /// container of the host's own engines.
    #[serde(default)]
    pub nested_in: Option<NestedIn>,
    /// Apparent bytes of the json-file log and its rotated files (`-json.log.N`, `-json.log.N.gz`); null
    /// when the container has no json-file log (another log driver, or never started).
    #[serde(default)]
    pub log_bytes: Option<u64>,
    /// For a container the CRI created: its pod, from the CRI labels. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<crate::kubernetes::PodRef>,
}

/// A container's image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRef {
    /// `sha256:…`.
    pub id: String,
    /// The image as the user named it when creating the container.
    pub name: String,
    /// The image's current tags.
    pub tags: Vec<String>,
}

/// A writable layer: where it is and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WritableReport {
    /// overlay2 directory name (Docker's mount id).
    pub cache_id: String,
    /// The layer directory.
    pub layer_dir: String,
    /// Its `diff/`, the overlay upperdir.
    pub upperdir: String,
    /// Its `work/`.
    pub workdir: String,
    /// Its `merged/`, where the engine mounts it.
    pub mergeddir: String,
    /// The lower layers from the on-disk `lower` file, resolved, top first (init layer first).
    pub lowerdirs: Vec<String>,
    /// The size the owning engine itself reports for this layer: Docker's and Podman's `SizeRw`
    /// (`apparent_bytes`), containerd's snapshot usage (`allocated_bytes`).
    #[serde(default)]
    pub engine_bytes: u64,
    /// What the walk counted.
    #[serde(flatten)]
    pub usage: WritableUsage,
    /// Entries that also exist in a lower layer (copied up), their content compared with the lower copy;
    /// null when not analysed (`ovlaudit run`, or `report --no-copy-ups`).
    #[serde(default)]
    pub copy_ups: Option<crate::copyup::CopyUps>,
    /// Lower-layer bytes hidden by this layer's whiteouts, opaque directories and replacements; null when
    /// not analysed.
    #[serde(default)]
    pub shadowed: Option<crate::copyup::Shadowed>,
    /// Data roots of engines nested in this container that lie in this layer (host paths): left out of this
    /// layer's figures, which are thus smaller than the engine's own `SizeRw` by their size, because they
    /// are reported as that engine's (its containers, images and orphans). Absent when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nested_engines: Vec<String>,
}

/// A container's init layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitLayer {
    /// overlay2 directory name (`<mount-id>-init`).
    pub cache_id: String,
}

/// One image layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerReport {
    /// overlay2 directory name.
    pub cache_id: String,
    /// `sha256:…` of the layer and its ancestors.
    pub chain_id: String,
    /// `sha256:…` of the layer's content.
    pub diff_id: String,
    /// The layer's size as the engine recorded it.
    pub size_bytes: Option<u64>,
}

/// An overlay mount from the mount table, its layer paths resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountReport {
    /// Where it is mounted: the engine's own mount point (`…/merged`) when the mount is seen there, else
    /// the first of `mountpoints`.
    pub mountpoint: String,
    /// Every mount point where this overlay (one superblock) is seen, in mount table order: copies made
    /// by propagation (a container holding the host's data root, a shared root, `--rbind`) and the
    /// agent's own root when it runs in the container it audits.
    #[serde(default)]
    pub mountpoints: Vec<String>,
    /// The superblock's device, `major:minor` as the mount table writes it (null from `/proc/mounts`).
    #[serde(default)]
    pub device: Option<String>,
    /// The kernel's mount id (null when read from `/proc/mounts`).
    pub mount_id: Option<u32>,
    /// The upper layer, absolute; null for a read-only overlay.
    pub upperdir: Option<String>,
    /// The work directory, absolute.
    pub workdir: Option<String>,
    /// Lower layers, absolute and with short links resolved, top first.
    pub lowerdirs: Vec<String>,
    /// Data-only lower layers (after `::`, or `datadir+=`), resolved.
    pub data_only_lowerdirs: Vec<String>,
    /// Whether the mounter gave relative layer paths (long layer chains).
    pub relative_paths: bool,
    /// Each lower layer identified, top first.
    pub layers: Vec<MountLayer>,
}

/// One lower layer of a mount, identified where the data root knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountLayer {
    /// Resolved absolute path.
    pub path: String,
    /// overlay2 directory name, when the path is in a known data root.
    pub cache_id: Option<String>,
    /// ChainID, when it is an image layer.
    pub chain_id: Option<String>,
    /// DiffID, when it is an image layer.
    pub diff_id: Option<String>,
    /// `image`, `init`, `container`, or `unknown`.
    pub role: String,
}

/// One image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageReport {
    /// `sha256:…`.
    pub id: String,
    /// The engine that holds it.
    #[serde(default)]
    pub runtime: String,
    /// The containerd namespace; null for other engines.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Tags (`name:tag`).
    pub tags: Vec<String>,
    /// Sum of the image's layer sizes as the engine recorded them (`Size` in `GET /system/df`).
    pub size_bytes: u64,
    /// Bytes of its layers that other images also use (`SharedSize` in `GET /system/df`).
    #[serde(default)]
    pub shared_bytes: u64,
    /// `size_bytes - shared_bytes`: what removing this image alone would free.
    #[serde(default)]
    pub unique_bytes: u64,
    /// Untagged and not the parent of another image: what `docker images -f dangling=true` lists.
    #[serde(default)]
    pub dangling: bool,
    /// Untagged build step with child images: hidden by `docker images` and `docker system df`.
    #[serde(default)]
    pub intermediate: bool,
    /// Number of containers using it.
    pub containers: u64,
    /// ChainIDs, base first.
    pub layers: Vec<String>,
    /// For an image of a nested engine: the container that engine runs in.
    #[serde(default)]
    pub nested_in: Option<NestedIn>,
}

/// Storage that belongs to nobody.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Orphan {
    /// The path.
    pub path: String,
    /// The engine whose store it is in.
    #[serde(default)]
    pub runtime: String,
    /// What kind of leftover it is.
    pub kind: String,
    /// Apparent bytes under it.
    pub apparent_bytes: u64,
    /// Allocated bytes under it.
    pub allocated_bytes: u64,
    /// Why it is an orphan and where it came from, for people.
    #[serde(default)]
    pub detail: String,
    /// Last modification time of the entry itself, RFC 3339 UTC.
    #[serde(default)]
    pub modified: Option<String>,
}

/// What removing things would free, per section (apparent bytes, as `docker system df` counts them; the
/// orphans' allocated bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclaimable {
    /// `SizeRw` of the containers that are not running: `docker container prune`.
    pub containers_bytes: u64,
    /// Bytes of the image layers that no container's image holds: `docker image prune -a`.
    pub images_bytes: u64,
    /// Dangling volumes: `docker volume prune`.
    pub volumes_bytes: u64,
    /// Build cache records not shared with images: `docker builder prune`.
    pub build_cache_bytes: u64,
    /// The json-file logs of containers that are not running, removed with them.
    pub logs_bytes: u64,
    /// Orphans (allocated): only by hand, after reading why each is one.
    pub orphans_bytes: u64,
}

/// Sums over the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Containers.
    pub containers: u64,
    /// Running containers.
    pub containers_running: u64,
    /// Sum of writable `apparent_bytes`.
    pub writable_apparent_bytes: u64,
    /// Sum of writable `allocated_bytes`.
    pub writable_allocated_bytes: u64,
    /// Images.
    pub images: u64,
    /// Overlay mounts in the mount table, one per superblock however many mount points show it.
    pub overlay_mounts: u64,
    /// Mount points of those overlay mounts (copies included).
    #[serde(default)]
    pub overlay_mount_points: u64,
    /// Overlay mounts that belong to no known container.
    pub unowned_mounts: u64,
    /// Bytes of every distinct image layer, each counted once (`LayersSize` in `GET /system/df`).
    #[serde(default)]
    pub image_bytes: u64,
    /// Orphans found.
    #[serde(default)]
    pub orphans: u64,
    /// Sum of the orphans' `apparent_bytes`.
    #[serde(default)]
    pub orphan_apparent_bytes: u64,
    /// Sum of the orphans' `allocated_bytes`: what removing them all would free.
    #[serde(default)]
    pub orphan_allocated_bytes: u64,
    /// Sum of the containers' `log_bytes`.
    #[serde(default)]
    pub log_bytes: u64,
    /// Sum of the writable layers' `copy_ups.bytes` (0 when not analysed).
    #[serde(default)]
    pub copy_up_bytes: u64,
    /// Sum of `copy_ups.identical_bytes`: copies byte-identical to the image's, removable by recreating
    /// the container (or by a metadata change in the image instead).
    #[serde(default)]
    pub copy_up_identical_bytes: u64,
    /// Sum of `copy_ups.unverified_bytes`: same size as the lower copy, not compared (budget spent).
    #[serde(default)]
    pub copy_up_unverified_bytes: u64,
    /// Bytes read to compare copy-ups with their lower copies (from each side).
    #[serde(default)]
    pub copy_up_compared_bytes: u64,
    /// Sum of the writable layers' `shadowed.bytes`: image bytes containers deleted or hid, still on disk.
    #[serde(default)]
    pub shadowed_bytes: u64,
    /// Local volumes.
    #[serde(default)]
    pub volumes: u64,
    /// Sum of the volumes' `apparent_bytes`.
    #[serde(default)]
    pub volume_bytes: u64,
    /// Sum of the volumes' `allocated_bytes`.
    #[serde(default)]
    pub volume_allocated_bytes: u64,
    /// Sum of the build cache records' `size_bytes` that are not shared with images.
    #[serde(default)]
    pub build_cache_bytes: u64,
    /// Allocated bytes of the whole Docker data root, each inode once, mount points (the containers'
    /// `merged/` views) not crossed; 0 when not measured. `du -s` of the data root counts more: it enters
    /// every running container's merged view and counts its image and writable files again.
    #[serde(default)]
    pub data_root_allocated_bytes: u64,
    /// What removing things would free, per section, as `docker system df` counts RECLAIMABLE.
    #[serde(default)]
    pub reclaimable: Reclaimable,
    /// Findings by severity.
    pub findings: BTreeMap<String, u64>,
}
