//! bincode encoding of stored records.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// Encodes a record. Our records are plain data: encoding cannot fail.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("invariant: stored records are plain serde data")
}

/// Decodes a record; a failure means corruption or a format mismatch.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::Storage(format!("undecodable record: {e}")))
}
