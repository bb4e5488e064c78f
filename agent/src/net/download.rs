//! Streaming file downloads: constant memory, SHA-256 while streaming, resume with
//! `Range: bytes=N-` after a cut (re-hashing the bytes already on disk first), and verification
//! of size and SHA-256 before the caller may install anything. A mismatch removes the file; a
//! cut keeps it and says how many bytes are on disk. The simulator uses the same code with a
//! [`DownloadSink::Discard`] sink that only counts and hashes.

use std::path::Path;

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper::Response;
use ucupdate_ntlm::Credentials;
use ucupdate_protocol::{HttpUrl, OfferedFile, Sha256Digest};

use super::client::Client;
use super::conn::next_data;
use super::error::NetError;
use super::exchange::{exchange, RequestSpec};
use super::file_sink::FileSink;
use super::shaping::Pacer;
use super::RequestStats;
use crate::clock;
use crate::digest::{Context, Digest, SHA256};

/// Where downloaded bytes go.
#[derive(Debug, Clone, Copy)]
pub enum DownloadSink<'a> {
    /// Append to (or create) this file; fsynced at the end and on a cut.
    File(&'a Path),
    /// Count and hash only (the simulator's devices have no disk). Resuming into a discard
    /// sink cannot know the earlier bytes, so the SHA-256 is then not checked.
    Discard,
    /// Keep the bytes in [`DownloadedFile::body`], up to `MAX_CATALOG_BYTES` (the bytes past
    /// that are counted and hashed only): a simulated device's catalog.
    Memory,
}

/// A complete, verified download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedFile {
    /// Bytes of the whole file.
    pub size: u64,
    /// SHA-256 of the whole file; `None` only for a resumed [`DownloadSink::Discard`].
    pub sha256: Option<Sha256Digest>,
    /// Bytes kept from an earlier attempt (0 when the server made us start over).
    pub resumed_from: u64,
    /// The bytes themselves, for a [`DownloadSink::Memory`] (empty otherwise).
    pub body: Vec<u8>,
}

/// Downloads `url` into `dest`, resuming after `resume_from` bytes already there, and checks
/// the result against `expected` (size and SHA-256 when the offer carries them).
pub async fn download(
    client: &Client,
    url: &HttpUrl,
    expected: &OfferedFile,
    dest: &Path,
    resume_from: u64,
    auth: Option<&Credentials>,
) -> Result<DownloadedFile, NetError> {
    download_to(
        client,
        url,
        expected,
        DownloadSink::File(dest),
        resume_from,
        auth,
    )
    .await
    .0
}

/// [`download`] into any sink, with the call's timing and volume (also on failure).
pub async fn download_to(
    client: &Client,
    url: &HttpUrl,
    expected: &OfferedFile,
    sink: DownloadSink<'_>,
    resume_from: u64,
    auth: Option<&Credentials>,
) -> (Result<DownloadedFile, NetError>, RequestStats) {
    let started = clock::monotonic();
    let mut stats = RequestStats::default();
    let result = run(
        client,
        url,
        expected,
        sink,
        resume_from,
        auth,
        started,
        &mut stats,
    )
    .await;
    stats.total = clock::elapsed(started);
    match &result {
        Ok(done) => {
            tracing::debug!(%url, size = done.size, resumed_from = done.resumed_from, "download complete")
        }
        Err(e) => {
            tracing::debug!(%url, class = %e.class(), on_disk = ?e.bytes_on_disk(), error = %e, "download failed")
        }
    }
    (result, stats)
}

/// The bytes so far: where they are written and what they hash to.
struct Progress {
    writer: Writer,
    /// The hash of a Discard or Memory sink (`None` for a resumed Discard). A File sink's
    /// writer thread hashes what it writes, and [`Progress::sync`] returns that digest.
    hasher: Option<Context>,
    written: u64,
    resumed_from: u64,
}

enum Writer {
    File(FileSink),
    Discard,
    Memory(Vec<u8>),
}

impl Progress {
    /// Opens the sink and brings the hash up to `resume_from` (or less, if the file is shorter).
    async fn open(
        sink: DownloadSink<'_>,
        resume_from: u64,
        expected_size: Option<u64>,
    ) -> Result<Progress, NetError> {
        // Bytes beyond the advertised size cannot be a prefix of the file.
        let wanted = match expected_size {
            Some(size) if resume_from > size => 0,
            _ => resume_from,
        };
        match sink {
            DownloadSink::Discard => Ok(Progress {
                writer: Writer::Discard,
                hasher: (wanted == 0).then(|| Context::new(&SHA256)),
                written: wanted,
                resumed_from: wanted,
            }),
            // Held in memory: nothing to resume from.
            DownloadSink::Memory => Ok(Progress {
                writer: Writer::Memory(Vec::new()),
                hasher: Some(Context::new(&SHA256)),
                written: 0,
                resumed_from: 0,
            }),
            DownloadSink::File(path) => {
                // The writer thread hashes what it writes.
                let (file, keep) = FileSink::open(path, wanted).await?;
                Ok(Progress {
                    writer: Writer::File(file),
                    hasher: None,
                    written: keep,
                    resumed_from: keep,
                })
            }
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), NetError> {
        match &mut self.writer {
            Writer::File(file) => file.write(data).await?,
            Writer::Memory(body) => {
                let room = ucupdate_protocol::catalog::MAX_CATALOG_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&data[..data.len().min(room)]);
            }
            Writer::Discard => {}
        }
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Drops everything so far (the server ignored our range and sends the whole file).
    async fn restart(&mut self) -> Result<(), NetError> {
        match &mut self.writer {
            Writer::File(file) => file.restart().await?,
            Writer::Memory(body) => body.clear(),
            Writer::Discard => {}
        }
        if !matches!(self.writer, Writer::File(_)) {
            self.hasher = Some(Context::new(&SHA256));
        }
        self.written = 0;
        self.resumed_from = 0;
        Ok(())
    }

    /// Makes the bytes so far durable, so that a resume offset recorded from them is true; for
    /// a file, returns their digest (the writer thread hashes them).
    async fn sync(&mut self) -> Result<Option<Digest>, NetError> {
        match &mut self.writer {
            Writer::File(file) => Ok(Some(file.sync().await?)),
            _ => Ok(None),
        }
    }

    /// Removes a file that failed verification.
    async fn discard(self) -> Result<(), NetError> {
        if let Writer::File(file) = self.writer {
            file.remove().await?;
        }
        Ok(())
    }

    /// Wraps a cut: the bytes so far are synced and reported.
    async fn cut(mut self, cause: NetError) -> NetError {
        if let Err(e) = self.sync().await {
            return e;
        }
        NetError::Partial {
            on_disk: self.written,
            cause: Box::new(cause),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    client: &Client,
    url: &HttpUrl,
    expected: &OfferedFile,
    sink: DownloadSink<'_>,
    resume_from: u64,
    auth: Option<&Credentials>,
    started: tokio::time::Instant,
    stats: &mut RequestStats,
) -> Result<DownloadedFile, NetError> {
    let mut progress = Progress::open(sink, resume_from, expected.size).await?;
    if progress.written > 0 && expected.size == Some(progress.written) {
        // Everything is already here (a cut right at the end, or a crash before verification).
        return verify(progress, expected).await;
    }
    // At most two requests: a 416 to our range means the file changed; start over once.
    for _attempt in 0..2 {
        let from = progress.written;
        let mut headers = Vec::new();
        if from > 0 {
            let range = HeaderValue::try_from(format!("bytes={from}-"))
                .map_err(|e| NetError::Config(e.to_string()))?;
            headers.push((header::RANGE, range));
        }
        let spec = RequestSpec {
            method: Method::GET,
            url,
            headers,
            body: bytes::Bytes::new(),
        };
        let mut done = match exchange(client, &spec, auth, started, stats).await {
            Ok(done) => done,
            Err(e) => return Err(progress.cut(e).await),
        };
        let response = &mut done.response;
        let status = response.status();
        match status {
            StatusCode::PARTIAL_CONTENT if from > 0 => {
                let range = content_range(response).ok_or_else(|| {
                    NetError::Unexpected("206 without a usable Content-Range".into())
                });
                // A server that answers ranges wrongly would answer the next resume wrongly
                // too: drop the prefix so the next attempt fetches the whole file.
                let range = match range {
                    Ok(r) => r,
                    Err(e) => {
                        progress.restart().await?;
                        return Err(progress.cut(e).await);
                    }
                };
                if range.start != Some(from) {
                    let e = NetError::Unexpected(format!("asked for bytes {from}-, got {range:?}"));
                    progress.restart().await?;
                    return Err(progress.cut(e).await);
                }
                if let Err(e) = size_matches(expected, range.total) {
                    progress.discard().await?;
                    return Err(e);
                }
            }
            StatusCode::OK => {
                if from > 0 {
                    tracing::debug!(%url, from, "server ignored the range; starting over");
                    progress.restart().await?;
                }
                if let Err(e) = size_matches(expected, content_length(response)) {
                    progress.discard().await?;
                    return Err(e);
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE if from > 0 => {
                let total = content_range(response).and_then(|r| r.total);
                if total == Some(from) {
                    return verify(progress, expected).await;
                }
                tracing::debug!(%url, from, ?total, "range not satisfiable; starting over");
                progress.restart().await?;
                continue;
            }
            _ => {
                let e = NetError::Status {
                    status: status.as_u16(),
                };
                return Err(progress.cut(e).await);
            }
        }
        let limit = expected.size.unwrap_or(client.settings.max_download_bytes);
        if let Err(e) = stream_body(client, response.body_mut(), &mut progress, limit, stats).await
        {
            return Err(match e {
                e @ NetError::SizeMismatch { .. } => {
                    progress.discard().await?;
                    e
                }
                NetError::TooLarge { .. } => {
                    progress.discard().await?;
                    NetError::TooLarge { cap: limit }
                }
                e @ NetError::Io { .. } => e,
                e => progress.cut(e).await,
            });
        }
        drop(done);
        if let Some(size) = expected.size {
            if progress.written < size {
                // A close-delimited body that stopped early: a cut, not a bad file.
                let e = NetError::Unexpected(format!(
                    "body ended at {} of {size} bytes",
                    progress.written
                ));
                return Err(progress.cut(e).await);
            }
        }
        return verify(progress, expected).await;
    }
    Err(progress
        .cut(NetError::Unexpected("range refused twice".into()))
        .await)
}

/// Rejects a response whose full length differs from the offer before reading it.
fn size_matches(expected: &OfferedFile, total: Option<u64>) -> Result<(), NetError> {
    match (expected.size, total) {
        (Some(want), Some(got)) if want != got => Err(NetError::SizeMismatch {
            expected: want,
            actual: got,
        }),
        _ => Ok(()),
    }
}

async fn stream_body(
    client: &Client,
    body: &mut Incoming,
    progress: &mut Progress,
    limit: u64,
    stats: &mut RequestStats,
) -> Result<(), NetError> {
    let mut pacer = Pacer::new(client.shaping);
    while let Some(data) = next_data(client, body).await? {
        stats.bytes_received += data.len() as u64;
        let after = progress.written + data.len() as u64;
        if after > limit {
            return Err(if limit == client.settings.max_download_bytes {
                NetError::TooLarge { cap: limit }
            } else {
                NetError::SizeMismatch {
                    expected: limit,
                    actual: after,
                }
            });
        }
        progress.write(&data).await?;
        pacer.pace(data.len() as u64).await;
    }
    Ok(())
}

async fn verify(
    mut progress: Progress,
    expected: &OfferedFile,
) -> Result<DownloadedFile, NetError> {
    let synced = progress.sync().await?;
    let size = progress.written;
    if let Some(want) = expected.size {
        if want != size {
            progress.discard().await?;
            return Err(NetError::SizeMismatch {
                expected: want,
                actual: size,
            });
        }
    }
    let sha256 = synced
        .or_else(|| progress.hasher.take().map(|h| h.finish()))
        .map(|d| {
            let mut out = [0u8; 32];
            out.copy_from_slice(d.as_ref());
            Sha256Digest(out)
        });
    if let (Some(want), Some(got)) = (expected.sha256, sha256) {
        if want != got {
            tracing::warn!(file = %expected.file_name, expected = %want, actual = %got, "SHA-256 mismatch; file removed");
            progress.discard().await?;
            return Err(NetError::HashMismatch {
                expected: want,
                actual: got,
            });
        }
    }
    let body = match progress.writer {
        Writer::Memory(body) => body,
        _ => Vec::new(),
    };
    Ok(DownloadedFile {
        size,
        sha256,
        resumed_from: progress.resumed_from,
        body,
    })
}

/// `Content-Range: bytes START-END/TOTAL` or `bytes */TOTAL` (TOTAL may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    start: Option<u64>,
    total: Option<u64>,
}

fn content_range(response: &Response<Incoming>) -> Option<ContentRange> {
    parse_content_range(
        response
            .headers()
            .get(header::CONTENT_RANGE)?
            .to_str()
            .ok()?,
    )
}

fn parse_content_range(text: &str) -> Option<ContentRange> {
    let rest = text.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => None,
        r => {
            let (start, end) = r.split_once('-')?;
            let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
            if end < start {
                return None;
            }
            Some(start)
        }
    };
    Some(ContentRange { start, total })
}

fn content_length(response: &Response<Incoming>) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange {
                start: Some(100),
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes */200"),
            Some(ContentRange {
                start: None,
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some(ContentRange {
                start: Some(5),
                total: None
            })
        );
        for bad in ["bytes 9-5/10", "items 0-1/2", "bytes 0-1", "bytes x-1/2"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
