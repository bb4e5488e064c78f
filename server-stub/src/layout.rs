//! The two ways the update store is published. OCS 2007 R2: `/DeviceUpdateFiles_Int/...`
//! (internal) and `/DeviceUpdateFiles_Ext/...` (external). Lync Server 2010 and later:
//! `/RequestHandler/Files/...` (internal, http) and `/RequestHandlerExt/Files/...` (external,
//! https). Below either root the layout is the same
//! (`<DeviceType>/<Brand>/<Model>/<Revision>/<Locale>/<Version>/<UpdateType>/<file>`).
//!
//! The stub serves both on every device site ([`to_r2_path`] maps a Lync path onto the R2
//! one, which the protocol crate's `StorePath` parses); [`StoreLayout`]
//! (`serve --store-layout r2|lync`) picks the one written into `BaseURL` and
//! `ExternalBaseURL` ([`url_path`]).

use std::fmt;
use std::str::FromStr;

use ucupdate_protocol::{StoreKind, StorePath};

/// Which store URLs the check replies name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreLayout {
    /// `/DeviceUpdateFiles_Int/...`, `/DeviceUpdateFiles_Ext/...` (OCS 2007 R2; the default).
    #[default]
    R2,
    /// `/RequestHandler/Files/...`, `/RequestHandlerExt/Files/...` (Lync Server 2010 and later).
    Lync,
}

/// The Lync roots, internal and external.
pub const LYNC_INTERNAL_ROOT: &str = "/RequestHandler/Files";
pub const LYNC_EXTERNAL_ROOT: &str = "/RequestHandlerExt/Files";

impl FromStr for StoreLayout {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "r2" => Ok(StoreLayout::R2),
            "lync" => Ok(StoreLayout::Lync),
            _ => Err(format!("{text:?}: expected r2 or lync")),
        }
    }
}

impl fmt::Display for StoreLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreLayout::R2 => "r2",
            StoreLayout::Lync => "lync",
        })
    }
}

/// The URL path of a version directory in `layout`.
pub fn url_path(path: &StorePath, layout: StoreLayout) -> String {
    let root = match (layout, path.kind) {
        (StoreLayout::R2, _) => return path.url_path(),
        (StoreLayout::Lync, StoreKind::Internal) => LYNC_INTERNAL_ROOT,
        (StoreLayout::Lync, StoreKind::External) => LYNC_EXTERNAL_ROOT,
    };
    format!("{root}/{}", path.relative_dir())
}

/// A request path under either layout's store roots, as the R2 path (what
/// `StorePath::parse_file_path` reads); `None` when it is under neither. Roots match without
/// regard to ASCII case, as IIS does.
pub fn to_r2_path(path: &str) -> Option<String> {
    let strip = |root: &str| {
        let head = path.get(..root.len() + 1)?;
        head.eq_ignore_ascii_case(&format!("{root}/"))
            .then(|| &path[root.len() + 1..])
    };
    if let Some(rest) = strip(LYNC_INTERNAL_ROOT) {
        return Some(format!("/{}/{rest}", StoreKind::Internal.root()));
    }
    if let Some(rest) = strip(LYNC_EXTERNAL_ROOT) {
        return Some(format!("/{}/{rest}", StoreKind::External.root()));
    }
    let r2 = path.len() > 1
        && path[1..]
            .to_ascii_lowercase()
            .starts_with("deviceupdatefiles_");
    r2.then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_map_onto_one_store_path() {
        let path = StorePath {
            kind: StoreKind::Internal,
            key: "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap(),
            version: "1.0.522.101".parse().unwrap(),
        };
        let r2 = url_path(&path, StoreLayout::R2);
        assert_eq!(
            r2,
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE"
        );
        let lync = url_path(&path, StoreLayout::Lync);
        assert_eq!(
            lync,
            "/RequestHandler/Files/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE"
        );
        assert_eq!(
            to_r2_path(&format!("{lync}/CPE.nbt")),
            Some(format!("{r2}/CPE.nbt"))
        );
        let ext = StorePath {
            kind: StoreKind::External,
            ..path
        };
        let lync = url_path(&ext, StoreLayout::Lync);
        assert!(
            lync.starts_with("/RequestHandlerExt/Files/UCPhone/"),
            "{lync}"
        );
        assert_eq!(
            to_r2_path(&format!("{lync}/CPE.nbt")),
            Some(format!("{}/CPE.nbt", url_path(&ext, StoreLayout::R2)))
        );
        assert_eq!(
            to_r2_path("/requesthandler/files/x"),
            Some("/DeviceUpdateFiles_Int/x".into())
        );
        for other in [
            "/RequestHandler/ucdevice.upx",
            "/RequestHandler/Files",
            "/",
            "/RequestHandlerFiles/x",
        ] {
            assert_eq!(to_r2_path(other), None, "{other}");
        }
        assert_eq!("LYNC".parse::<StoreLayout>(), Ok(StoreLayout::Lync));
        assert!("iis".parse::<StoreLayout>().is_err());
    }
}
