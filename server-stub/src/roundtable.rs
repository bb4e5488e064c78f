//! R2's RoundTable rule that every RoundTable update carries a generic `RTConfig.xml`: an
//! update imported or published without one gets [`GENERIC_RTCONFIG`], stored and offered
//! with the image like any file of the version (kind `rtconfig`), so a device's install hook
//! always finds one. A package's own `RTConfig.xml` is kept as it came.
//!
//! The real generic file's content is not public; this one is a [choice] (docs/SERVER.md).

use ucupdate_protocol::{DeviceType, FileName, FirmwareVersion, UpdateKey, RTCONFIG_FILE};

use crate::model::FileMeta;
use crate::state::{State, StateError};
use crate::store;

/// The generic `RTConfig.xml` the stub adds.
pub const GENERIC_RTCONFIG: &[u8] = b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n\
<!-- Generic RoundTable configuration: added by ucupdate-server because the update carried none. -->\r\n\
<RTConfig generic=\"true\"/>\r\n";

/// The file's name.
pub fn name() -> FileName {
    // A constant, valid file name.
    FileName::new(RTCONFIG_FILE).unwrap_or_else(|_| unreachable!("RTConfig.xml is a file name"))
}

/// Whether an update of `key` holding `names` needs the generic file added.
pub fn lacks_rtconfig<'a>(key: &UpdateKey, mut names: impl Iterator<Item = &'a FileName>) -> bool {
    key.device_type == DeviceType::RoundTable
        && !names.any(|n| n.as_str().eq_ignore_ascii_case(RTCONFIG_FILE))
}

/// After a publish into `key` `version`: stores and registers the generic file if the
/// version is a RoundTable one without an `RTConfig.xml` (blocking). Returns its meta.
pub fn ensure_stored(
    state: &State,
    key: &UpdateKey,
    version: FirmwareVersion,
) -> Result<Option<FileMeta>, StateError> {
    let names = state
        .read(|m| m.catalog.get(&(key.clone(), version)).cloned())
        .unwrap_or_default();
    if !lacks_rtconfig(key, names.iter().map(|m| &m.name)) {
        return Ok(None);
    }
    let dir = store::version_dir(state.data_dir(), key, version);
    let meta = store::store_file(
        state.data_dir(),
        key,
        version,
        name(),
        &mut &GENERIC_RTCONFIG[..],
    )
    .map_err(|e| StateError::io(&dir, e))?;
    state.publish_meta(key, version, meta.clone())?;
    tracing::info!(%key, %version, "added the generic RTConfig.xml");
    Ok(Some(meta))
}
