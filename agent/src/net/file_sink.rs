//! The [`DownloadSink::File`](super::DownloadSink::File) writer: one thread per file download
//! owns the staging file and its SHA-256, so the download loop never waits for the disk and
//! does not hash. The loop copies each piece into a [`BLOCK`]-sized buffer; full blocks go to
//! the thread through a channel of [`QUEUE`] blocks (memory stays bounded, a full queue stops
//! the loop reading the socket, and the thread hands each written buffer back for reuse). The
//! thread hashes and writes them in order and, every [`WRITEBACK`] bytes, asks the kernel to
//! start writing them to disk, so the fsync at the end has little left to do (curl does not
//! fsync at all; without this the fsync of a 200 MB image took 15-25 % of the download,
//! docs/BENCHMARKS.md §5 "Fourth round").
//!
//! The thread stops at the first I/O error; the loop learns of it at its next block (or at the
//! fsync that [`FileSink::sync`] waits for, before anything is verified) and reports the
//! operation and the path. Only the File sink has the thread: the simulator's Discard and
//! Memory sinks hash on the caller's task and start no thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU64;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};

use super::error::NetError;
use crate::digest::{Context, Digest, SHA256};

/// Bytes per hand-off to the writer: large enough that the thread wakes a few hundred times per
/// 100 MB, small enough that [`QUEUE`] of them stay well under the agent's memory budget.
const BLOCK: usize = 128 * 1024;
/// Blocks queued for the writer at most (with the one it writes and the one being filled:
/// 768 KiB per download).
const QUEUE: usize = 4;
/// Every this many bytes written, the kernel is asked to start writing them back.
const WRITEBACK: u64 = 4 * 1024 * 1024;
/// The writer needs little stack: its buffers are on the heap.
const STACK: usize = 256 * 1024;

enum Cmd {
    /// A block to write; the thread hands the buffer back (the queue bounds how many exist).
    Write(Vec<u8>),
    /// Truncate to 0 and write from the start (the server sends the whole file again).
    Restart,
    /// fsync; answered with the digest so far once everything queued before it is on disk.
    Sync(oneshot::Sender<Digest>),
}

/// An I/O error of the writer thread: which operation failed.
struct Failure {
    op: &'static str,
    error: io::Error,
}

fn fail(op: &'static str) -> impl FnOnce(io::Error) -> Failure {
    move |error| Failure { op, error }
}

/// The download loop's end of a staging file being written.
pub(super) struct FileSink {
    path: PathBuf,
    tx: mpsc::Sender<Cmd>,
    /// The thread's first error, sent as it stops (taken by the first caller that needs it).
    done: Option<oneshot::Receiver<Result<(), Failure>>>,
    block: Vec<u8>,
    /// Buffers the thread has written, for the next blocks.
    spare: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl FileSink {
    /// Opens or creates `path` (0600, never through a symlink), keeps at most `wanted` bytes of
    /// it and hashes them. Returns the sink and the count of bytes kept.
    pub(super) async fn open(path: &Path, wanted: u64) -> Result<(FileSink, u64), NetError> {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let (opened_tx, opened) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let (spare_tx, spare) = mpsc::unbounded_channel();
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("ucupdate-writer".into())
            .stack_size(STACK)
            .spawn(move || match open_and_hash(&owned, wanted) {
                Err(f) => {
                    let _ = opened_tx.send(Err(f));
                }
                Ok((file, hasher, keep)) => {
                    let _ = opened_tx.send(Ok(keep));
                    let _ = done_tx.send(serve(file, hasher, keep, &mut rx, &spare_tx));
                }
            })
            .map_err(NetError::io("start the writer for", path))?;
        let keep = match opened.await {
            Ok(Ok(opened)) => opened,
            Ok(Err(f)) => return Err(NetError::io(f.op, path)(f.error)),
            Err(_) => return Err(NetError::io("open", path)(stopped())),
        };
        let sink = FileSink {
            path: path.to_owned(),
            tx,
            done: Some(done),
            block: Vec::with_capacity(BLOCK),
            spare,
        };
        Ok((sink, keep))
    }

    /// Queues `data` after the bytes so far.
    pub(super) async fn write(&mut self, mut data: &[u8]) -> Result<(), NetError> {
        while !data.is_empty() {
            let n = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.block.len() == BLOCK {
                self.send_block().await?;
            }
        }
        Ok(())
    }

    /// Drops every byte so far, on disk and queued.
    pub(super) async fn restart(&mut self) -> Result<(), NetError> {
        self.block.clear();
        self.send(Cmd::Restart).await
    }

    /// Returns the SHA-256 of every byte so far once they are written and fsynced, or the
    /// writer's first error.
    pub(super) async fn sync(&mut self) -> Result<Digest, NetError> {
        if !self.block.is_empty() {
            self.send_block().await?;
        }
        let (reply, synced) = oneshot::channel();
        self.send(Cmd::Sync(reply)).await?;
        match synced.await {
            Ok(digest) => Ok(digest),
            // The thread stopped before answering: it failed on this or an earlier block.
            Err(_) => Err(self.failure().await),
        }
    }

    /// Stops the writer (after what it has queued) and removes the file.
    pub(super) async fn remove(self) -> Result<(), NetError> {
        let FileSink { path, tx, done, .. } = self;
        drop(tx);
        if let Some(done) = done {
            // Its error no longer matters: the file goes.
            let _ = done.await;
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetError::io("remove", &path)(e)),
        }
    }

    async fn send_block(&mut self) -> Result<(), NetError> {
        let next = match self.spare.try_recv() {
            Ok(mut spare) => {
                spare.clear();
                spare
            }
            Err(_) => Vec::with_capacity(BLOCK),
        };
        let full = std::mem::replace(&mut self.block, next);
        self.send(Cmd::Write(full)).await
    }

    async fn send(&mut self, cmd: Cmd) -> Result<(), NetError> {
        match self.tx.send(cmd).await {
            Ok(()) => Ok(()),
            // The thread only drops its end when it stops, and it stops on an error.
            Err(_) => Err(self.failure().await),
        }
    }

    /// The writer's error, once it has stopped.
    async fn failure(&mut self) -> NetError {
        let outcome = match self.done.take() {
            Some(done) => done.await,
            None => Ok(Ok(())),
        };
        match outcome {
            Ok(Err(f)) => NetError::io(f.op, &self.path)(f.error),
            _ => NetError::io("write", &self.path)(stopped()),
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the writer thread stopped")
}

/// The blocking half of [`FileSink::open`], on the writer thread.
fn open_and_hash(path: &Path, wanted: u64) -> Result<(File, Context, u64), Failure> {
    // 0600, and never through a symlink: a link planted in staging/ would make the download
    // overwrite whatever it points at.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(fail("open"))?;
    let on_disk = file.metadata().map_err(fail("stat"))?.len();
    let keep = wanted.min(on_disk);
    if on_disk != keep {
        file.set_len(keep).map_err(fail("truncate"))?;
    }
    let mut hasher = Context::new(&SHA256);
    let mut buf = vec![0u8; BLOCK];
    let mut prefix = (&mut file).take(keep);
    let mut read = 0u64;
    loop {
        let n = prefix.read(&mut buf).map_err(fail("read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read != keep {
        return Err(Failure {
            op: "read",
            error: io::ErrorKind::UnexpectedEof.into(),
        });
    }
    file.seek(SeekFrom::Start(keep)).map_err(fail("seek"))?;
    Ok((file, hasher, keep))
}

/// The writer thread's loop: commands in order until the sink is dropped or an error.
fn serve(
    mut file: File,
    mut hasher: Context,
    mut at: u64,
    rx: &mut mpsc::Receiver<Cmd>,
    spare: &mpsc::UnboundedSender<Vec<u8>>,
) -> Result<(), Failure> {
    let mut hinted = at;
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Cmd::Write(block) => {
                hasher.update(&block);
                file.write_all(&block).map_err(fail("write"))?;
                at += block.len() as u64;
                let _ = spare.send(block);
                if at - hinted >= WRITEBACK {
                    start_writeback(&file, hinted, at - hinted);
                    hinted = at;
                }
            }
            Cmd::Restart => {
                file.set_len(0).map_err(fail("truncate"))?;
                file.seek(SeekFrom::Start(0)).map_err(fail("seek"))?;
                (at, hinted) = (0, 0);
                hasher = Context::new(&SHA256);
            }
            Cmd::Sync(reply) => {
                file.sync_all().map_err(fail("fsync"))?;
                let _ = reply.send(hasher.clone().finish());
            }
        }
    }
    Ok(())
}

/// Starts the write-back of `len` bytes at `offset` without waiting for it. On Linux,
/// `POSIX_FADV_DONTNEED` begins write-back of the range's dirty pages (as
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)` does, which would need `unsafe`) and drops only
/// pages already clean, which these are not. A hint: durability still comes from the fsync, so
/// an error here changes nothing and is ignored.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}
