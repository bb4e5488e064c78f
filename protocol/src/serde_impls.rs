//! Serde for the types other crates store on disk (feature `serde`): the agent's `state.json`
//! and the server stub's. Each value type is a JSON string in exactly its `Display` form and
//! is read back through its `FromStr`, so a stored file says what a log line says and parsing
//! keeps every invariant the type promises (a bad version or a `../` file name is refused, not
//! loaded). [`OfferedFile`](crate::OfferedFile) is an object of those strings (derived in
//! `wire`).

use std::fmt;
use std::str::FromStr;

use serde::de::Error;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{FileKind, FileName, FirmwareVersion, Sha256Digest, UpdateKey};

/// Serialises through `Display`, deserialises through `FromStr`.
macro_rules! as_text {
    ($($ty:ty),* $(,)?) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                parse(d)
            }
        }
    )*};
}

as_text!(FirmwareVersion, FileName, Sha256Digest, UpdateKey);

fn parse<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: FromStr,
    T::Err: fmt::Display,
    D: Deserializer<'de>,
{
    String::deserialize(d)?.parse().map_err(D::Error::custom)
}

/// `image`, `catalog`, `description`, `other` ([`FileKind::as_str`]); read case-insensitively
/// like the wire's `Type` attribute.
impl Serialize for FileKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FileKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        FileKind::from_wire(&text)
            .ok_or_else(|| D::Error::custom(format!("unknown file kind {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{from_str, to_string};

    use crate::{FileKind, FileName, FirmwareVersion, OfferedFile, Sha256Digest, UpdateKey};

    #[test]
    fn values_are_their_display_strings() {
        let v: FirmwareVersion = "3.5.6907.35".parse().unwrap();
        assert_eq!(to_string(&v).unwrap(), "\"3.5.6907.35\"");
        assert_eq!(from_str::<FirmwareVersion>("\"3.5.6907.35\"").unwrap(), v);
        let key: UpdateKey = "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap();
        assert_eq!(
            to_string(&key).unwrap(),
            "\"UCPhone/Polycom/CX700/A/ENU/CPE\""
        );
        assert_eq!(
            from_str::<UpdateKey>(&to_string(&key).unwrap()).unwrap(),
            key
        );
        let digest = Sha256Digest([0xab; 32]);
        assert_eq!(
            to_string(&digest).unwrap(),
            format!("\"{}\"", "ab".repeat(32))
        );
        assert_eq!(
            from_str::<Sha256Digest>(&to_string(&digest).unwrap()).unwrap(),
            digest
        );
        assert_eq!(to_string(&FileKind::Catalog).unwrap(), "\"catalog\"");
        assert_eq!(from_str::<FileKind>("\"IMAGE\"").unwrap(), FileKind::Image);
    }

    #[test]
    fn invalid_strings_are_refused_not_loaded() {
        for bad in ["\"1.2.3\"", "12", "null"] {
            assert!(from_str::<FirmwareVersion>(bad).is_err(), "{bad}");
        }
        assert!(from_str::<FileName>("\"../etc/passwd\"").is_err());
        assert!(from_str::<Sha256Digest>("\"abc\"").is_err());
        assert!(from_str::<UpdateKey>("\"UCPhone/Polycom\"").is_err());
        let err = from_str::<FileKind>("\"firmware\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown file kind \"firmware\""),
            "{err}"
        );
    }

    #[test]
    fn an_offered_file_omits_what_it_does_not_know() {
        let file = OfferedFile {
            kind: FileKind::Image,
            file_name: FileName::new("CPE.nbt").unwrap(),
            size: None,
            sha256: None,
        };
        let text = to_string(&file).unwrap();
        assert_eq!(text, r#"{"kind":"image","file_name":"CPE.nbt"}"#);
        assert_eq!(from_str::<OfferedFile>(&text).unwrap(), file);
        let full = OfferedFile {
            size: Some(5000),
            sha256: Some(Sha256Digest([1; 32])),
            ..file
        };
        let text = to_string(&full).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"kind":"image","file_name":"CPE.nbt","size":5000,"sha256":"{}"}}"#,
                "01".repeat(32)
            )
        );
        assert_eq!(from_str::<OfferedFile>(&text).unwrap(), full);
    }
}
