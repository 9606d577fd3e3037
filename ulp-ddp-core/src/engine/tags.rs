//! The tag table: every registered buffer, from setup until its release.

use crate::buffer::SgBuffer;
use crate::error::DataError;
use crate::protocol::Placement;
use crate::ranges::{RangeSet, Refused};
use crate::types::{IdMap, Tag};

/// One registered command.
#[derive(Debug)]
pub(super) struct TagEntry {
    pub(super) buffer: SgBuffer,
    /// The backend mapped the buffer (a device may write into it).
    pub(super) offloaded: bool,
    /// The teardown started: no more data is accepted.
    pub(super) finished: bool,
    /// Buffer ranges that received data.
    pub(super) received: RangeSet,
}

/// Every buffer the engine holds, by tag.
#[derive(Debug, Default)]
pub(super) struct Tags {
    map: IdMap<Tag, TagEntry>,
    /// Teardowns the backend refused to start (out of resources): the device may still write,
    /// so the buffers stay here and the teardowns are retried on every poll.
    pub(super) retry: Vec<Tag>,
}

impl Tags {
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(super) fn contains(&self, tag: Tag) -> bool {
        self.map.contains_key(&tag)
    }

    pub(super) fn get(&self, tag: Tag) -> Option<&TagEntry> {
        self.map.get(&tag)
    }

    pub(super) fn get_mut(&mut self, tag: Tag) -> Option<&mut TagEntry> {
        self.map.get_mut(&tag)
    }

    pub(super) fn insert(&mut self, tag: Tag, buffer: SgBuffer, offloaded: bool) {
        self.map.insert(
            tag,
            TagEntry {
                buffer,
                offloaded,
                finished: false,
                received: RangeSet::default(),
            },
        );
    }

    pub(super) fn remove(&mut self, tag: Tag) -> Option<TagEntry> {
        self.map.remove(&tag)
    }

    /// Admits `len` data bytes at `placement`: the tag is registered and not finished, the
    /// range lies within its buffer and overlaps nothing received. Returns whether the backend
    /// mapped the buffer.
    #[inline]
    pub(super) fn admit(&mut self, placement: Placement, len: u32) -> Result<bool, DataError> {
        let Placement { tag, offset } = placement;
        let entry = self.map.get_mut(&tag).ok_or(DataError::UnknownTag(tag))?;
        if entry.finished {
            return Err(DataError::TagFinished(tag));
        }
        if let Err(e) = entry.buffer.check_range(offset, u64::from(len)) {
            return Err(DataError::OutOfRange {
                tag,
                offset,
                len,
                buffer_len: e.buffer_len,
            });
        }
        match entry
            .received
            .insert_disjoint(offset, offset + u64::from(len))
        {
            Err(Refused::Overlap) => Err(DataError::Duplicate { tag, offset, len }),
            Err(Refused::TooMany) => Err(DataError::TooFragmented { tag }),
            Ok(()) => Ok(entry.offloaded),
        }
    }

    /// Whether every byte of `tag`'s buffer was admitted (the PDU that did it carries the
    /// command's last data).
    pub(super) fn is_whole(&self, tag: Tag) -> bool {
        self.map
            .get(&tag)
            .is_some_and(|e| e.received.is_whole(e.buffer.len()))
    }

    /// The most payload bytes a command not yet torn down may still receive.
    pub(super) fn max_outstanding(&self) -> u64 {
        self.map
            .values()
            .filter(|e| !e.finished)
            .map(|e| e.buffer.len().saturating_sub(e.received.covered()))
            .max()
            .unwrap_or(0)
    }

    /// Tags whose teardown has not started.
    pub(super) fn unfinished(&self) -> Vec<Tag> {
        self.map
            .iter()
            .filter(|(_, e)| !e.finished)
            .map(|(t, _)| *t)
            .collect()
    }
}
