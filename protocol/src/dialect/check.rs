//! `dialect check`: does a dialect reproduce a captured exchange? The captured check is read
//! back through the request template ([`Dialect::decode_request`]'s reading: its literal bytes
//! must match), the device it describes is rendered again and compared byte for byte, and the
//! captured reply is decoded into offers.

use super::learn::Exchange;
use super::{DecodeError, Dialect};
use crate::wire::{CheckRequest, Offer};
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
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

pub fn check(dialect: &Dialect, exchange: &Exchange) -> Result<CheckReport, CheckError> {
    let body = std::str::from_utf8(&exchange.request).map_err(|_| CheckError::NotText)?;
    let captured = dialect
        .request
        .body
        .read(body)
        .map_err(DecodeError::Template)?;
    let device = dialect.request_from(&captured)?;
    let mut values = captured.values.clone();
    for (list, items) in &captured.lists {
        for (i, item) in items.iter().enumerate() {
            values.extend(
                item.iter()
                    .map(|(name, value)| (format!("{list}[{i}].{name}"), value.clone())),
            );
        }
    }
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
