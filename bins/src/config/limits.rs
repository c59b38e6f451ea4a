use edgelb_core::yaml::DEFAULT_MAX_FILE_BYTES;
use serde::Deserialize;

/// The largest config file read, unless `EDGELB_MAX_CONFIG_BYTES` says otherwise.
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The cap on `limits.endpoints_file_bytes` itself.
const MAX_ENDPOINTS_FILE_BYTES: u64 = 1 << 30;

/// `limits:` — caps on what edgelb reads, so hostile input costs bounded memory and time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest endpoints file (`source.file`) read, in bytes (default 1 MiB: about 50,000
    /// endpoints). A bigger file is refused, not read.
    pub endpoints_file_bytes: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            endpoints_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

impl LimitSettings {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_ENDPOINTS_FILE_BYTES).contains(&self.endpoints_file_bytes) {
            return Err(format!(
                "endpoints_file_bytes: use a number of bytes between 1 and {MAX_ENDPOINTS_FILE_BYTES}"
            ));
        }
        Ok(())
    }
}

/// The config file's size cap: `EDGELB_MAX_CONFIG_BYTES` when set to a number, else
/// [`DEFAULT_MAX_CONFIG_BYTES`].
pub fn max_config_bytes() -> u64 {
    std::env::var("EDGELB_MAX_CONFIG_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_CONFIG_BYTES)
}
