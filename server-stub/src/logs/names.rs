//! The service's names for uploaded device logs (`Logs\Client\<type>\`):
//! CELog `<devicetype>_<deviceid>-<YYYYMMDD>-CELOG<HHMMSS>_<n>.clg`, Watson
//! `<serial>-<YYYY-MM-DDHHMMSS>-WATSON-<version>.kdmp`. An upload that already carries such a
//! name for its own device keeps it; any other is stored under one made from the device, the
//! upload's time and what the inventory knows (device type, version).
//!
//! The device id in a name is the MAC's twelve hex digits (`0004F2000176`) or the serial
//! number, so the per-device log quota can be counted again from the names at start.

use ucupdate_protocol::log_names::log_name;
use ucupdate_protocol::LogType;

/// What the inventory knows of the uploading device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `UCPhone`, `RoundTable`... (default `UCPhone`).
    pub device_type: Option<String>,
    /// The version it last reported (default `0.0.0.0`).
    pub version: Option<String>,
}

/// The id a device goes by in log names: a MAC's hex digits, else the serial number (the
/// agent names its uploads with the same function).
pub use ucupdate_protocol::log_names::name_id;

fn digits(text: &str, n: usize) -> bool {
    text.len() == n && text.bytes().all(|b| b.is_ascii_digit())
}

/// The device id of a name in the documented form of `log_type`, if it is one.
pub fn id_of(log_type: LogType, name: &str) -> Option<&str> {
    match log_type {
        // No documented form to recognise: an upload of these keeps the device's name.
        LogType::Config | LogType::Diaglog => None,
        LogType::CeLog => {
            let stem = strip_suffix_ci(name, ".clg")?;
            let (rest, n) = stem.rsplit_once('_')?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // `-YYYYMMDD-CELOGHHMMSS` is 21 bytes.
            let cut = rest.len().checked_sub(21)?;
            let tail = rest.get(cut..)?;
            let ok = tail.starts_with('-')
                && digits(&tail[1..9], 8)
                && tail[9..15].eq_ignore_ascii_case("-CELOG")
                && digits(&tail[15..], 6);
            let (kind, id) = rest[..cut].split_once('_')?;
            (ok && !kind.is_empty()
                && kind.bytes().all(|b| b.is_ascii_alphanumeric())
                && !id.is_empty())
            .then_some(id)
        }
        LogType::Watson => {
            let stem = strip_suffix_ci(name, ".kdmp")?;
            let upper = stem.to_ascii_uppercase();
            let at = upper.rfind("-WATSON-")?;
            let (rest, version) = (&stem[..at], &stem[at + 8..]);
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return None;
            }
            // `-YYYY-MM-DDHHMMSS` is 17 bytes.
            let cut = rest.len().checked_sub(17)?;
            let t = rest.get(cut..)?;
            let ok = t.starts_with('-')
                && digits(&t[1..5], 4)
                && &t[5..6] == "-"
                && digits(&t[6..8], 2)
                && &t[8..9] == "-"
                && digits(&t[9..], 8);
            (ok && cut > 0).then(|| &rest[..cut])
        }
    }
}

fn strip_suffix_ci<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = name.len().checked_sub(suffix.len())?;
    name.get(cut..)
        .filter(|s| s.eq_ignore_ascii_case(suffix))
        .map(|_| &name[..cut])
}

/// The name to store an upload of `device` named `given` under at `now_unix`: `given` if it
/// is in the documented form for this device, else a made one; `taken` says whether a name is
/// in use (CELog's `_n` counts up past those).
pub fn stored_name(
    log_type: LogType,
    given: &str,
    device: &str,
    info: &DeviceInfo,
    now_unix: u64,
    taken: impl Fn(&str) -> bool,
) -> String {
    let id = name_id(device);
    if id_of(log_type, given).is_some_and(|i| i.eq_ignore_ascii_case(&id)) {
        return given.to_owned();
    }
    // The service documents names for CELog and Watson only: other types keep the device's
    // own (already a checked file name), counted up if it is taken.
    if matches!(log_type, LogType::Config | LogType::Diaglog) {
        if !taken(given) {
            return given.to_owned();
        }
        let (stem, ext) = given.rsplit_once('.').unwrap_or((given, ""));
        return (2u32..)
            .map(|n| format!("{stem}_{n}.{ext}"))
            .find(|name| !taken(name))
            .unwrap_or_default();
    }
    let kind = info.device_type.as_deref().unwrap_or("UCPhone");
    let version = info.version.as_deref().unwrap_or("0.0.0.0");
    let name = |n| log_name(log_type, kind, device, version, now_unix, n);
    match log_type {
        LogType::CeLog | LogType::Config | LogType::Diaglog => (1u32..)
            .map(name)
            .find(|name| !taken(name))
            .unwrap_or_default(),
        LogType::Watson => name(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_795_600_000; // 2026-11-25 09:46:40 UTC

    #[test]
    fn names_are_made_in_the_documented_forms_and_read_back() {
        let info = DeviceInfo {
            device_type: Some("UCPhone".into()),
            version: Some("1.0.522.101".into()),
        };
        let ce = stored_name(
            LogType::CeLog,
            "x.txt",
            "00-04-F2-00-01-76",
            &info,
            T,
            |_| false,
        );
        assert_eq!(ce, "UCPhone_0004F2000176-20261125-CELOG094640_1.clg");
        assert_eq!(id_of(LogType::CeLog, &ce), Some("0004F2000176"));
        let taken = ce.clone();
        let second = stored_name(
            LogType::CeLog,
            "x.txt",
            "00-04-F2-00-01-76",
            &info,
            T,
            |n| n == taken,
        );
        assert_eq!(second, "UCPhone_0004F2000176-20261125-CELOG094640_2.clg");
        let w = stored_name(LogType::Watson, "crash.dmp", "PCX-1", &info, T, |_| false);
        assert_eq!(w, "PCX-1-2026-11-25094640-WATSON-1.0.522.101.kdmp");
        assert_eq!(id_of(LogType::Watson, &w), Some("PCX-1"));
        let w = stored_name(
            LogType::Watson,
            "c.dmp",
            "PCX-1",
            &DeviceInfo::default(),
            T,
            |_| false,
        );
        assert_eq!(w, "PCX-1-2026-11-25094640-WATSON-0.0.0.0.kdmp");
    }

    #[test]
    fn a_documented_name_of_the_device_is_kept_another_devices_is_not() {
        let info = DeviceInfo::default();
        let mine = "RoundTable_RT-0042-20261124-CELOG235959_3.clg";
        assert_eq!(
            stored_name(LogType::CeLog, mine, "RT-0042", &info, T, |_| false),
            mine
        );
        let w = "RT-0042-2026-11-24235959-WATSON-1.0.0.1.kdmp";
        assert_eq!(
            stored_name(LogType::Watson, w, "rt-0042", &info, T, |_| true),
            w
        );
        // Someone else's name is not taken over.
        let other = stored_name(LogType::CeLog, mine, "PCX-1", &info, T, |_| false);
        assert!(
            other.starts_with("UCPhone_PCX-1-20261125-CELOG094640_"),
            "{other}"
        );
        for not in [
            "UCPhone_0004F2000176-2026112-CELOG094640_1.clg",
            "UCPhone_0004F2000176-20261125-CELOG094640_.clg",
            "UCPhone_0004F2000176-20261125-CELOG094640_1.txt",
            "_0004F2000176-20261125-CELOG094640_1.clg",
            "UCPhone-20261125-CELOG094640_1.clg",
        ] {
            assert_eq!(id_of(LogType::CeLog, not), None, "{not}");
        }
        for not in [
            "-2026-11-24235959-WATSON-1.0.0.1.kdmp",
            "RT-2026-11-24235959-WATSON-.kdmp",
            "RT-2026-1124235959-WATSON-1.kdmp",
        ] {
            assert_eq!(id_of(LogType::Watson, not), None, "{not}");
        }
    }
}
