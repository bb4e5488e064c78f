//! The service's documented names for uploaded device logs (`Logs\Client\<type>\`), in one
//! place for the device that makes them and the server that checks them: CELog
//! `<devicetype>_<deviceid>-<YYYYMMDD>-CELOG<HHMMSS>_<n>.clg`, Watson
//! `<serial>-<YYYY-MM-DDHHMMSS>-WATSON-<version>.kdmp` (UTC). The device id is the MAC's twelve
//! hex digits (`0004F2000176`) or, with no MAC, the serial number.

use crate::{LogType, MacAddress};

/// The id a device goes by in log names, from its log folder (a MAC in any spelling, else the
/// serial number).
pub fn name_id(device: &str) -> String {
    match device.parse::<MacAddress>() {
        Ok(mac) => mac.octets().iter().map(|b| format!("{b:02X}")).collect(),
        Err(_) => device.to_owned(),
    }
}

/// `(YYYY-MM-DD, HHMMSS)` of `unix_secs`, UTC.
fn date_and_clock(unix_secs: u64) -> (String, String) {
    // `YYYY-MM-DD HH:MM:SS`.
    let time = crate::audit::format_time(unix_secs);
    (time[..10].to_owned(), time[11..].replace(':', ""))
}

/// The name of the `n`th (from 1) log of `log_type` a device uploads at `unix_secs`.
/// `device_type` names CELogs (`UCPhone`, `RoundTable`), `version` Watson dumps.
pub fn log_name(
    log_type: LogType,
    device_type: &str,
    device: &str,
    version: &str,
    unix_secs: u64,
    n: u32,
) -> String {
    let id = name_id(device);
    let (date, clock) = date_and_clock(unix_secs);
    match log_type {
        LogType::CeLog => {
            let day = date.replace('-', "");
            format!("{device_type}_{id}-{day}-CELOG{clock}_{n}.clg")
        }
        LogType::Watson => format!("{id}-{date}{clock}-WATSON-{version}.kdmp"),
        // No documented form: the CELog pattern with the type's own word, as a text file.
        LogType::Config | LogType::Diaglog => {
            let day = date.replace('-', "");
            let word = log_type.as_str().to_ascii_uppercase();
            format!("{device_type}_{id}-{day}-{word}{clock}_{n}.txt")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_forms() {
        // 2025-11-25 08:05:12 UTC.
        let t = 1_764_057_912;
        assert_eq!(
            log_name(LogType::CeLog, "UCPhone", "00-04-F2-00-01-76", "", t, 1),
            "UCPhone_0004F2000176-20251125-CELOG080512_1.clg"
        );
        assert_eq!(
            log_name(LogType::Watson, "UCPhone", "PCX-1", "1.0.522.101", t, 1),
            "PCX-1-2025-11-25080512-WATSON-1.0.522.101.kdmp"
        );
    }
}
