//! An overlay mount's layers, read from its superblock options: the merged lower layers (top first), the
//! data-only lower layers, the upper and work directories, and whether overlay xattrs live in the `user.`
//! namespace. This module owns the grammar of the layer options; it takes options already split and decoded
//! by [`crate::mountinfo`] and never touches the filesystem, so relative layer paths stay relative until
//! the caller names the directory they were mounted from ([`OverlayLayers::resolved_against`]).
//!
//! Facts of the options, as the kernel prints them (`fs/overlayfs/params.c`, `ovl_show_options`):
//! - `lowerdir=` is shown exactly as the mounter gave it: layers separated by `:`, `::` before each
//!   data-only layer (kernel 6.5+), and a backslash escaping the next character (`\:` for a colon inside a
//!   path, `\,` for a comma, `\\` for a backslash). Only `:` and `::` are separators, every separator after
//!   the first `::` must be `::`, and the list cannot start with one.
//! - `lowerdir+=` and `datadir+=` (kernel 6.7+) are shown once per layer, in order, and their values are
//!   used verbatim by the kernel: no splitting, no backslash unescaping. They are never mixed with
//!   `lowerdir=`, and no `lowerdir+=` follows a `datadir+=`.
//! - `upperdir=` and `workdir=` are shown as given and the kernel removes backslash escapes from them
//!   before the lookup, as for each `lowerdir=` layer. Read-only overlays have neither.
//! - Other options appear only where they differ from the module's defaults, so a missing `index=` or
//!   `metacopy=` does not mean "off"; they are kept verbatim in [`OverlayLayers::other`].
//! - Kernels 6.5.0 to 6.5.8 printed `lowerdir=` without escaping spaces and commas (fixed by "ovl: fix
//!   regression in showing lowerdir mount option"); on those, a layer path with a space or comma cannot be
//!   read back correctly from the mount table.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::mountinfo::MountOption;

/// The layers of one overlay mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayLayers {
    /// The merged lower layers, top first.
    pub lower: Vec<PathBuf>,
    /// The data-only lower layers (after `::` in `lowerdir=`, or from `datadir+=`), in order.
    pub data_only: Vec<PathBuf>,
    /// The upper (writable) directory; `None` for a read-only overlay.
    pub upper: Option<PathBuf>,
    /// The work directory; `None` for a read-only overlay.
    pub work: Option<PathBuf>,
    /// Whether the `userxattr` flag is set: overlay xattrs use `user.overlay.` instead of `trusted.overlay.`.
    pub userxattr: bool,
    /// Every other option (`rw`, `index=off`, `redirect_dir=on`, security labels, …), verbatim, in order.
    pub other: Vec<MountOption>,
}

/// Why an overlay's options do not describe a valid set of layers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayOptionError {
    /// Neither `lowerdir=` nor `lowerdir+=` names a layer.
    #[error("the overlay options name no lower layer (no lowerdir= or lowerdir+=)")]
    NoLowerLayer,
    /// `lowerdir=` appears together with `lowerdir+=` or `datadir+=`.
    #[error("lowerdir= is mixed with {key}= (the kernel takes one style or the other)")]
    MixedLowerdirStyles {
        /// The appending option that was found with `lowerdir=`.
        key: String,
    },
    /// An option that names a single thing appears twice.
    #[error("{key}= appears more than once")]
    RepeatedOption {
        /// The repeated option.
        key: String,
    },
    /// A layer option has no `=` and no value.
    #[error("{key} has no value")]
    MissingValue {
        /// The option without a value.
        key: String,
    },
    /// A layer path is empty (`lowerdir=/a:`, `lowerdir=:/a`, `upperdir=`).
    #[error("empty layer path in {key}={value:?}")]
    EmptyLayerPath {
        /// The option holding the empty path.
        key: String,
        /// The option's value, lossily converted to UTF-8.
        value: String,
    },
    /// `lowerdir=` ends in `::` with no data-only layer after it.
    #[error("\"::\" at the end of lowerdir={value:?} is not followed by a data-only layer")]
    DataSeparatorWithoutLayer {
        /// The `lowerdir=` value, lossily converted to UTF-8.
        value: String,
    },
    /// A data-only layer comes before any merged lower layer (`lowerdir=::/d`, or a `datadir+=` before the
    /// first `lowerdir+=`).
    #[error("data-only layer in {key}={value:?} comes before any merged lower layer")]
    DataLayerBeforeMergedLayer {
        /// The option holding the data-only layer.
        key: String,
        /// The option's value, lossily converted to UTF-8.
        value: String,
    },
    /// A merged lower layer follows a data-only layer (`lowerdir=/a::/d:/b`, or a `lowerdir+=` after a
    /// `datadir+=`).
    #[error("merged lower layer in {key}={value:?} follows a data-only layer")]
    MergedLayerAfterDataLayer {
        /// The option holding the merged layer.
        key: String,
        /// The option's value, lossily converted to UTF-8.
        value: String,
    },
}

impl OverlayLayers {
    /// Reads the layers from an overlay mount's superblock options ([`crate::mountinfo::MountEntry::super_options`]).
    ///
    /// Fails where the options could not have come from a successful overlay mount: no lower layer,
    /// `lowerdir=` mixed with `lowerdir+=`/`datadir+=`, an empty layer path, `::` not followed by a layer,
    /// data-only layers before merged ones or merged ones after data-only ones, a repeated `lowerdir=`,
    /// `upperdir=` or `workdir=`.
    pub fn from_options(options: &[MountOption]) -> Result<Self, OverlayOptionError> {
        let mut layers = OverlayLayers {
            lower: Vec::new(),
            data_only: Vec::new(),
            upper: None,
            work: None,
            userxattr: false,
            other: Vec::new(),
        };
        // The first appending option seen, to report lowerdir= mixed with it in either order.
        let mut appended_with: Option<&str> = None;
        let mut seen_lowerdir = false;

        for option in options {
            match option.key.as_str() {
                "lowerdir" => {
                    let value = layer_value(option)?;
                    if seen_lowerdir {
                        return Err(repeated(option));
                    }
                    if let Some(key) = appended_with {
                        return Err(OverlayOptionError::MixedLowerdirStyles { key: key.to_string() });
                    }
                    seen_lowerdir = true;
                    let (lower, data_only) = split_lowerdir(value)?;
                    layers.lower = lower;
                    layers.data_only = data_only;
                }
                key @ ("lowerdir+" | "datadir+") => {
                    let value = layer_value(option)?;
                    if seen_lowerdir {
                        return Err(OverlayOptionError::MixedLowerdirStyles { key: key.to_string() });
                    }
                    appended_with.get_or_insert(key);
                    if value.is_empty() {
                        return Err(empty_path(option, value));
                    }
                    let layer = PathBuf::from(OsString::from_vec(value.to_vec()));
                    if key == "datadir+" {
                        if layers.lower.is_empty() {
                            return Err(OverlayOptionError::DataLayerBeforeMergedLayer {
                                key: key.to_string(),
                                value: lossy(value),
                            });
                        }
                        layers.data_only.push(layer);
                    } else {
                        if !layers.data_only.is_empty() {
                            return Err(OverlayOptionError::MergedLayerAfterDataLayer {
                                key: key.to_string(),
                                value: lossy(value),
                            });
                        }
                        layers.lower.push(layer);
                    }
                }
                "upperdir" | "workdir" => {
                    let value = layer_value(option)?;
                    if value.is_empty() {
                        return Err(empty_path(option, value));
                    }
                    let slot = if option.key == "upperdir" { &mut layers.upper } else { &mut layers.work };
                    if slot.is_some() {
                        return Err(repeated(option));
                    }
                    *slot = Some(PathBuf::from(OsString::from_vec(unescape(value))));
                }
                "userxattr" if option.value.is_none() => layers.userxattr = true,
                _ => layers.other.push(option.clone()),
            }
        }

        if layers.lower.is_empty() {
            return Err(OverlayOptionError::NoLowerLayer);
        }
        Ok(layers)
    }

    /// Whether any layer path (lower, data-only, upper or work) is relative: the mounter used paths
    /// relative to its working directory, which the kernel does not record (Docker and Podman for images
    /// of many layers, containerd for `lowerdir` only).
    pub fn has_relative_paths(&self) -> bool {
        self.paths().any(Path::is_relative)
    }

    /// Joins every relative layer path onto `base`; absolute ones are kept.
    pub fn resolved_against(&self, base: &Path) -> OverlayLayers {
        let resolve = |layer: &PathBuf| {
            if layer.is_relative() {
                base.join(layer)
            } else {
                layer.clone()
            }
        };
        OverlayLayers {
            lower: self.lower.iter().map(resolve).collect(),
            data_only: self.data_only.iter().map(resolve).collect(),
            upper: self.upper.as_ref().map(resolve),
            work: self.work.as_ref().map(resolve),
            userxattr: self.userxattr,
            other: self.other.clone(),
        }
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.lower.iter().chain(&self.data_only).chain(&self.upper).chain(&self.work).map(PathBuf::as_path)
    }
}

fn layer_value(option: &MountOption) -> Result<&[u8], OverlayOptionError> {
    option
        .value
        .as_deref()
        .map(|value| value.as_bytes())
        .ok_or_else(|| OverlayOptionError::MissingValue { key: option.key.clone() })
}

fn repeated(option: &MountOption) -> OverlayOptionError {
    OverlayOptionError::RepeatedOption { key: option.key.clone() }
}

fn empty_path(option: &MountOption, value: &[u8]) -> OverlayOptionError {
    OverlayOptionError::EmptyLayerPath { key: option.key.clone(), value: lossy(value) }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Which separator came before the layer being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Separator {
    Start,
    Single,
    Double,
}

/// Splits a `lowerdir=` value into merged and data-only layers, removing backslash escapes from each.
fn split_lowerdir(value: &[u8]) -> Result<(Vec<PathBuf>, Vec<PathBuf>), OverlayOptionError> {
    let error_value = || lossy(value);
    let mut merged = Vec::new();
    let mut data_only = Vec::new();
    let mut layer = Vec::new();
    let mut before = Separator::Start;
    let mut i = 0;
    loop {
        let at_end = i == value.len();
        if at_end || value[i] == b':' {
            let double_next = !at_end && value.get(i + 1) == Some(&b':');
            if layer.is_empty() {
                return Err(match before {
                    Separator::Double if at_end => {
                        OverlayOptionError::DataSeparatorWithoutLayer { value: error_value() }
                    }
                    Separator::Start if double_next => OverlayOptionError::DataLayerBeforeMergedLayer {
                        key: "lowerdir".to_string(),
                        value: error_value(),
                    },
                    _ => OverlayOptionError::EmptyLayerPath { key: "lowerdir".to_string(), value: error_value() },
                });
            }
            let path = PathBuf::from(OsString::from_vec(std::mem::take(&mut layer)));
            match before {
                Separator::Double => data_only.push(path),
                Separator::Start | Separator::Single if !data_only.is_empty() => {
                    return Err(OverlayOptionError::MergedLayerAfterDataLayer {
                        key: "lowerdir".to_string(),
                        value: error_value(),
                    });
                }
                Separator::Start | Separator::Single => merged.push(path),
            }
            if at_end {
                return Ok((merged, data_only));
            }
            if double_next {
                before = Separator::Double;
                i += 2;
            } else {
                before = Separator::Single;
                i += 1;
            }
            continue;
        }
        match (value[i], value.get(i + 1)) {
            (b'\\', Some(&escaped)) => {
                layer.push(escaped);
                i += 2;
            }
            (byte, _) => {
                layer.push(byte);
                i += 1;
            }
        }
    }
}

/// Removes backslash escapes the way the kernel does before looking a layer up: `\x` becomes `x`. A
/// trailing lone backslash is kept.
fn unescape(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&byte) = bytes.next() {
        match (byte, bytes.clone().next()) {
            (b'\\', Some(&escaped)) => {
                out.push(escaped);
                bytes.next();
            }
            _ => out.push(byte),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::{parse_mountinfo, parse_options, parse_proc_mounts};
    use std::ffi::OsStr;

    fn layers_of_mountinfo(line: &[u8]) -> Result<OverlayLayers, OverlayOptionError> {
        let (entries, errors) = parse_mountinfo(line);
        assert_eq!(errors, vec![]);
        let [entry] = &entries[..] else { panic!("expected one entry, got {entries:?}") };
        assert!(entry.is_overlay());
        OverlayLayers::from_options(&entry.super_options)
    }

    fn layers(options: &str) -> Result<OverlayLayers, OverlayOptionError> {
        OverlayLayers::from_options(&parse_options(options.as_bytes()))
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    fn flag(key: &str) -> MountOption {
        MountOption { key: key.to_string(), value: None }
    }

    fn kv(key: &str, value: &str) -> MountOption {
        MountOption { key: key.to_string(), value: Some(value.into()) }
    }

    #[test]
    fn docker_proc_mounts_line() {
        let (entries, errors) = parse_proc_mounts(b"overlay /var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/merged overlay rw,relatime,lowerdir=/var/lib/docker/overlay2/l/QVO5L3KITI4IVHIF3CSS7A55ZP:/var/lib/docker/overlay2/l/CB5FLU2Q5C4WAHSSNNA7IA2LOB,upperdir=/var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/diff,workdir=/var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/work 0 0\n");
        assert_eq!(errors, vec![]);
        let layers = OverlayLayers::from_options(&entries[0].super_options).expect("valid");
        assert_eq!(
            layers,
            OverlayLayers {
                lower: paths(&[
                    "/var/lib/docker/overlay2/l/QVO5L3KITI4IVHIF3CSS7A55ZP",
                    "/var/lib/docker/overlay2/l/CB5FLU2Q5C4WAHSSNNA7IA2LOB",
                ]),
                data_only: vec![],
                upper: Some(PathBuf::from(
                    "/var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/diff"
                )),
                work: Some(PathBuf::from(
                    "/var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/work"
                )),
                userxattr: false,
                other: vec![flag("rw"), flag("relatime")],
            }
        );
        assert!(!layers.has_relative_paths());
    }

    #[test]
    fn docker_mountinfo_line_from_this_machine() {
        let layers = layers_of_mountinfo(b"48 42 0:39 / /tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/merged rw,relatime shared:2 - overlay overlay rw,lowerdir=/tmp/dk/data/overlay2/l/3KSGGVXJCLKJV5PUO7UOI46GI3:/tmp/dk/data/overlay2/l/D44OFRITTS3NFOTNVNYTBISIKN:/tmp/dk/data/overlay2/l/ZINJKU36SA3TWRUXB5JSE33MLQ:/tmp/dk/data/overlay2/l/UIHHSMQ2UQDQLS7J6GKFVF2KBV,upperdir=/tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/diff,workdir=/tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/work\n")
            .expect("valid");
        assert_eq!(
            layers.lower,
            paths(&[
                "/tmp/dk/data/overlay2/l/3KSGGVXJCLKJV5PUO7UOI46GI3",
                "/tmp/dk/data/overlay2/l/D44OFRITTS3NFOTNVNYTBISIKN",
                "/tmp/dk/data/overlay2/l/ZINJKU36SA3TWRUXB5JSE33MLQ",
                "/tmp/dk/data/overlay2/l/UIHHSMQ2UQDQLS7J6GKFVF2KBV",
            ])
        );
        assert_eq!(
            layers.upper.as_deref(),
            Some(Path::new(
                "/tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/diff"
            ))
        );
        assert_eq!(layers.other, vec![flag("rw")]);
    }

    #[test]
    fn docker_relative_paths_resolve_against_the_storage_root() {
        // Docker's form for images of many layers: mounted from inside <data-root>/overlay2.
        let layers = layers_of_mountinfo(b"3180 29 0:330 / /var/lib/docker/overlay2/9d2bc3e3f5b0a07a0d7a4fd1cd7b7cb5ea1b5e2d3b0a8c0e6e4f9a3d1c2b7e6f/merged rw,relatime - overlay overlay rw,lowerdir=l/NWLP2ZBGBAXHLN3PWJLS6V5B3R:l/AEQTJ5IPV3C7OQ7M7GXSCZHVUK,upperdir=9d2bc3e3f5b0a07a0d7a4fd1cd7b7cb5ea1b5e2d3b0a8c0e6e4f9a3d1c2b7e6f/diff,workdir=9d2bc3e3f5b0a07a0d7a4fd1cd7b7cb5ea1b5e2d3b0a8c0e6e4f9a3d1c2b7e6f/work\n")
            .expect("valid");
        assert!(layers.has_relative_paths());
        let resolved = layers.resolved_against(Path::new("/var/lib/docker/overlay2"));
        assert!(!resolved.has_relative_paths());
        assert_eq!(
            resolved.lower,
            paths(&[
                "/var/lib/docker/overlay2/l/NWLP2ZBGBAXHLN3PWJLS6V5B3R",
                "/var/lib/docker/overlay2/l/AEQTJ5IPV3C7OQ7M7GXSCZHVUK",
            ])
        );
        assert_eq!(
            resolved.upper.as_deref(),
            Some(Path::new(
                "/var/lib/docker/overlay2/9d2bc3e3f5b0a07a0d7a4fd1cd7b7cb5ea1b5e2d3b0a8c0e6e4f9a3d1c2b7e6f/diff"
            ))
        );
        assert_eq!(
            resolved.work.as_deref(),
            Some(Path::new(
                "/var/lib/docker/overlay2/9d2bc3e3f5b0a07a0d7a4fd1cd7b7cb5ea1b5e2d3b0a8c0e6e4f9a3d1c2b7e6f/work"
            ))
        );
        assert_eq!(resolved.other, layers.other);
    }

    #[test]
    fn containerd_relative_lowerdir_only() {
        let layers = layers("rw,relatime,lowerdir=81/fs:80/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/82/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/82/work")
            .expect("valid");
        assert!(layers.has_relative_paths());
        let base = Path::new("/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots");
        let resolved = layers.resolved_against(base);
        assert_eq!(resolved.lower, vec![base.join("81/fs"), base.join("80/fs")]);
        assert_eq!(resolved.upper, layers.upper);
        assert_eq!(resolved.work, layers.work);
    }

    #[test]
    fn relative_paths_mounted_on_this_machine() {
        // Real: `cd /tmp/ovlk && mount -t overlay overlay -o lowerdir=lx:d1,upperdir=u2,workdir=w2 m7`.
        let layers = layers_of_mountinfo(
            b"127 59 0:62 / /tmp/ovlk/m7 rw,relatime - overlay overlay rw,lowerdir=lx:d1,upperdir=u2,workdir=w2\n",
        )
        .expect("valid");
        let resolved = layers.resolved_against(Path::new("/tmp/ovlk"));
        assert_eq!(resolved.lower, paths(&["/tmp/ovlk/lx", "/tmp/ovlk/d1"]));
        assert_eq!(resolved.upper.as_deref(), Some(Path::new("/tmp/ovlk/u2")));
        assert_eq!(resolved.work.as_deref(), Some(Path::new("/tmp/ovlk/w2")));
    }

    #[test]
    fn special_characters_in_lowerdir_layers() {
        // Real: the mounter wrote `\:` for the colon, `\,` for the comma and `\\` for the backslash.
        let layers = layers_of_mountinfo(b"109 59 0:50 / /tmp/ovlk/m\\040nt rw,relatime - overlay src\\0431 rw,lowerdir=/tmp/ovlk/l\\0401:/tmp/ovlk/l\\011tab:/tmp/ovlk/l#hash:/tmp/ovlk/l\\134\\134bs:/tmp/ovlk/l\\134:col:/tmp/ovlk/l\\134\\054com,upperdir=/tmp/ovlk/u,workdir=/tmp/ovlk/w,uuid=on\n")
            .expect("valid");
        assert_eq!(
            layers.lower,
            paths(&[
                "/tmp/ovlk/l 1",
                "/tmp/ovlk/l\ttab",
                "/tmp/ovlk/l#hash",
                "/tmp/ovlk/l\\bs",
                "/tmp/ovlk/l:col",
                "/tmp/ovlk/l,com",
            ])
        );
        assert_eq!(layers.other, vec![flag("rw"), kv("uuid", "on")]);
    }

    #[test]
    fn escaped_colon_in_a_layer_name() {
        let layers = layers(r"lowerdir=/a\:b:/c").expect("valid");
        assert_eq!(layers.lower, paths(&["/a:b", "/c"]));
    }

    #[test]
    fn escaped_colon_in_upperdir_and_workdir() {
        // Real: the kernel unescapes upperdir/workdir too before looking them up.
        let layers = layers_of_mountinfo(b"123 59 0:60 / /tmp/ovlk/m6 rw,relatime - overlay overlay rw,lowerdir=/tmp/ovlk/lx,upperdir=/tmp/ovlk/u\\134:c,workdir=/tmp/ovlk/w\\134:c,uuid=on\n")
            .expect("valid");
        assert_eq!(layers.upper.as_deref(), Some(Path::new("/tmp/ovlk/u:c")));
        assert_eq!(layers.work.as_deref(), Some(Path::new("/tmp/ovlk/w:c")));
    }

    #[test]
    fn newline_and_non_utf8_byte_in_layers() {
        let layers = layers_of_mountinfo(b"105 59 0:50 / /tmp/ovlk/mnt\\012nl rw,relatime - overlay overlay rw,lowerdir=/tmp/ovlk/lnl\\012x:/tmp/ovlk/l\xffz,upperdir=/tmp/ovlk/u3,workdir=/tmp/ovlk/w3\n")
            .expect("valid");
        assert_eq!(
            layers.lower,
            vec![PathBuf::from("/tmp/ovlk/lnl\nx"), PathBuf::from(OsStr::from_bytes(b"/tmp/ovlk/l\xffz")),]
        );
    }

    #[test]
    fn data_only_layers_after_double_colon() {
        // Real (kernel 6.18): read-only, so no upper and a `ro` superblock.
        let layers = layers_of_mountinfo(b"113 59 0:52 / /tmp/ovlk/m3 rw,relatime - overlay overlay ro,lowerdir=/tmp/ovlk/lx:/tmp/ovlk/l#hash::/tmp/ovlk/d1::/tmp/ovlk/d2,redirect_dir=on,metacopy=on\n")
            .expect("valid");
        assert_eq!(
            layers,
            OverlayLayers {
                lower: paths(&["/tmp/ovlk/lx", "/tmp/ovlk/l#hash"]),
                data_only: paths(&["/tmp/ovlk/d1", "/tmp/ovlk/d2"]),
                upper: None,
                work: None,
                userxattr: false,
                other: vec![flag("ro"), kv("redirect_dir", "on"), kv("metacopy", "on")],
            }
        );
    }

    #[test]
    fn lowerdir_plus_and_datadir_plus_in_order() {
        // Real, mounted with fsopen/fsconfig: values are verbatim, so ':' is part of the path.
        let layers = layers_of_mountinfo(b"108 59 0:50 / /tmp/ovlk/m2 rw,relatime - overlay none rw,lowerdir+=/tmp/ovlk/l\\0401,lowerdir+=/tmp/ovlk/l:col,lowerdir+=/tmp/ovlk/l\\054com,datadir+=/tmp/ovlk/d1,datadir+=/tmp/ovlk/d2,upperdir=/tmp/ovlk/u2,workdir=/tmp/ovlk/w2,redirect_dir=on,uuid=on,metacopy=on\n")
            .expect("valid");
        assert_eq!(layers.lower, paths(&["/tmp/ovlk/l 1", "/tmp/ovlk/l:col", "/tmp/ovlk/l,com"]));
        assert_eq!(layers.data_only, paths(&["/tmp/ovlk/d1", "/tmp/ovlk/d2"]));
        assert_eq!(layers.upper.as_deref(), Some(Path::new("/tmp/ovlk/u2")));
        assert_eq!(layers.other, vec![flag("rw"), kv("redirect_dir", "on"), kv("uuid", "on"), kv("metacopy", "on")]);
    }

    #[test]
    fn lowerdir_plus_value_keeps_backslashes() {
        let layers = layers(r"lowerdir+=/a\:b").expect("valid");
        assert_eq!(layers.lower, paths(&[r"/a\:b"]));
    }

    #[test]
    fn read_only_overlay_with_userxattr() {
        // Real: no upperdir/workdir; `userxattr` is a flag.
        let layers = layers_of_mountinfo(b"116 59 0:55 / /tmp/ovlk/m4 rw,relatime - overlay overlay ro,lowerdir=/tmp/ovlk/lx:/tmp/ovlk/d1,redirect_dir=nofollow,userxattr\n")
            .expect("valid");
        assert_eq!(layers.lower, paths(&["/tmp/ovlk/lx", "/tmp/ovlk/d1"]));
        assert_eq!(layers.upper, None);
        assert_eq!(layers.work, None);
        assert!(layers.userxattr);
        assert_eq!(layers.other, vec![flag("ro"), kv("redirect_dir", "nofollow")]);
    }

    #[test]
    fn mixing_lowerdir_with_lowerdir_plus_is_an_error() {
        assert_eq!(
            layers("lowerdir=/a,lowerdir+=/b"),
            Err(OverlayOptionError::MixedLowerdirStyles { key: "lowerdir+".to_string() })
        );
        assert_eq!(
            layers("lowerdir+=/b,datadir+=/d,lowerdir=/a"),
            Err(OverlayOptionError::MixedLowerdirStyles { key: "lowerdir+".to_string() })
        );
    }

    #[test]
    fn no_lower_layer_is_an_error() {
        assert_eq!(layers("rw,upperdir=/u,workdir=/w"), Err(OverlayOptionError::NoLowerLayer));
    }

    #[test]
    fn empty_layer_paths_are_errors() {
        let empty =
            |value: &str| OverlayOptionError::EmptyLayerPath { key: "lowerdir".to_string(), value: value.to_string() };
        assert_eq!(layers("lowerdir=/a:"), Err(empty("/a:")));
        assert_eq!(layers("lowerdir=:/a"), Err(empty(":/a")));
        assert_eq!(layers("lowerdir=/a:::/b"), Err(empty("/a:::/b")));
        assert_eq!(layers("lowerdir="), Err(empty("")));
        assert_eq!(
            layers("lowerdir=/a,upperdir=,workdir=/w"),
            Err(OverlayOptionError::EmptyLayerPath { key: "upperdir".to_string(), value: String::new() })
        );
        assert_eq!(layers("lowerdir"), Err(OverlayOptionError::MissingValue { key: "lowerdir".to_string() }));
    }

    #[test]
    fn double_colon_not_followed_by_a_layer_is_an_error() {
        assert_eq!(
            layers("lowerdir=/a::"),
            Err(OverlayOptionError::DataSeparatorWithoutLayer { value: "/a::".to_string() })
        );
    }

    #[test]
    fn data_only_layer_before_any_merged_layer_is_an_error() {
        assert_eq!(
            layers("lowerdir=::/d"),
            Err(OverlayOptionError::DataLayerBeforeMergedLayer {
                key: "lowerdir".to_string(),
                value: "::/d".to_string()
            })
        );
        assert_eq!(
            layers("datadir+=/d,lowerdir+=/a"),
            Err(OverlayOptionError::DataLayerBeforeMergedLayer {
                key: "datadir+".to_string(),
                value: "/d".to_string()
            })
        );
    }

    #[test]
    fn merged_layer_after_a_data_only_layer_is_an_error() {
        assert_eq!(
            layers("lowerdir=/a::/d:/b"),
            Err(OverlayOptionError::MergedLayerAfterDataLayer {
                key: "lowerdir".to_string(),
                value: "/a::/d:/b".to_string()
            })
        );
        assert_eq!(
            layers("lowerdir+=/a,datadir+=/d,lowerdir+=/b"),
            Err(OverlayOptionError::MergedLayerAfterDataLayer {
                key: "lowerdir+".to_string(),
                value: "/b".to_string()
            })
        );
    }

    #[test]
    fn repeated_upperdir_is_an_error() {
        assert_eq!(
            layers("lowerdir=/a,upperdir=/u,upperdir=/v,workdir=/w"),
            Err(OverlayOptionError::RepeatedOption { key: "upperdir".to_string() })
        );
    }

    #[test]
    fn resolving_keeps_absolute_paths() {
        let layers = layers("lowerdir=/abs:rel,upperdir=/u,workdir=w").expect("valid");
        let resolved = layers.resolved_against(Path::new("/base"));
        assert_eq!(resolved.lower, paths(&["/abs", "/base/rel"]));
        assert_eq!(resolved.upper.as_deref(), Some(Path::new("/u")));
        assert_eq!(resolved.work.as_deref(), Some(Path::new("/base/w")));
    }

    #[test]
    fn error_messages_name_the_option() {
        let error = layers("lowerdir=/a::").expect_err("dangling ::");
        assert_eq!(error.to_string(), "\"::\" at the end of lowerdir=\"/a::\" is not followed by a data-only layer");
    }
}
