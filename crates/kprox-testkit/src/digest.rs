//! A cheap content fingerprint (FNV-1a): tests compare bodies by it, the OpenAPI index names
//! documents by it, the demo's replica sets are named by their template's.

/// The FNV-1a hash of `data`, as 16 hex digits.
pub fn digest(data: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
