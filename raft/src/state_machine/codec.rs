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

/// FNV-1a, 64 bit: a stable hash (the same on every node and every build),
/// for fingerprints and state digests. Not for security.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv64(u64);

impl Fnv64 {
    pub(crate) fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}
