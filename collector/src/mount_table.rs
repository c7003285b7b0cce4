//! Reading the host's mount table and picking out its overlay mounts, with their layer paths made
//! absolute. Parsing itself is in [`crate::mountinfo`] and [`crate::overlay`]; this module owns which
//! file is read and how relative layer paths are anchored.

use crate::finding::Findings;
use crate::mountinfo::{parse_mountinfo, parse_proc_mounts, MountEntry, MountOption};
use crate::overlay::OverlayLayers;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The mount table as read from one file.
#[derive(Debug)]
pub struct MountTable {
    /// The file that was read.
    pub source: PathBuf,
    /// Its entries, in order.
    pub entries: Vec<MountEntry>,
}

/// One overlay mount: one superblock (the mount table's `major:minor`), with every mount point where it is
/// seen and its layer paths made absolute. Propagation (a container holding the host's data root with
/// slave propagation, systemd's shared root, `mount --rbind`, Docker-in-Docker) shows one superblock at
/// many mount points, some nested; it is still one mount, with one set of layers and one owner.
#[derive(Debug, Clone)]
pub struct OverlayMount {
    /// The mount table entry that names the mount: the copy at the engine's own mount point
    /// (`<upperdir>/../merged`) when there is one, else the first copy in the table.
    pub entry: MountEntry,
    /// Its layers; relative paths joined onto the directory the mounter worked in, when some copy or a
    /// known store tells which it was (else left relative: see [`OverlayMount::anchored`]).
    pub layers: OverlayLayers,
    /// Whether the mounter gave relative paths.
    pub relative: bool,
    /// Whether every layer path is absolute (relative ones were anchored).
    pub anchored: bool,
    /// Every mount point where this superblock is attached, in table order (`entry.mount_point` among
    /// them).
    pub mount_points: Vec<PathBuf>,
}

impl OverlayMount {
    /// The superblock's device as the mount table writes it (`0:305`); `None` from `/proc/mounts`.
    pub fn device(&self) -> Option<String> {
        self.entry.device.map(|(major, minor)| format!("{major}:{minor}"))
    }

    /// The same mount with every path under `from` moved under `to`: a mount read from another mount
    /// namespace (a nested engine's), named as the host names the directories it uses.
    pub fn rebased(&self, from: &Path, to: &Path) -> OverlayMount {
        let moved = |p: &PathBuf| p.strip_prefix(from).map_or_else(|_| p.clone(), |rest| to.join(rest));
        let mut entry = self.entry.clone();
        entry.mount_point = moved(&entry.mount_point);
        let layers = OverlayLayers {
            lower: self.layers.lower.iter().map(moved).collect(),
            data_only: self.layers.data_only.iter().map(moved).collect(),
            upper: self.layers.upper.as_ref().map(moved),
            work: self.layers.work.as_ref().map(moved),
            ..self.layers.clone()
        };
        OverlayMount { entry, layers, mount_points: self.mount_points.iter().map(moved).collect(), ..self.clone() }
    }
}

/// Where relative layer paths may be anchored besides each copy's own mount point: the storage
/// directories of the stores found (Docker's `<root>/overlay2`, containers-storage's `<root>/overlay`), and
/// a way to ask whether a host path exists.
pub struct LayerAnchors<'a> {
    /// Storage directories, as the host names them.
    pub dirs: Vec<PathBuf>,
    /// Whether a host path exists (read through the scan's root).
    pub exists: &'a dyn Fn(&Path) -> bool,
}

/// Reads `<proc>/1/mountinfo` (the host's mount namespace, even from a private one), else
/// `<proc>/self/mountinfo`, else `<proc>/mounts`. Lines that do not parse become findings. `None` (and a
/// finding) when no file could be read.
pub fn read_mount_table(proc_dir: &Path, findings: &mut Findings) -> Option<MountTable> {
    let candidates = [
        (proc_dir.join("1/mountinfo"), true),
        (proc_dir.join("self/mountinfo"), true),
        (proc_dir.join("mounts"), false),
    ];
    let mut tried = Vec::new();
    for (path, is_mountinfo) in candidates {
        match fs::read(&path) {
            Ok(bytes) => {
                let (entries, errors) = if is_mountinfo { parse_mountinfo(&bytes) } else { parse_proc_mounts(&bytes) };
                for e in errors {
                    findings.warn("mount_line_unparsable", e.to_string(), Some(&path));
                }
                return Some(MountTable { source: path, entries });
            }
            Err(e) => tried.push(format!("{}: {e}", path.display())),
        }
    }
    findings.error(
        "mount_table_unreadable",
        format!("no mount table could be read, so live mounts are not shown ({})", tried.join("; ")),
        Some(proc_dir),
    );
    None
}

impl MountTable {
    /// The overlay mounts, one per superblock, each with absolute layer paths where they can be anchored.
    /// An overlay whose options cannot be understood is a finding and is left out; one whose relative
    /// paths no copy and no store anchors is one finding for the mount, never one per layer.
    pub fn overlays(&self, anchors: &LayerAnchors<'_>, findings: &mut Findings) -> Vec<OverlayMount> {
        let mut groups: Vec<Vec<&MountEntry>> = Vec::new();
        let mut by_key: HashMap<SuperblockKey, usize> = HashMap::new();
        for (i, entry) in self.entries.iter().enumerate().filter(|(_, e)| e.is_overlay()) {
            let key = superblock_key(i, entry);
            match by_key.get(&key) {
                Some(&g) => groups[g].push(entry),
                None => {
                    by_key.insert(key, groups.len());
                    groups.push(vec![entry]);
                }
            }
        }
        let mut out = Vec::new();
        for copies in groups {
            let first = copies[0];
            match OverlayLayers::from_options(&first.super_options) {
                Ok(layers) => out.push(one_overlay(&copies, layers, anchors, findings)),
                Err(e) => findings.warn(
                    "overlay_options_unparsable",
                    format!("overlay mount options not understood: {e}"),
                    Some(&first.mount_point),
                ),
            }
        }
        out
    }
}

/// What tells copies of one overlay apart from other overlays.
#[derive(Debug, PartialEq, Eq, Hash)]
enum SuperblockKey {
    /// mountinfo's `major:minor`.
    Device(u32, u32),
    /// `/proc/mounts` has no device: a writable overlay's options (its upperdir is its own), or else the
    /// entry's position (read-only overlays with equal layers may well be distinct mounts).
    Options(Vec<MountOption>),
    Entry(usize),
}

fn superblock_key(index: usize, entry: &MountEntry) -> SuperblockKey {
    match entry.device {
        Some((major, minor)) => SuperblockKey::Device(major, minor),
        None if entry.option("upperdir").is_some() => SuperblockKey::Options(entry.super_options.clone()),
        None => SuperblockKey::Entry(index),
    }
}

/// One superblock from its copies (table order) and its layers as written.
fn one_overlay(
    copies: &[&MountEntry],
    layers: OverlayLayers,
    anchors: &LayerAnchors<'_>,
    findings: &mut Findings,
) -> OverlayMount {
    let relative = layers.has_relative_paths();
    let base = if relative { relative_base(copies, &layers, anchors) } else { None };
    let anchored = !relative || base.is_some();
    let layers = match &base {
        Some(b) => layers.resolved_against(b),
        None => layers,
    };
    let mount_points: Vec<PathBuf> = copies.iter().map(|c| c.mount_point.clone()).collect();
    if !anchored {
        let all = layers.lower.iter().chain(&layers.data_only).chain(&layers.upper).chain(&layers.work);
        let relative_paths: Vec<&PathBuf> = all.filter(|p| p.is_relative()).collect();
        let samples: Vec<String> = relative_paths.iter().take(3).map(|p| p.to_string_lossy().into_owned()).collect();
        findings.warn(
            "overlay_relative_unanchored",
            format!(
                "overlay mount {} at {} ({} mount point(s)) has {} relative layer path(s) that neither a copy \
                 at an engine's mount point nor a known store anchors, so its layers are not identified; \
                 e.g. {}",
                copies[0].device.map(|(a, b)| format!("{a}:{b}")).unwrap_or_else(|| "-".to_owned()),
                copies[0].mount_point.display(),
                mount_points.len(),
                relative_paths.len(),
                samples.join(", ")
            ),
            Some(&copies[0].mount_point),
        );
    }
    // The engine mounts a layer at `<layer dir>/merged`, next to its `diff` upperdir.
    let home = layers.upper.as_deref().and_then(Path::parent).map(|d| d.join("merged"));
    let entry = copies
        .iter()
        .find(|c| Some(&c.mount_point) == home.as_ref() && is_whole(c))
        .or_else(|| copies.iter().find(|c| is_whole(c)))
        .unwrap_or(&copies[0]);
    OverlayMount { entry: (*entry).clone(), layers, relative, anchored, mount_points }
}

/// Whether a copy shows the overlay's root (not a bind mount of one of its subdirectories).
fn is_whole(entry: &MountEntry) -> bool {
    entry.root.as_deref().is_none_or(|r| r == Path::new("/"))
}

/// The directory relative layer paths are relative to. The kernel does not record the mounter's working
/// directory, so it is inferred, most certain first:
/// - an absolute upperdir (containerd: `…/snapshots/<n>/fs`): the parent of the snapshot directory;
/// - a copy at `<store dir>/<id>/merged` (Docker, Podman mount there from inside the store dir);
/// - a store dir that holds the first relative path (the engine's own layer directory);
/// - the grandparent of a copy's mount point, where it holds the first relative path.
///
/// `None` when nothing anchors them: then they stay relative (and say so), never guessed.
fn relative_base(copies: &[&MountEntry], layers: &OverlayLayers, anchors: &LayerAnchors<'_>) -> Option<PathBuf> {
    if let Some(u) = layers.upper.as_deref().filter(|u| u.is_absolute()) {
        return u.parent()?.parent().map(Path::to_path_buf);
    }
    let probe = layers.upper.iter().chain(&layers.lower).find(|p| p.is_relative())?;
    let grandparents: Vec<&Path> =
        copies.iter().filter(|c| is_whole(c)).filter_map(|c| c.mount_point.parent()?.parent()).collect();
    if let Some(g) = grandparents.iter().find(|g| anchors.dirs.iter().any(|d| d == *g)) {
        return Some(g.to_path_buf());
    }
    let holds = |base: &Path| (anchors.exists)(&base.join(probe));
    if let Some(d) = anchors.dirs.iter().find(|d| holds(d)) {
        return Some(d.clone());
    }
    grandparents.into_iter().find(|g| holds(g)).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Finding;

    // Real lines, read on this project's VM from `/proc/1/mountinfo` inside a container started with the
    // test dockerd's data root bound `-v /tmp/i14d/data:/tmp/i14d/data:ro,rslave`, after container c1
    // (0:40) and before c2 (0:62, arrived by propagation). 0:51 is the container's own root: at `/`, and
    // twice at its merged path (the engine's mount, and the bind runc stacks on it before pivoting).
    const AGENT_WITH_SLAVE_DATA_ROOT: &[&[u8]] = &[
        b"110 64 0:51 / / rw,relatime master:3 - overlay overlay rw,lowerdir=/tmp/i14d/data/overlay2/l/JJ66JT6C2Y6PRVCZJCODVZYDLX:/tmp/i14d/data/overlay2/l/QGLYUUR2RUZJ72PQO55FNYIDM5,upperdir=/tmp/i14d/data/overlay2/75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945/diff,workdir=/tmp/i14d/data/overlay2/75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945/work\n",
        b"131 130 0:40 / /tmp/i14d/data/overlay2/3088931f0863a74b21c3c14d478463e68dff92cfc7218ce37717d81af72042c7/merged rw,relatime master:2 - overlay overlay rw,lowerdir=/tmp/i14d/data/overlay2/l/NKVRDLVSBRGTFFHLDLIUVU5ER2:/tmp/i14d/data/overlay2/l/QGLYUUR2RUZJ72PQO55FNYIDM5,upperdir=/tmp/i14d/data/overlay2/3088931f0863a74b21c3c14d478463e68dff92cfc7218ce37717d81af72042c7/diff,workdir=/tmp/i14d/data/overlay2/3088931f0863a74b21c3c14d478463e68dff92cfc7218ce37717d81af72042c7/work\n",
        b"132 130 0:51 / /tmp/i14d/data/overlay2/75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945/merged rw,relatime master:3 - overlay overlay rw,lowerdir=/tmp/i14d/data/overlay2/l/JJ66JT6C2Y6PRVCZJCODVZYDLX:/tmp/i14d/data/overlay2/l/QGLYUUR2RUZJ72PQO55FNYIDM5,upperdir=/tmp/i14d/data/overlay2/75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945/diff,workdir=/tmp/i14d/data/overlay2/75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945/work\n",
        b"133 132 0:51 / /tmp/i14d/data/overlay2/75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945/merged rw,relatime master:3 - overlay overlay rw,lowerdir=/tmp/i14d/data/overlay2/l/JJ66JT6C2Y6PRVCZJCODVZYDLX:/tmp/i14d/data/overlay2/l/QGLYUUR2RUZJ72PQO55FNYIDM5,upperdir=/tmp/i14d/data/overlay2/75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945/diff,workdir=/tmp/i14d/data/overlay2/75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945/work\n",
        b"97 130 0:62 / /tmp/i14d/data/overlay2/5c16ee6734cbf3654279876ee6642a984ae0bb1be78f0560e7f904717adfa78c/merged rw,relatime master:4 - overlay overlay rw,lowerdir=/tmp/i14d/data/overlay2/l/JCR6IVHJXXCTVRZ3J6APJ5OXFS:/tmp/i14d/data/overlay2/l/QGLYUUR2RUZJ72PQO55FNYIDM5,upperdir=/tmp/i14d/data/overlay2/5c16ee6734cbf3654279876ee6642a984ae0bb1be78f0560e7f904717adfa78c/diff,workdir=/tmp/i14d/data/overlay2/5c16ee6734cbf3654279876ee6642a984ae0bb1be78f0560e7f904717adfa78c/work\n",
    ];

    const LONG_IMAGE_AGENT_ROOT: &[u8] = b"391 363 0:84 / / rw,relatime master:6 - overlay overlay rw,lowerdir=l/QD3BFL2VF3WSVSYZNH6XTLIC74:l/ZZLQBFHO2TCBGQKF72KPCEJEHG:l/5ADCBLLOYA27PJQQPPJWGG6FSQ:l/L3A5WULKO5QDS4LMFCJ2ZRQAUT:l/VBDOZYROHKKJE7IMCPBSHE2GZM:l/4LM7DNIQBYFDHXM4O3S6XAHJI4:l/BUJNVIKKMS3XLKSN47JSIE4E3R:l/MDGMB2ZPXOXTS4AOJDQVKCFHLC:l/FHOJTRXYRCUKYONSDCSRCNVFR4:l/Q7ME6ID3LLR2BHS2VMILQIHPXD:l/GZHDVGITGCBYVIUZKWZ2JCOUTT:l/6FGGHN6HBJRDCM7JB4XPSEZNXX:l/5K5UOJ26CURPYO5UYIFFBBQKPS:l/4LONDN5SPC3UIHGA66PIGT44PN:l/TY7V26QPHNB5XFRWH3MV4GKJFV:l/7BQZFD6VQTSTPX2QMFGL7BC3RF:l/EKA2EAUCBNVERBMQSNL253ZICH:l/MVEK5OT456HNEPX45EHX47B4Q7:l/VHEDWO7WTLV3W4NDWDEG45T7QM:l/PPKKHRBQ3YZQ6H3FDGQFVNOQET:l/MZ2YDJATBPJDHZK3KMLNSKX33T:l/5FT3XICIYHWJ7QEL6VVB2MSWKH:l/TSTPU5UMRCTPUVCV4FFDJS65FC:l/F3LHSGMARM3RMRTFLFKQWPWM7F:l/B526I7YHSTUHOKVZRIL4YW6D5F:l/L7IPZ2QX7KUBKKCDFM4EM2PELU:l/2OUJVXB3ODCX32LJKIQ2UKK3QL:l/LJ5X3AXUZLV5DKPYCZNCB22FGN:l/BQIU2NZ24ECNRJWVJKYQXXT73L:l/HMUSSTZR5QT66VTPDMSGGFR2V2:l/ZOWQEDAU24M7WE2AIBN6Z2ZCKH:l/QZETHPS3DCZX3VPC7GLJTRU4RQ:l/XEGU4TT5KM4P7C7OSVHZ2KMY3I:l/YSIMSI7XRJ2DH6XTVNRYPWHFUU:l/LLYI7EXLLRGR6ATFX732LYCDIH:l/LULXLV6DZSXPIFCE6BZ3RRS44I:l/UVYHMBOYKYEXZOPXGLJ6CDHPKY:l/K7IP6CTH5CKM3N4JYGGBDPEZCE:l/3MKWK5MFPBWVYD4XICXX63CA7Y:l/FXTXINFMNPP3PZP6WS2ONDPMEI:l/353HREQVQ7BJ4P6YC6VSY4UONH:l/WTPRBKT2X6LVQR7PEODO2O6FYO:l/ZIQ5365TEJWGAMRNHUMTXJGTNJ:l/ZCIPPVFAX2GJDTC746WDIGQ6RO:l/5L7CZPU5XS362FY36WDZBQODRL:l/Y3UVCGZOL2ZTUQRIJ5GE3DRBRV:l/ZCTTOTLLZVRGUCCSJAQVPMZ2YH:l/EPKF52MGR3EPVFMJHLCMDEKQLF:l/CBZW63SWES52UQNZLGOWHKKMMT:l/IJP7OFNNE3G7QPQ6BJMDHIVJDQ:l/IVR4ZEOBY2L2NQCVUJL6IRDKOZ:l/7YW5IRGY47F4NYSN2XBWF365EK:l/2BUEXPMHLPFPKBBFSKW2F7TO4S:l/M5AFDTUOQUEGEY6ARKN3EJBOJ5:l/ZCGMRDQM4ZYLOZASOEDWAKIIHY:l/R33JAFXKZSKYNCXC5HFKDJLPLG:l/NMOH4CQANVB7MNM5R4VNLZUWYS:l/YL6EGEZQWZRJYIPAVUKVWV776H:l/IPNBKCYRDRKZGV7WAK4YCE4KCT:l/MQVLHQTJEVGXEYJBLEWRV5IFYT:l/LW5XJCYXDGB3KYXFZC5RQ36AFK:l/7H4FHTQNZY6L4NUDDMDHLR7A53:l/QUXVV2V7TJDWCKJMQG2TZ3J45S:l/7Y5FSUD3HP2JM546UJWQA6B6OY:l/FHCEMYQOIDEEAHDDXPWL6RMI2T:l/4C37WFXJBJOBTLU6YOHSA6C4EC:l/2XXTAK2XCF7NFZ7Z2UI2KIJMVH:l/U4NDKDSN2ZXCF3CHZIROXCZEZB:l/MTQFWPBAGPD7ZK26GFJIIH7CML:l/OUKCGEGUCSYLH5KL36KWBLOMY3:l/4ZDBD3LIMFEVD62CJKF6NEB4FC:l/PZ6LU4WFRDGPM6N3HJDUXI2MU6:l/ONKAO3NS5A66WT5I6OCJ4X47SV:l/5ZXWVSX75AYPOH4UFL5XX47T76:l/WYKT2DKCS2SB6Z25AC45HTAY6W:l/DTYF2YFWACUEHYHBWCXCQN6XAR:l/QGLYUUR2RUZJ72PQO55FNYIDM5,upperdir=518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af/diff,workdir=518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af/work\n";

    const LONG_IMAGE_HOME_COPY: &[u8] = b"416 411 0:84 / /tmp/i14d/data/overlay2/518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af/merged rw,relatime master:6 - overlay overlay rw,lowerdir=l/QD3BFL2VF3WSVSYZNH6XTLIC74:l/ZZLQBFHO2TCBGQKF72KPCEJEHG:l/5ADCBLLOYA27PJQQPPJWGG6FSQ:l/L3A5WULKO5QDS4LMFCJ2ZRQAUT:l/VBDOZYROHKKJE7IMCPBSHE2GZM:l/4LM7DNIQBYFDHXM4O3S6XAHJI4:l/BUJNVIKKMS3XLKSN47JSIE4E3R:l/MDGMB2ZPXOXTS4AOJDQVKCFHLC:l/FHOJTRXYRCUKYONSDCSRCNVFR4:l/Q7ME6ID3LLR2BHS2VMILQIHPXD:l/GZHDVGITGCBYVIUZKWZ2JCOUTT:l/6FGGHN6HBJRDCM7JB4XPSEZNXX:l/5K5UOJ26CURPYO5UYIFFBBQKPS:l/4LONDN5SPC3UIHGA66PIGT44PN:l/TY7V26QPHNB5XFRWH3MV4GKJFV:l/7BQZFD6VQTSTPX2QMFGL7BC3RF:l/EKA2EAUCBNVERBMQSNL253ZICH:l/MVEK5OT456HNEPX45EHX47B4Q7:l/VHEDWO7WTLV3W4NDWDEG45T7QM:l/PPKKHRBQ3YZQ6H3FDGQFVNOQET:l/MZ2YDJATBPJDHZK3KMLNSKX33T:l/5FT3XICIYHWJ7QEL6VVB2MSWKH:l/TSTPU5UMRCTPUVCV4FFDJS65FC:l/F3LHSGMARM3RMRTFLFKQWPWM7F:l/B526I7YHSTUHOKVZRIL4YW6D5F:l/L7IPZ2QX7KUBKKCDFM4EM2PELU:l/2OUJVXB3ODCX32LJKIQ2UKK3QL:l/LJ5X3AXUZLV5DKPYCZNCB22FGN:l/BQIU2NZ24ECNRJWVJKYQXXT73L:l/HMUSSTZR5QT66VTPDMSGGFR2V2:l/ZOWQEDAU24M7WE2AIBN6Z2ZCKH:l/QZETHPS3DCZX3VPC7GLJTRU4RQ:l/XEGU4TT5KM4P7C7OSVHZ2KMY3I:l/YSIMSI7XRJ2DH6XTVNRYPWHFUU:l/LLYI7EXLLRGR6ATFX732LYCDIH:l/LULXLV6DZSXPIFCE6BZ3RRS44I:l/UVYHMBOYKYEXZOPXGLJ6CDHPKY:l/K7IP6CTH5CKM3N4JYGGBDPEZCE:l/3MKWK5MFPBWVYD4XICXX63CA7Y:l/FXTXINFMNPP3PZP6WS2ONDPMEI:l/353HREQVQ7BJ4P6YC6VSY4UONH:l/WTPRBKT2X6LVQR7PEODO2O6FYO:l/ZIQ5365TEJWGAMRNHUMTXJGTNJ:l/ZCIPPVFAX2GJDTC746WDIGQ6RO:l/5L7CZPU5XS362FY36WDZBQODRL:l/Y3UVCGZOL2ZTUQRIJ5GE3DRBRV:l/ZCTTOTLLZVRGUCCSJAQVPMZ2YH:l/EPKF52MGR3EPVFMJHLCMDEKQLF:l/CBZW63SWES52UQNZLGOWHKKMMT:l/IJP7OFNNE3G7QPQ6BJMDHIVJDQ:l/IVR4ZEOBY2L2NQCVUJL6IRDKOZ:l/7YW5IRGY47F4NYSN2XBWF365EK:l/2BUEXPMHLPFPKBBFSKW2F7TO4S:l/M5AFDTUOQUEGEY6ARKN3EJBOJ5:l/ZCGMRDQM4ZYLOZASOEDWAKIIHY:l/R33JAFXKZSKYNCXC5HFKDJLPLG:l/NMOH4CQANVB7MNM5R4VNLZUWYS:l/YL6EGEZQWZRJYIPAVUKVWV776H:l/IPNBKCYRDRKZGV7WAK4YCE4KCT:l/MQVLHQTJEVGXEYJBLEWRV5IFYT:l/LW5XJCYXDGB3KYXFZC5RQ36AFK:l/7H4FHTQNZY6L4NUDDMDHLR7A53:l/QUXVV2V7TJDWCKJMQG2TZ3J45S:l/7Y5FSUD3HP2JM546UJWQA6B6OY:l/FHCEMYQOIDEEAHDDXPWL6RMI2T:l/4C37WFXJBJOBTLU6YOHSA6C4EC:l/2XXTAK2XCF7NFZ7Z2UI2KIJMVH:l/U4NDKDSN2ZXCF3CHZIROXCZEZB:l/MTQFWPBAGPD7ZK26GFJIIH7CML:l/OUKCGEGUCSYLH5KL36KWBLOMY3:l/4ZDBD3LIMFEVD62CJKF6NEB4FC:l/PZ6LU4WFRDGPM6N3HJDUXI2MU6:l/ONKAO3NS5A66WT5I6OCJ4X47SV:l/5ZXWVSX75AYPOH4UFL5XX47T76:l/WYKT2DKCS2SB6Z25AC45HTAY6W:l/DTYF2YFWACUEHYHBWCXCQN6XAR:l/QGLYUUR2RUZJ72PQO55FNYIDM5,upperdir=518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af/diff,workdir=518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af/work\n";

    const LONG_IMAGE_NESTED_COPY: &[u8] = b"562 557 0:84 / /tmp/i14n/inner/overlay2/518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af/merged rw,relatime - overlay overlay rw,lowerdir=l/QD3BFL2VF3WSVSYZNH6XTLIC74:l/ZZLQBFHO2TCBGQKF72KPCEJEHG:l/5ADCBLLOYA27PJQQPPJWGG6FSQ:l/L3A5WULKO5QDS4LMFCJ2ZRQAUT:l/VBDOZYROHKKJE7IMCPBSHE2GZM:l/4LM7DNIQBYFDHXM4O3S6XAHJI4:l/BUJNVIKKMS3XLKSN47JSIE4E3R:l/MDGMB2ZPXOXTS4AOJDQVKCFHLC:l/FHOJTRXYRCUKYONSDCSRCNVFR4:l/Q7ME6ID3LLR2BHS2VMILQIHPXD:l/GZHDVGITGCBYVIUZKWZ2JCOUTT:l/6FGGHN6HBJRDCM7JB4XPSEZNXX:l/5K5UOJ26CURPYO5UYIFFBBQKPS:l/4LONDN5SPC3UIHGA66PIGT44PN:l/TY7V26QPHNB5XFRWH3MV4GKJFV:l/7BQZFD6VQTSTPX2QMFGL7BC3RF:l/EKA2EAUCBNVERBMQSNL253ZICH:l/MVEK5OT456HNEPX45EHX47B4Q7:l/VHEDWO7WTLV3W4NDWDEG45T7QM:l/PPKKHRBQ3YZQ6H3FDGQFVNOQET:l/MZ2YDJATBPJDHZK3KMLNSKX33T:l/5FT3XICIYHWJ7QEL6VVB2MSWKH:l/TSTPU5UMRCTPUVCV4FFDJS65FC:l/F3LHSGMARM3RMRTFLFKQWPWM7F:l/B526I7YHSTUHOKVZRIL4YW6D5F:l/L7IPZ2QX7KUBKKCDFM4EM2PELU:l/2OUJVXB3ODCX32LJKIQ2UKK3QL:l/LJ5X3AXUZLV5DKPYCZNCB22FGN:l/BQIU2NZ24ECNRJWVJKYQXXT73L:l/HMUSSTZR5QT66VTPDMSGGFR2V2:l/ZOWQEDAU24M7WE2AIBN6Z2ZCKH:l/QZETHPS3DCZX3VPC7GLJTRU4RQ:l/XEGU4TT5KM4P7C7OSVHZ2KMY3I:l/YSIMSI7XRJ2DH6XTVNRYPWHFUU:l/LLYI7EXLLRGR6ATFX732LYCDIH:l/LULXLV6DZSXPIFCE6BZ3RRS44I:l/UVYHMBOYKYEXZOPXGLJ6CDHPKY:l/K7IP6CTH5CKM3N4JYGGBDPEZCE:l/3MKWK5MFPBWVYD4XICXX63CA7Y:l/FXTXINFMNPP3PZP6WS2ONDPMEI:l/353HREQVQ7BJ4P6YC6VSY4UONH:l/WTPRBKT2X6LVQR7PEODO2O6FYO:l/ZIQ5365TEJWGAMRNHUMTXJGTNJ:l/ZCIPPVFAX2GJDTC746WDIGQ6RO:l/5L7CZPU5XS362FY36WDZBQODRL:l/Y3UVCGZOL2ZTUQRIJ5GE3DRBRV:l/ZCTTOTLLZVRGUCCSJAQVPMZ2YH:l/EPKF52MGR3EPVFMJHLCMDEKQLF:l/CBZW63SWES52UQNZLGOWHKKMMT:l/IJP7OFNNE3G7QPQ6BJMDHIVJDQ:l/IVR4ZEOBY2L2NQCVUJL6IRDKOZ:l/7YW5IRGY47F4NYSN2XBWF365EK:l/2BUEXPMHLPFPKBBFSKW2F7TO4S:l/M5AFDTUOQUEGEY6ARKN3EJBOJ5:l/ZCGMRDQM4ZYLOZASOEDWAKIIHY:l/R33JAFXKZSKYNCXC5HFKDJLPLG:l/NMOH4CQANVB7MNM5R4VNLZUWYS:l/YL6EGEZQWZRJYIPAVUKVWV776H:l/IPNBKCYRDRKZGV7WAK4YCE4KCT:l/MQVLHQTJEVGXEYJBLEWRV5IFYT:l/LW5XJCYXDGB3KYXFZC5RQ36AFK:l/7H4FHTQNZY6L4NUDDMDHLR7A53:l/QUXVV2V7TJDWCKJMQG2TZ3J45S:l/7Y5FSUD3HP2JM546UJWQA6B6OY:l/FHCEMYQOIDEEAHDDXPWL6RMI2T:l/4C37WFXJBJOBTLU6YOHSA6C4EC:l/2XXTAK2XCF7NFZ7Z2UI2KIJMVH:l/U4NDKDSN2ZXCF3CHZIROXCZEZB:l/MTQFWPBAGPD7ZK26GFJIIH7CML:l/OUKCGEGUCSYLH5KL36KWBLOMY3:l/4ZDBD3LIMFEVD62CJKF6NEB4FC:l/PZ6LU4WFRDGPM6N3HJDUXI2MU6:l/ONKAO3NS5A66WT5I6OCJ4X47SV:l/5ZXWVSX75AYPOH4UFL5XX47T76:l/WYKT2DKCS2SB6Z25AC45HTAY6W:l/DTYF2YFWACUEHYHBWCXCQN6XAR:l/QGLYUUR2RUZJ72PQO55FNYIDM5,upperdir=518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af/diff,workdir=518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af/work\n";

    const DATA: &str = "/tmp/i14d/data/overlay2";
    const AGENT: &str = "75a058c8c11b4ae83008a2cc4b07d71a6566d8e360a6fb68bbe16b4538aef945";
    const LONG: &str = "518a3522d7d39fbb3701b3cf356604d3661e14ac7d9b74a2092f29353f32f0af";

    fn table(lines: &[&[u8]]) -> MountTable {
        let (entries, errors) = parse_mountinfo(&lines.concat());
        assert_eq!(errors, vec![]);
        MountTable { source: PathBuf::from("/proc/1/mountinfo"), entries }
    }

    fn overlays(lines: &[&[u8]], dirs: &[&str], exists: &dyn Fn(&Path) -> bool) -> (Vec<OverlayMount>, Vec<Finding>) {
        let mut findings = Findings::default();
        let anchors = LayerAnchors { dirs: dirs.iter().map(PathBuf::from).collect(), exists };
        let out = table(lines).overlays(&anchors, &mut findings);
        (out, findings.into_vec())
    }

    fn nothing_exists(_: &Path) -> bool {
        false
    }

    #[test]
    fn one_overlay_per_superblock_with_every_mount_point() {
        let (o, findings) = overlays(AGENT_WITH_SLAVE_DATA_ROOT, &[DATA], &nothing_exists);
        assert_eq!(findings, vec![]);
        let devices: Vec<String> = o.iter().filter_map(OverlayMount::device).collect();
        assert_eq!(devices, ["0:51", "0:40", "0:62"]);
        let own = &o[0];
        let merged = format!("{DATA}/{AGENT}/merged");
        assert_eq!(own.mount_points, [PathBuf::from("/"), PathBuf::from(&merged), PathBuf::from(&merged)]);
        assert_eq!(own.entry.mount_point, Path::new(&merged), "named by the engine's own mount point");
        assert_eq!(own.entry.mount_id, Some(132));
        assert_eq!(own.layers.upper, Some(PathBuf::from(format!("{DATA}/{AGENT}/diff"))));
        assert!(own.anchored && !own.relative);
        assert_eq!(o[1].mount_points.len(), 1);
        assert_eq!(o[2].entry.mount_id, Some(97));
    }

    #[test]
    fn relative_paths_of_the_agents_own_root_resolve_from_its_copy_at_merged() {
        // The root alone has no directory to anchor `l/…` on; its copy at `<data>/overlay2/<id>/merged` has.
        let (o, findings) = overlays(&[LONG_IMAGE_AGENT_ROOT, LONG_IMAGE_HOME_COPY], &[DATA], &nothing_exists);
        assert_eq!(findings, vec![]);
        let [m] = &o[..] else { panic!("one superblock: {o:?}") };
        assert!(m.relative && m.anchored);
        assert_eq!(m.mount_points, [PathBuf::from("/"), PathBuf::from(format!("{DATA}/{LONG}/merged"))]);
        assert_eq!(m.entry.mount_id, Some(416));
        assert_eq!(m.layers.lower.len(), 77, "init layer, base layer and 75 RUN layers");
        assert!(m.layers.lower.iter().all(|l| l.starts_with(format!("{DATA}/l/"))), "{:?}", m.layers.lower);
        assert_eq!(m.layers.upper, Some(PathBuf::from(format!("{DATA}/{LONG}/diff"))));
    }

    #[test]
    fn a_copy_alone_resolves_from_the_stores_own_layer_directory() {
        // Only the root and a nested alias of the data root: the store's directory holds `<id>/diff`.
        let holds = |p: &Path| p == Path::new(&format!("{DATA}/{LONG}/diff"));
        let (o, findings) = overlays(&[LONG_IMAGE_AGENT_ROOT, LONG_IMAGE_NESTED_COPY], &[DATA], &holds);
        assert_eq!(findings, vec![]);
        let [m] = &o[..] else { panic!("one superblock: {o:?}") };
        assert!(m.anchored);
        assert_eq!(m.layers.upper, Some(PathBuf::from(format!("{DATA}/{LONG}/diff"))));
        assert_eq!(m.entry.mount_point, Path::new("/"), "no copy at the engine's mount point: the first");
    }

    #[test]
    fn a_nested_copy_never_anchors_on_its_own_path_when_the_engines_copy_is_there() {
        let anywhere = |_: &Path| true;
        let (o, _) = overlays(&[LONG_IMAGE_NESTED_COPY, LONG_IMAGE_HOME_COPY], &[DATA], &anywhere);
        assert_eq!(o[0].layers.upper, Some(PathBuf::from(format!("{DATA}/{LONG}/diff"))));
        assert_eq!(o[0].mount_points.len(), 2);
    }

    #[test]
    fn an_unanchored_mount_is_one_finding_not_one_per_layer() {
        let (o, findings) = overlays(&[LONG_IMAGE_AGENT_ROOT], &[], &nothing_exists);
        let [m] = &o[..] else { panic!("one superblock: {o:?}") };
        assert!(!m.anchored);
        assert!(m.layers.lower.iter().all(|l| l.is_relative()), "never guessed");
        let [f] = &findings[..] else { panic!("one finding: {findings:?}") };
        assert_eq!(f.code, "overlay_relative_unanchored");
        assert!(f.message.contains("79 relative layer path(s)"), "77 lower, upper and work: {}", f.message);
        assert!(f.message.contains("0:84"), "{}", f.message);
    }

    #[test]
    fn proc_mounts_copies_of_a_writable_overlay_are_one_mount() {
        let line = "overlay /a/merged overlay rw,lowerdir=/l1,upperdir=/u,workdir=/w 0 0\n";
        let copy = "overlay /b/a/merged overlay rw,lowerdir=/l1,upperdir=/u,workdir=/w 0 0\n";
        let read_only = "overlay /r1 overlay ro,lowerdir=/l1:/l2 0 0\noverlay /r2 overlay ro,lowerdir=/l1:/l2 0 0\n";
        let (entries, errors) = parse_proc_mounts(format!("{line}{copy}{read_only}").as_bytes());
        assert_eq!(errors, vec![]);
        let t = MountTable { source: PathBuf::from("/proc/mounts"), entries };
        let anchors = LayerAnchors { dirs: vec![], exists: &nothing_exists };
        let o = t.overlays(&anchors, &mut Findings::default());
        let points: Vec<usize> = o.iter().map(|m| m.mount_points.len()).collect();
        assert_eq!(points, [2, 1, 1], "read-only overlays with the same layers may be distinct mounts");
    }
}
