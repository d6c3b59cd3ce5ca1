//! Files whose operations run on the thread pool (Curio's `aopen`), so a slow
//! disk or network file system never stalls the kernel.
//!
//! [`open`] and [`create`] give a [`File`]; its reads, writes, `readline`,
//! `lines`, `seek`, `tell` and `flush` each run as one [`run_in_thread`] job.
//! [`read`], [`read_to_string`] and [`write()`] do a whole file in one job.
//!
//! # Invariants
//!
//! - The open file and its read buffer live behind a mutex that the jobs take
//!   in turn. A job that outlives its cancelled caller (see below) keeps it
//!   until it finishes; the next operation's job waits for it on its pool
//!   thread, never on the kernel. So a cancelled operation cannot leave the
//!   `File` half-updated, and operations happen in the order they were called.
//! - Data read from the disk goes into the `File`'s buffer inside the job;
//!   the caller takes it out only after the job has finished. A read that is
//!   cancelled after its job ran therefore loses nothing: the bytes stay
//!   buffered and the next read returns them.
//! - Cancelling an operation behaves as [`run_in_thread`] does: the caller
//!   gets the error at once. A job that has not started never will; a job
//!   already running finishes on its thread (a cancelled `write` is either
//!   not done at all or done in full; a cancelled `seek` may have moved the
//!   position, which [`File::tell`] reports).
//! - Writes are not buffered in this process: `write` hands the bytes to the
//!   OS before it returns, so `flush` only has the OS's buffers to consider
//!   (use [`File::sync_all`] to reach the disk).
//!
//! # Example
//!
//! ```
//! curio::run(|| -> curio::Result<()> {
//!     let dir = std::env::temp_dir().join(format!("curio-fs-doc-{}", std::process::id()));
//!     std::fs::create_dir_all(&dir)?;
//!     let path = dir.join("log.txt");
//!     let mut f = curio::fs::create(&path)?;
//!     f.write_all(b"one\ntwo\nthree")?;
//!     f.close()?;
//!
//!     let mut f = curio::fs::open(&path)?;
//!     let lines: Vec<Vec<u8>> = f.lines().collect::<curio::Result<_>>()?;
//!     assert_eq!(lines, [&b"one\n"[..], b"two\n", b"three"]);
//!     assert_eq!(curio::fs::read_to_string(&path)?, "one\ntwo\nthree");
//!     std::fs::remove_dir_all(&dir)?;
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Result;
use crate::io::DEFAULT_MAX_LINE;
use crate::workers::run_in_thread;

const CHUNK: usize = 64 * 1024;

/// Reads the whole file at `path` (on the thread pool).
///
/// # Cancellation
///
/// As [`run_in_thread`]: cancelled, it returns at once; a read already under
/// way finishes on its thread and its bytes are dropped.
pub fn read(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref().to_path_buf();
    Ok(run_in_thread(move || {
        std::fs::read(&path).map_err(|e| with_path(e, &path))
    })??)
}

/// Reads the whole file at `path` as UTF-8 (on the thread pool).
///
/// # Errors
///
/// I/O errors, and an I/O error of kind `InvalidData` if it is not UTF-8.
///
/// # Cancellation
///
/// As [`read`].
pub fn read_to_string(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref().to_path_buf();
    Ok(run_in_thread(move || {
        std::fs::read_to_string(&path).map_err(|e| with_path(e, &path))
    })??)
}

/// Writes `contents` to the file at `path`, creating or truncating it (on the
/// thread pool).
///
/// # Cancellation
///
/// As [`run_in_thread`]: cancelled, it returns at once. If the write had
/// started it completes on its thread, so the file may hold the new contents:
/// a cancelled `write` is not undone.
pub fn write(path: impl AsRef<Path>, contents: impl Into<Vec<u8>>) -> Result<()> {
    let path = path.as_ref().to_path_buf();
    let contents = contents.into();
    Ok(run_in_thread(move || {
        std::fs::write(&path, contents).map_err(|e| with_path(e, &path))
    })??)
}

/// Opens the file at `path` for reading (Curio's `aopen(path)`).
///
/// # Cancellation
///
/// As [`run_in_thread`]; a file opened by a job whose caller was cancelled is
/// closed again on its thread.
pub fn open(path: impl AsRef<Path>) -> Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    open_with(path, o)
}

/// Creates (or truncates) the file at `path` for writing.
///
/// # Cancellation
///
/// As [`open`].
pub fn create(path: impl AsRef<Path>) -> Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    open_with(path, o)
}

/// Opens the file at `path` with `options` (std's `OpenOptions`: append,
/// read and write, create_new …).
///
/// # Errors
///
/// The OS's error, with the path in the message (`NotFound`,
/// `PermissionDenied` …).
///
/// # Cancellation
///
/// As [`open`].
pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<File> {
    let path = path.as_ref().to_path_buf();
    let p = path.clone();
    let file = run_in_thread(move || options.open(&p).map_err(|e| with_path(e, &p)))??;
    Ok(File {
        shared: Arc::new(Mutex::new(Some(Inner {
            file,
            buf: Vec::new(),
            pos: 0,
            end: 0,
        }))),
        path,
        max_line: DEFAULT_MAX_LINE,
    })
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// An open file whose operations run on the thread pool. Made by [`open`],
/// [`create`] or [`open_with`]; closed by [`File::close`] or on drop.
///
/// Methods take `&mut self`, so one task uses a file at a time.
pub struct File {
    /// `None` once closed.
    shared: Arc<Mutex<Option<Inner>>>,
    path: PathBuf,
    max_line: usize,
}

/// What the jobs share: the OS file and the bytes read ahead of the caller.
struct Inner {
    file: std::fs::File,
    /// `buf[pos..end]`: read from the OS, not yet handed to the caller. The
    /// OS position is `end - pos` bytes ahead of the caller's.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Inner {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Reads one chunk more into the buffer; returns how much came (0: end of file).
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() < self.end + CHUNK {
            self.buf.resize(self.end + CHUNK, 0);
        }
        loop {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.end - self.pos);
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        out
    }

    /// Gives the read-ahead back to the OS position, so the next write or
    /// seek starts where the caller is.
    fn unread_ahead(&mut self) -> io::Result<()> {
        let ahead = (self.end - self.pos) as i64;
        if ahead > 0 {
            self.file.seek(SeekFrom::Current(-ahead))?;
        }
        self.pos = 0;
        self.end = 0;
        Ok(())
    }

    /// Fills until a newline is buffered, `max` bytes are buffered, or the
    /// end of file; returns the length of the line to take (0: end of file).
    fn find_line(&mut self, max: usize) -> io::Result<usize> {
        let mut searched = 0;
        loop {
            let unread = self.buffered();
            let window = &unread[..unread.len().min(max)];
            if let Some(i) = window[searched..].iter().position(|&b| b == b'\n') {
                return Ok(searched + i + 1);
            }
            searched = window.len();
            if searched >= max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line longer than {max} bytes; raise the limit with set_max_line"),
                ));
            }
            if self.fill()? == 0 {
                return Ok(self.end - self.pos);
            }
        }
    }
}

fn lock(m: &Mutex<Option<Inner>>) -> MutexGuard<'_, Option<Inner>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn closed_error() -> io::Error {
    io::Error::other("the file is closed")
}

impl File {
    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the longest line [`readline`](File::readline) accepts (64 KiB by default).
    pub fn set_max_line(&mut self, bytes: usize) {
        self.max_line = bytes.max(1);
    }

    /// Runs `op` on the pool with the file in hand, after any job of an
    /// earlier, cancelled operation has finished.
    fn job<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut Inner) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        let abandoned = Arc::new(AtomicBool::new(false));
        let gave_up = abandoned.clone();
        let r = run_in_thread(move || {
            // Waits here, on the pool thread, for an earlier job still running.
            let mut guard = lock(&shared);
            if gave_up.load(Ordering::Acquire) {
                // The caller was cancelled while this job waited: do nothing.
                return Ok(None);
            }
            let inner = guard.as_mut().ok_or_else(closed_error)?;
            op(inner).map(Some)
        });
        match r {
            Ok(Ok(Some(v))) => Ok(v),
            Ok(Ok(None)) => unreachable!("only an abandoned job skips its operation"),
            Ok(Err(e)) => Err(with_path(e, &self.path).into()),
            Err(e) => {
                abandoned.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Takes bytes out of the buffer after a job filled it. Only called right
    /// after this file's own job finished, so nothing else holds the lock.
    fn take(&mut self, n: usize) -> Vec<u8> {
        lock(&self.shared)
            .as_mut()
            .map_or_else(Vec::new, |i| i.take(n))
    }

    /// Reads up to `max` bytes: bytes already buffered, else one read from the
    /// OS. An empty vector means end of file.
    ///
    /// # Cancellation
    ///
    /// Cancelled, it returns at once; bytes its job reads stay buffered for
    /// the next read, so nothing is lost.
    pub fn read_some(&mut self, max: usize) -> Result<Vec<u8>> {
        let n = self.job(move |inner| {
            if inner.buffered().is_empty() {
                inner.fill()?;
            }
            Ok(inner.buffered().len().min(max))
        })?;
        Ok(self.take(n))
    }

    /// Reads everything up to the end of the file.
    ///
    /// # Cancellation
    ///
    /// As [`read`](File::read_some): what the job read stays buffered, and the next
    /// `read_all` returns it with the rest.
    pub fn read_all(&mut self) -> Result<Vec<u8>> {
        let n = self.job(|inner| {
            while inner.fill()? > 0 {}
            Ok(inner.buffered().len())
        })?;
        Ok(self.take(n))
    }

    /// Reads the rest of the file as UTF-8.
    ///
    /// # Errors
    ///
    /// An I/O error of kind `InvalidData` if it is not UTF-8 (the bytes are
    /// consumed).
    ///
    /// # Cancellation
    ///
    /// As [`read_all`](File::read_all).
    pub fn read_to_string(&mut self) -> Result<String> {
        let bytes = self.read_all()?;
        String::from_utf8(bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not UTF-8: {e}", self.path.display()),
            )
            .into()
        })
    }

    /// Reads one line, newline included; at the end of the file, the rest
    /// without one (an empty vector: end of file).
    ///
    /// # Errors
    ///
    /// A line longer than the limit ([`File::set_max_line`]) is an I/O error
    /// of kind `InvalidData`; its bytes stay buffered.
    ///
    /// # Cancellation
    ///
    /// As [`read`](File::read_some): a line its job read stays buffered.
    pub fn readline(&mut self) -> Result<Vec<u8>> {
        let max = self.max_line;
        let n = self.job(move |inner| inner.find_line(max))?;
        Ok(self.take(n))
    }

    /// The lines up to the end of the file, each as [`readline`](File::readline)
    /// returns it (so a last line without a newline comes without one).
    pub fn lines(&mut self) -> Lines<'_> {
        Lines { file: self }
    }

    /// Writes all of `data` at the caller's position (or at the end, for a
    /// file opened to append).
    ///
    /// # Cancellation
    ///
    /// Cancelled, it returns at once. If its job had started, the write
    /// completes on its thread; if not, it never happens. Call
    /// [`tell`](File::tell) to learn where the file stands.
    pub fn write_all(&mut self, data: impl Into<Vec<u8>>) -> Result<()> {
        let data = data.into();
        self.job(move |inner| {
            inner.unread_ahead()?;
            inner.file.write_all(&data)
        })
    }

    /// Moves the position (relative positions count from the caller's
    /// position, not from what was read ahead); returns the new one.
    ///
    /// # Cancellation
    ///
    /// As [`write`](File::write_all): the seek either happens or not; `tell` says.
    pub fn seek(&mut self, pos: SeekFrom) -> Result<u64> {
        self.job(move |inner| {
            let ahead = (inner.end - inner.pos) as i64;
            let pos = match pos {
                SeekFrom::Current(off) => SeekFrom::Current(off - ahead),
                other => other,
            };
            inner.pos = 0;
            inner.end = 0;
            inner.file.seek(pos)
        })
    }

    /// The caller's position: where the next read or write happens.
    ///
    /// # Cancellation
    ///
    /// As [`run_in_thread`]; nothing changes.
    pub fn tell(&mut self) -> Result<u64> {
        self.job(|inner| {
            let os = inner.file.stream_position()?;
            Ok(os - (inner.end - inner.pos) as u64)
        })
    }

    /// Flushes what this process buffers (nothing: writes go straight to the
    /// OS). Use [`sync_all`](File::sync_all) to reach the disk.
    ///
    /// # Cancellation
    ///
    /// As [`run_in_thread`].
    pub fn flush(&mut self) -> Result<()> {
        self.job(|inner| inner.file.flush())
    }

    /// Waits until the OS has written the file's data and metadata to the
    /// disk (`fsync`).
    ///
    /// # Cancellation
    ///
    /// As [`write`](File::write_all): the sync goes on if it had started.
    pub fn sync_all(&mut self) -> Result<()> {
        self.job(|inner| inner.file.sync_all())
    }

    /// Truncates or extends the file to `size` bytes.
    ///
    /// # Cancellation
    ///
    /// As [`write`](File::write_all).
    pub fn set_len(&mut self, size: u64) -> Result<()> {
        self.job(move |inner| {
            inner.unread_ahead()?;
            inner.file.set_len(size)
        })
    }

    /// The file's metadata (size, times, permissions).
    ///
    /// # Cancellation
    ///
    /// As [`run_in_thread`]; nothing changes.
    pub fn metadata(&mut self) -> Result<std::fs::Metadata> {
        self.job(|inner| inner.file.metadata())
    }

    /// Closes the file on the pool, after any operation still running.
    ///
    /// # Cancellation
    ///
    /// Cancelled, the file is closed all the same (when the job runs, or
    /// when the last job holding it finishes).
    pub fn close(mut self) -> Result<()> {
        let shared = self.shared.clone();
        let r = run_in_thread(move || drop(lock(&shared).take()));
        // Whatever happened, this handle is done; a job still holding the
        // file drops it when it finishes.
        self.shared = Arc::new(Mutex::new(None));
        r
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.shared.try_lock() {
            Ok(g) if g.is_some() => "open",
            Ok(_) => "closed",
            Err(_) => "busy",
        };
        f.debug_struct("File")
            .field("path", &self.path)
            .field("state", &state)
            .finish()
    }
}

/// The lines of a [`File`], from [`File::lines`].
#[derive(Debug)]
pub struct Lines<'a> {
    file: &'a mut File,
}

impl Iterator for Lines<'_> {
    type Item = Result<Vec<u8>>;

    /// # Cancellation
    ///
    /// As [`File::readline`].
    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        match self.file.readline() {
            Ok(line) if line.is_empty() => None,
            other => Some(other),
        }
    }
}
