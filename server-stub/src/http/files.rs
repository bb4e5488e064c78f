//! `GET`/`HEAD` of update files: the path is parsed only by `StorePath::parse_file_path`
//! (which refuses traversal), the body is streamed from disk in 64 KiB frames, and a single
//! `Range` is honoured (206 / 416). Multiple ranges are answered with the whole file, which
//! RFC 9110 allows and no device asks for.

use std::io::{self, Read, Seek};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use ucupdate_protocol::{FileKind, ProtocolError, StoreKind, StorePath};

use super::{empty, text, Body, Ctx};
use crate::metrics::Metrics;
use crate::store;

const CHUNK: usize = 64 * 1024;

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// No (usable) range: the whole file, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial { start: u64, end: u64 },
    /// A well-formed range that misses the file, 416.
    Unsatisfiable,
}

/// Parses one `bytes=` range. Syntax it does not understand is ignored (whole file), as
/// RFC 9110 asks.
pub(crate) fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(value) = value else {
        return RangeRequest::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.is_empty() {
        // Suffix range: the last N bytes.
        return match number(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeRequest::Full,
        };
    }
    let Some(start) = number(first) else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return RangeRequest::Full,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial {
        start,
        end: end.map_or(len - 1, |e| e.min(len - 1)),
    }
}

/// Serves one file of `share`; `store_path` is the request's path in the R2 layout
/// ([`crate::layout::to_r2_path`]). Returns the response; the caller counts it.
pub(crate) async fn serve<B>(
    ctx: &Arc<Ctx>,
    share: StoreKind,
    req: &Request<B>,
    store_path: &str,
) -> Response<Body> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "files accept GET and HEAD only",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    let (path, name) = match StorePath::parse_file_path(store_path) {
        Ok(parsed) => parsed,
        Err(ProtocolError::NotStorePath(_)) => {
            return text(StatusCode::NOT_FOUND, "not an update store path")
        }
        Err(e) => {
            tracing::warn!(path = %req.uri().path(), error = %e, "refused store path");
            return text(StatusCode::BAD_REQUEST, format!("refused path: {e}"));
        }
    };
    if path.kind != share {
        return text(
            StatusCode::NOT_FOUND,
            format!("this listener serves /{}/ only", share.root()),
        );
    }
    let disk = store::file_path(ctx.state.data_dir(), &path, &name);
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let opening = disk.clone();
    let opened = tokio::task::spawn_blocking(move || open(&opening, range.as_deref(), head))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
    let (status, start, count, len, contents) = match opened {
        Ok(Opened::Ready {
            status,
            start,
            count,
            len,
            contents,
        }) => (status, start, count, len, contents),
        Ok(Opened::NotFound) => return text(StatusCode::NOT_FOUND, "no such file"),
        Ok(Opened::Unsatisfiable { len }) => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Err(e) => {
            tracing::error!(path = %disk.display(), error = %e, "cannot read update file");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file");
        }
    };
    let source = match contents {
        Contents::Head => None,
        Contents::Whole(bytes) => Some(Source::Whole(Some(bytes))),
        Contents::Stream(file) => Some(Source::File(tokio::fs::File::from_std(file))),
    };
    let body = match source {
        None => empty(),
        Some(source) => FileBody {
            source,
            remaining: count,
            metrics: ctx.metrics.clone(),
        }
        .boxed(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(FileKind::of(&name).content_type()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
        {
            headers.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// What the one blocking call of a request found on disk.
enum Opened {
    NotFound,
    Unsatisfiable {
        len: u64,
    },
    Ready {
        status: StatusCode,
        start: u64,
        count: u64,
        len: u64,
        contents: Contents,
    },
}

/// The body of a file response.
enum Contents {
    /// `HEAD`: none.
    Head,
    /// A body of at most [`CHUNK`] bytes, read with the opening.
    Whole(Bytes),
    /// A larger body, positioned at its start and streamed in frames ([`FileBody`]).
    Stream(std::fs::File),
}

/// Opens, measures and positions the file, and reads a small body at once: all in one
/// blocking call, so a catalog or a small image costs one hand-off to the blocking pool
/// instead of one each for the open, the metadata and every read (in the simulator's
/// 10,000-device week those hand-offs and their thread wake-ups were about a tenth of the
/// process's CPU; docs/BENCHMARKS.md §3b, fourth round).
fn open(disk: &Path, range: Option<&str>, head: bool) -> io::Result<Opened> {
    let mut file = match std::fs::File::open(disk) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::NotFound),
        Err(e) => return Err(e),
    };
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => return Ok(Opened::NotFound),
    };
    let (status, start, count) = match parse_range(range, len) {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => return Ok(Opened::Unsatisfiable { len }),
    };
    let contents = if head {
        Contents::Head
    } else {
        if start > 0 {
            file.seek(io::SeekFrom::Start(start))?;
        }
        if count <= CHUNK as u64 {
            // The file may have shrunk since its metadata: a short read fails here, before
            // any byte is sent, as a truncated stream fails its body.
            let mut bytes = vec![0u8; count as usize];
            file.read_exact(&mut bytes)?;
            Contents::Whole(Bytes::from(bytes))
        } else {
            Contents::Stream(file)
        }
    };
    Ok(Opened::Ready {
        status,
        start,
        count,
        len,
        contents,
    })
}

/// `count` bytes of a file, handed to hyper frame by frame as it asks for them (and counted
/// as served then).
struct FileBody {
    source: Source,
    remaining: u64,
    metrics: Arc<Metrics>,
}

enum Source {
    /// The whole body, read with the opening; `None` once sent.
    Whole(Option<Bytes>),
    /// An open file, read a frame at a time.
    File(tokio::fs::File),
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let data = match &mut this.source {
            Source::Whole(bytes) => bytes.take().unwrap_or_default(),
            Source::File(file) => {
                let want = usize::try_from(this.remaining).unwrap_or(CHUNK).min(CHUNK);
                let mut buf = vec![0u8; want];
                let mut read = ReadBuf::new(&mut buf);
                ready!(Pin::new(file).poll_read(cx, &mut read))?;
                let n = read.filled().len();
                buf.truncate(n);
                Bytes::from(buf)
            }
        };
        let n = data.len();
        if n == 0 {
            // The file shrank under us: fail the response rather than send a short body.
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "update file truncated",
            ))));
        }
        this.remaining = this.remaining.saturating_sub(n as u64);
        this.metrics.bytes_served(n as u64);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_table() {
        use RangeRequest::*;
        let cases: &[(Option<&str>, u64, RangeRequest)] = &[
            (None, 10, Full),
            (Some("bytes=0-3"), 10, Partial { start: 0, end: 3 }),
            (Some("bytes=4-"), 10, Partial { start: 4, end: 9 }),
            (Some("bytes=-3"), 10, Partial { start: 7, end: 9 }),
            (Some("bytes=-30"), 10, Partial { start: 0, end: 9 }),
            (Some("bytes=5-100"), 10, Partial { start: 5, end: 9 }),
            (Some("bytes=10-"), 10, Unsatisfiable),
            (Some("bytes=-0"), 10, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=5-2"), 10, Full),
            (Some("bytes=0-1,4-5"), 10, Full),
            (Some("items=0-1"), 10, Full),
            (Some("bytes=a-b"), 10, Full),
            (Some("bytes=+1-2"), 10, Full),
        ];
        for (header, len, expect) in cases {
            assert_eq!(parse_range(*header, *len), *expect, "{header:?} of {len}");
        }
    }

    /// One blocking call answers a small file whole (the range's bytes), a larger one as an
    /// open stream at the range's start, a `HEAD` without reading, and a missing file or a
    /// range beyond the end without a body.
    #[test]
    fn the_opening_reads_small_bodies_whole_and_streams_larger_ones() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.cab");
        std::fs::write(&small, b"0123456789").unwrap();
        let large = dir.path().join("large.cab");
        std::fs::write(&large, vec![7u8; 2 * CHUNK]).unwrap();

        let Opened::Ready {
            status,
            start,
            count,
            len,
            contents: Contents::Whole(bytes),
        } = open(&small, Some("bytes=2-5"), false).unwrap()
        else {
            panic!("a small file is read whole")
        };
        assert_eq!(
            (status, start, count, len),
            (StatusCode::PARTIAL_CONTENT, 2, 4, 10)
        );
        assert_eq!(&bytes[..], b"2345");

        let Opened::Ready {
            count,
            contents: Contents::Stream(mut file),
            ..
        } = open(&large, Some("bytes=1-"), false).unwrap()
        else {
            panic!("a file over one frame is streamed")
        };
        assert_eq!(count, 2 * CHUNK as u64 - 1);
        assert_eq!(
            file.stream_position().unwrap(),
            1,
            "positioned at the range"
        );

        assert!(matches!(
            open(&large, None, true).unwrap(),
            Opened::Ready { contents: Contents::Head, count, .. } if count == 2 * CHUNK as u64
        ));
        assert!(matches!(
            open(&dir.path().join("gone.cab"), None, false).unwrap(),
            Opened::NotFound
        ));
        assert!(matches!(
            open(&small, Some("bytes=10-"), false).unwrap(),
            Opened::Unsatisfiable { len: 10 }
        ));
    }
}
