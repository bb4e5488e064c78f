//! The cryptographic digests the agent takes of files: ring's (already linked for TLS, and
//! using the CPU's SHA extensions where it has them) rather than a second implementation.
//! SHA-256 is what offers and catalogs name; SHA-1 only for images an older vendor catalog
//! lists by SHA-1 alone (`[trust] allow_sha1_catalogs`).

use std::io::Read;
use std::path::Path;

pub use ring::digest::{Context, Digest, SHA1_FOR_LEGACY_USE_ONLY as SHA1, SHA256};

/// Bytes read at a time when hashing a file.
const CHUNK: usize = 64 * 1024;

/// The size and digest (`algorithm`) of the file at `path`, read in chunks. Blocking.
pub fn of_file(
    path: &Path,
    algorithm: &'static ring::digest::Algorithm,
) -> std::io::Result<(u64, Digest)> {
    let mut file = std::fs::File::open(path)?;
    let mut ctx = Context::new(algorithm);
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((size, ctx.finish()));
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&SHA256, bytes).as_ref());
    out
}
