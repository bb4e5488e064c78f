//! The update store layout, built and parsed in this one place:
//! `/<Store>/<DeviceType>/<Brand>/<Model>/<Revision>/<Locale>/<Version>/<UpdateType>/<file>`
//! where `<Store>` is `DeviceUpdateFiles_Int` (internal) or `DeviceUpdateFiles_Ext` (external).
//!
//! Every component is a [`PathSegment`], so a parsed path can be joined under a directory on
//! disk without escaping it.

use std::fmt;

use crate::error::ProtocolError;
use crate::identity::{DeviceIdentity, DeviceType, FileName, PathSegment};
use crate::version::FirmwareVersion;

/// Which of the two file shares a URL points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// `DeviceUpdateFiles_Int`: inside the firewall, anonymous.
    Internal,
    /// `DeviceUpdateFiles_Ext`: through the edge, NTLM.
    External,
}

impl StoreKind {
    pub const fn root(self) -> &'static str {
        match self {
            StoreKind::Internal => "DeviceUpdateFiles_Int",
            StoreKind::External => "DeviceUpdateFiles_Ext",
        }
    }
}

/// The key of an update rule: which devices and which kind of update.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpdateKey {
    pub device_type: DeviceType,
    pub brand: PathSegment,
    pub model: PathSegment,
    pub revision: PathSegment,
    pub locale: PathSegment,
    pub update_type: PathSegment,
}

impl UpdateKey {
    /// The rule key for one of a device's modules.
    pub fn for_device(identity: &DeviceIdentity, update_type: PathSegment) -> Self {
        UpdateKey {
            device_type: identity.device_type.clone(),
            brand: identity.brand.clone(),
            model: identity.model.clone(),
            revision: identity.revision.clone(),
            locale: identity.locale.clone(),
            update_type,
        }
    }
}

impl fmt::Display for UpdateKey {
    /// `UCPhone/Polycom/CX700/A/ENU/CPE`: the form the CLI and logs use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}/{}",
            self.device_type, self.brand, self.model, self.revision, self.locale, self.update_type
        )
    }
}

impl std::str::FromStr for UpdateKey {
    type Err = ProtocolError;
    /// Reads the `Display` form back: six `/`-separated components.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let [device_type, brand, model, revision, locale, update_type] = parts[..] else {
            return Err(ProtocolError::invalid(
                "UpdateKey",
                format!("{text:?}: expected DeviceType/Brand/Model/Revision/Locale/UpdateType"),
            ));
        };
        Ok(UpdateKey {
            device_type: device_type.parse()?,
            brand: PathSegment::new(brand)?,
            model: PathSegment::new(model)?,
            revision: PathSegment::new(revision)?,
            locale: PathSegment::new(locale)?,
            update_type: PathSegment::new(update_type)?,
        })
    }
}

/// One version directory of the store: a rule key plus a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorePath {
    pub kind: StoreKind,
    pub key: UpdateKey,
    pub version: FirmwareVersion,
}

impl StorePath {
    /// The directory relative to the store root, no leading or trailing slash:
    /// `UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE`. Joined under a data directory on disk.
    pub fn relative_dir(&self) -> String {
        let k = &self.key;
        format!(
            "{}/{}/{}/{}/{}/{}/{}",
            k.device_type, k.brand, k.model, k.revision, k.locale, self.version, k.update_type
        )
    }

    /// The URL path of the directory, without a trailing slash, as it appears in `BaseURL`:
    /// `/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE`.
    pub fn url_path(&self) -> String {
        format!("/{}/{}", self.kind.root(), self.relative_dir())
    }

    /// The URL path of one file in the directory.
    pub fn file_url_path(&self, file: &FileName) -> String {
        format!("{}/{}", self.url_path(), file)
    }

    /// Parses the URL path of a file in the store (the query, if any, already removed).
    /// Percent-escapes are decoded once before the components are checked, so `%2e%2e` is
    /// refused like `..`.
    pub fn parse_file_path(path: &str) -> Result<(StorePath, FileName), ProtocolError> {
        let not_store = || ProtocolError::NotStorePath(path.to_owned());
        let decoded = crate::url::percent_decode(path).ok_or_else(not_store)?;
        let rest = decoded.strip_prefix('/').ok_or_else(not_store)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [root, device_type, brand, model, revision, locale, version, update_type, file] =
            parts[..]
        else {
            return Err(not_store());
        };
        let kind = if root.eq_ignore_ascii_case(StoreKind::Internal.root()) {
            StoreKind::Internal
        } else if root.eq_ignore_ascii_case(StoreKind::External.root()) {
            StoreKind::External
        } else {
            return Err(not_store());
        };
        let key = UpdateKey {
            device_type: device_type.parse()?,
            brand: PathSegment::new(brand)?,
            model: PathSegment::new(model)?,
            revision: PathSegment::new(revision)?,
            locale: PathSegment::new(locale)?,
            update_type: PathSegment::new(update_type)?,
        };
        let version = version.parse()?;
        Ok((StorePath { kind, key, version }, FileName::new(file)?))
    }
}

/// The name of the configuration file of a RoundTable update (R2: every one carries it).
pub const RTCONFIG_FILE: &str = "RTConfig.xml";

/// What a file in a version directory is, by its name ([`RTCONFIG_FILE`]) or extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `.nbt`: the firmware image.
    Image,
    /// `.cat`: the security catalog (signature) of the image.
    Catalog,
    /// `.xml`: a description.
    Description,
    /// `RTConfig.xml`: the configuration every RoundTable update carries (the install hook
    /// gets it with the image).
    RoundTableConfig,
    /// Anything else the vendor package carries.
    Other,
}

impl FileKind {
    pub fn of(name: &FileName) -> Self {
        if name.as_str().eq_ignore_ascii_case(RTCONFIG_FILE) {
            return FileKind::RoundTableConfig;
        }
        match name.extension().as_deref() {
            Some("nbt") => FileKind::Image,
            Some("cat") => FileKind::Catalog,
            Some("xml") => FileKind::Description,
            _ => FileKind::Other,
        }
    }

    /// The `Content-Type` a server must send. A missing `.nbt` mapping is the IIS failure that
    /// made downloads come back empty in the field, so every kind has an explicit type.
    pub const fn content_type(self) -> &'static str {
        match self {
            FileKind::Image => "application/octet-stream",
            FileKind::Catalog => "application/vnd.ms-pki.seccat",
            FileKind::Description | FileKind::RoundTableConfig => "text/xml",
            FileKind::Other => "application/octet-stream",
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            FileKind::Image => "image",
            FileKind::Catalog => "catalog",
            FileKind::Description => "description",
            FileKind::RoundTableConfig => "rtconfig",
            FileKind::Other => "other",
        }
    }

    pub fn from_wire(text: &str) -> Option<Self> {
        [
            FileKind::Image,
            FileKind::Catalog,
            FileKind::Description,
            FileKind::RoundTableConfig,
            FileKind::Other,
        ]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> StorePath {
        StorePath {
            kind: StoreKind::Internal,
            key: "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap(),
            version: "1.0.522.101".parse().unwrap(),
        }
    }

    #[test]
    fn builds_the_documented_layout() {
        assert_eq!(
            example().url_path(),
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE"
        );
    }

    #[test]
    fn parses_what_it_builds() {
        let path = example();
        let file = FileName::new("CPE.nbt").unwrap();
        let (back, name) = StorePath::parse_file_path(&path.file_url_path(&file)).unwrap();
        assert_eq!(back, path);
        assert_eq!(name, file);
    }

    #[test]
    fn refuses_escapes_and_wrong_shapes() {
        for path in [
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/../../x.nbt",
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/%2e%2e/CPE.nbt",
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/..%2fx",
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/a%5cb.nbt",
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522/CPE/CPE.nbt",
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/",
            "/Other/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/CPE.nbt",
            "/DeviceUpdateFiles_Int//Polycom/CX700/A/ENU/1.0.522.101/CPE/CPE.nbt",
            "DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/CPE.nbt",
            "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.101/CPE/C%ZZ.nbt",
        ] {
            assert!(StorePath::parse_file_path(path).is_err(), "{path} accepted");
        }
    }

    #[test]
    fn content_types_cover_every_kind() {
        let kind = |n| FileKind::of(&FileName::new(n).unwrap());
        assert_eq!(kind("CPE.NBT"), FileKind::Image);
        assert_eq!(
            kind("CPE.cat").content_type(),
            "application/vnd.ms-pki.seccat"
        );
        assert_eq!(kind("RTConfig.xml").content_type(), "text/xml");
        assert_eq!(kind("rtconfig.XML"), FileKind::RoundTableConfig);
        assert_eq!(kind("notes.xml"), FileKind::Description);
        assert_eq!(
            FileKind::from_wire("RTConfig"),
            Some(FileKind::RoundTableConfig)
        );
        assert_eq!(kind("notes.txt"), FileKind::Other);
    }
}
