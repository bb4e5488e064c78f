//! `GET`/`HEAD` of update files: the path is parsed only by `StorePath::parse_file_path`
//! (which refuses traversal), the body is streamed from disk in 64 KiB frames, and a single
//! `Range` is honoured (206 / 416). Multiple ranges are answered with the whole file, which
//! RFC 9110 allows and no device asks for.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
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
    let mut file = match tokio::fs::File::open(&disk).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return text(StatusCode::NOT_FOUND, "no such file")
        }
        Err(e) => {
            tracing::error!(path = %disk.display(), error = %e, "cannot open update file");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot open file");
        }
    };
    let len = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return text(StatusCode::NOT_FOUND, "no such file"),
    };
    let range = parse_range(
        req.headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok()),
        len,
    );
    let (status, start, count) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    if start > 0 {
        if let Err(e) = file.seek(io::SeekFrom::Start(start)).await {
            tracing::error!(path = %disk.display(), error = %e, "seek failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file");
        }
    }
    let body = if head {
        empty()
    } else {
        FileBody {
            file,
            remaining: count,
            metrics: ctx.metrics.clone(),
        }
        .boxed()
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

/// `count` bytes of an open file, read frame by frame as hyper asks for them.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    metrics: Arc<Metrics>,
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
        let want = usize::try_from(this.remaining).unwrap_or(CHUNK).min(CHUNK);
        let mut buf = vec![0u8; want];
        let mut read = ReadBuf::new(&mut buf);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            // The file shrank under us: fail the response rather than send a short body.
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "update file truncated",
            ))));
        }
        buf.truncate(n);
        this.remaining -= n as u64;
        this.metrics.bytes_served(n as u64);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
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
}
