//! `dialect check`: does a dialect reproduce a captured exchange? The captured check is read
//! back through the request template (its literal bytes must match), the device it describes is
//! rendered again and compared byte for byte, and the captured reply is decoded into offers.

use super::learn::Exchange;
use super::template::MatchError;
use super::Dialect;
use crate::identity::{DeviceIdentity, FileName, MacAddress, PathSegment};
use crate::version::FirmwareVersion;
use crate::wire::{CheckRequest, InstalledModule, Offer};
use crate::ProtocolError;

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The placeholder values read from the capture.
    pub values: Vec<(String, String)>,
    /// The device those values describe.
    pub device: CheckRequest,
    /// The rendered check equals the captured one byte for byte.
    pub identical: bool,
    /// Where the rendered check first differs, if it does.
    pub first_difference: Option<usize>,
    /// The captured reply, as this dialect reads it.
    pub offers: Result<Vec<Offer>, ProtocolError>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the captured check is not UTF-8")]
    NotText,
    #[error("the captured check does not fit the dialect's template")]
    Template(#[from] MatchError),
    #[error("the captured value of `{0}` is not acceptable: {1}")]
    Value(String, ProtocolError),
}

pub fn check(dialect: &Dialect, exchange: &Exchange) -> Result<CheckReport, CheckError> {
    let body = std::str::from_utf8(&exchange.request).map_err(|_| CheckError::NotText)?;
    let values = dialect.request.body.match_flat(body)?;
    let get = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let seg = |k: &str, default: &str| {
        PathSegment::new(get(k).unwrap_or(default)).map_err(|e| CheckError::Value(k.into(), e))
    };
    let file_name = FileName::new(get("file_name").unwrap_or("CPE.nbt"))
        .map_err(|e| CheckError::Value("file_name".into(), e))?;
    let version: FirmwareVersion = get("version")
        .unwrap_or("0.0.0.0")
        .parse()
        .map_err(|e| CheckError::Value("version".into(), e))?;
    let device = CheckRequest {
        identity: DeviceIdentity {
            device_type: get("device_type")
                .unwrap_or("UCPhone")
                .parse()
                .map_err(|e| CheckError::Value("device_type".into(), e))?,
            brand: seg("brand", "Unknown")?,
            model: seg("model", "Unknown")?,
            revision: seg("revision", "A")?,
            locale: seg("locale", "ENU")?,
            mac: get("mac")
                .filter(|m| !m.is_empty())
                .map(str::parse::<MacAddress>)
                .transpose()
                .map_err(|e| CheckError::Value("mac".into(), e))?,
            serial: get("serial")
                .filter(|s| !s.is_empty())
                .map(str::parse)
                .transpose()
                .map_err(|e| CheckError::Value("serial".into(), e))?,
        },
        modules: vec![InstalledModule {
            update_type: seg("update_type", file_name.stem())?,
            file_name,
            version,
            timestamp: get("timestamp").map(str::to_owned),
        }],
        user: get("user").map(str::to_owned),
    };
    let rendered = dialect.encode_request(&device);
    let first_difference = rendered
        .bytes()
        .zip(body.bytes())
        .position(|(a, b)| a != b)
        .or_else(|| (rendered.len() != body.len()).then(|| rendered.len().min(body.len())));
    Ok(CheckReport {
        identical: first_difference.is_none(),
        first_difference,
        values,
        device,
        offers: dialect.decode_offers(&exchange.reply),
    })
}
