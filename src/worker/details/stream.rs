//! A manifest's bytes, as the store hands them, cut into lines for the [`ManifestReader`]: never
//! more than one line buffered, and never more bytes than the read may take.

use super::SMALL_MANIFEST_BYTES;
use crate::domain::manifest::{ManifestError, ManifestReader};
use crate::ports::ReadSink;

/// How many bytes a manifest read may take.
#[derive(Clone, Copy)]
pub(super) enum Cap {
    /// Any (no budget).
    None,
    /// Up to [`SMALL_MANIFEST_BYTES`]: a larger manifest is only sized, not read.
    Probe,
    /// Up to the bytes reserved for it.
    Reserved(u64),
}

/// Takes a manifest's bytes into the line splitter, up to its [`Cap`].
pub(super) struct ManifestSink {
    pub(super) lines: LineSplitter,
    cap: Option<u64>,
    /// The object's size, when the store said it.
    pub(super) size: Option<u64>,
    seen: u64,
    /// Set (to the bytes known then) when the manifest is over the cap: reading stopped.
    pub(super) over: Option<u64>,
}

impl ManifestSink {
    pub(super) fn new(lines: LineSplitter, cap: Cap) -> Self {
        let cap = match cap {
            Cap::None => None,
            Cap::Probe => Some(SMALL_MANIFEST_BYTES),
            Cap::Reserved(bytes) => Some(bytes),
        };
        Self {
            lines,
            cap,
            size: None,
            seen: 0,
            over: None,
        }
    }
}

impl ReadSink for ManifestSink {
    fn size(&mut self, bytes: u64) -> bool {
        self.size = Some(bytes);
        if self.cap.is_some_and(|cap| bytes > cap) {
            self.over = Some(bytes);
            return false;
        }
        true
    }

    fn chunk(&mut self, chunk: &[u8]) -> bool {
        self.seen += chunk.len() as u64;
        if self.cap.is_some_and(|cap| self.seen > cap) {
            self.over = Some(self.seen);
            return false;
        }
        self.lines.feed(chunk)
    }
}

/// Cuts a byte stream into lines for the manifest reader, never buffering more than one line of
/// at most `max_line` bytes.
pub(super) struct LineSplitter {
    pub(super) reader: ManifestReader,
    pending: Vec<u8>,
    max_line: usize,
    stopped: bool,
}

impl LineSplitter {
    pub(super) fn new(reader: ManifestReader, max_line: usize) -> Self {
        Self {
            reader,
            pending: Vec::new(),
            max_line,
            stopped: false,
        }
    }

    /// Takes the next chunk; false once the reader stopped (no more bytes are wanted).
    fn feed(&mut self, mut chunk: &[u8]) -> bool {
        while !self.stopped {
            let Some(end) = chunk.iter().position(|&b| b == b'\n') else {
                break;
            };
            if self.pending.is_empty() {
                self.stopped = self.reader.feed_line(&chunk[..end]).is_err();
            } else {
                self.pending.extend_from_slice(&chunk[..end]);
                let line = std::mem::take(&mut self.pending);
                self.stopped = self.reader.feed_line(&line).is_err();
            }
            chunk = &chunk[end + 1..];
        }
        if self.stopped {
            return false;
        }
        if self.pending.len() + chunk.len() > self.max_line {
            self.reader.fail(ManifestError::LineTooLong {
                line: self.reader.next_line(),
                bytes: (self.pending.len() + chunk.len()) as u64,
                limit: self.max_line,
            });
            self.stopped = true;
            return false;
        }
        self.pending.extend_from_slice(chunk);
        true
    }

    /// The reader, fed the last line if the stream did not end with a line break.
    pub(super) fn finish(mut self) -> ManifestReader {
        if !self.stopped && !self.pending.is_empty() {
            let _ = self.reader.feed_line(&self.pending);
        }
        self.reader
    }
}
