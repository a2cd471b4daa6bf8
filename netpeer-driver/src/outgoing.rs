//! [`Outgoing`]: what one connection still has to write. The driver writes every
//! socket itself, as it reads them: frames routed to a connection wait here until the
//! socket takes them. Small frames are gathered into one write of at most
//! [`COALESCE`] bytes; a large frame, or one alone, is written from its own buffer
//! (no copy), in pieces of at most [`COALESCE`].

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

use crate::readbuf::{self, SmallRun};

/// Most bytes handed to one write call.
pub(crate) const COALESCE: usize = 64 * 1024;
/// Frames at least this large are written from their own buffer, never gathered.
const LARGE: usize = COALESCE / 2;
/// A gathered write at least this large is a burst's: its buffers are kept once the
/// queue drains.
const BURST: usize = COALESCE / 2;

/// A connection's frames not yet written.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    frames: VecDeque<Bytes>,
    /// Small frames gathered for one write, written up to `at`.
    gathered: Vec<u8>,
    at: usize,
    /// A frame written from its own buffer (what is left of it).
    direct: Bytes,
    /// Gathered writes in a row that used little of the buffer: it shrinks.
    small: SmallRun,
}

impl Outgoing {
    /// Queues a frame after the others.
    pub(crate) fn push(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.frames.push_back(frame);
        }
    }

    /// Nothing left to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.at == self.gathered.len() && self.direct.is_empty() && self.frames.is_empty()
    }

    /// The bytes to hand to the next write (at most [`COALESCE`]); `None` when
    /// everything was written. What the write took is then [`advance`](Self::advance)d.
    pub(crate) fn chunk(&mut self) -> Option<&[u8]> {
        if self.at == self.gathered.len() && self.direct.is_empty() {
            self.refill();
        }
        if self.at < self.gathered.len() {
            Some(&self.gathered[self.at..])
        } else if !self.direct.is_empty() {
            Some(&self.direct[..self.direct.len().min(COALESCE)])
        } else {
            None
        }
    }

    /// The last write took `n` bytes of the [`chunk`](Self::chunk).
    pub(crate) fn advance(&mut self, n: usize) {
        if self.at < self.gathered.len() {
            self.at = (self.at + n).min(self.gathered.len());
        } else {
            self.direct.advance(n.min(self.direct.len()));
        }
    }

    /// Gives back the capacity a burst left (while nothing waits).
    pub(crate) fn shrink(&mut self) {
        if self.is_empty() {
            *self = Outgoing::default();
        }
    }

    /// The next write's bytes: the first frame alone if it is large or the only one,
    /// else the small frames that fit in one write.
    fn refill(&mut self) {
        let used = self.gathered.len();
        self.gathered.clear();
        self.at = 0;
        if used > 0
            && self.gathered.capacity() > readbuf::MIN
            && self.small.shrink(used, self.gathered.capacity())
        {
            self.gathered = Vec::new();
        }
        let Some(first) = self.frames.front() else {
            // Everything is written: a connection that waits keeps no gathering buffer
            // (an idle room's connections are many; the next gathered write allocates
            // once), unless its last gathered write was a burst's (a throughput run
            // drains its queue often): that one is kept while the burst lasts, and
            // given back by a quiet run ([`shrink`](Self::shrink)), as is the queue.
            if used < BURST {
                self.gathered = Vec::new();
            }
            return;
        };
        if first.len() >= LARGE || self.frames.len() == 1 {
            self.direct = self.frames.pop_front().expect("a first frame");
            return;
        }
        if self.gathered.capacity() == 0 {
            // One allocation for this write: the frames it will take.
            let mut len = 0;
            for f in &self.frames {
                if f.len() >= LARGE || len + f.len() > COALESCE {
                    break;
                }
                len += f.len();
            }
            self.gathered.reserve_exact(len);
        }
        while let Some(f) = self.frames.front() {
            if f.len() >= LARGE || self.gathered.len() + f.len() > COALESCE {
                break;
            }
            self.gathered.extend_from_slice(f);
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes everything, `max` bytes per write at most: the chunks handed out.
    fn drain(o: &mut Outgoing, max: usize) -> Vec<Vec<u8>> {
        let mut writes = Vec::new();
        while let Some(chunk) = o.chunk() {
            let n = chunk.len().min(max);
            writes.push(chunk[..n].to_vec());
            o.advance(n);
        }
        writes
    }

    fn frame(len: usize, byte: u8) -> Bytes {
        Bytes::from(vec![byte; len])
    }

    #[test]
    fn small_frames_are_gathered_into_writes_of_at_most_coalesce_bytes() {
        let mut o = Outgoing::default();
        let frames: Vec<Bytes> = (0..3000).map(|i| frame(68, i as u8)).collect();
        for f in &frames {
            o.push(f.clone());
        }
        let writes = drain(&mut o, usize::MAX);
        assert!(writes.iter().all(|w| w.len() <= COALESCE));
        assert_eq!(writes.len(), (3000 * 68usize).div_ceil(COALESCE / 68 * 68));
        assert_eq!(writes.concat(), frames.concat(), "every byte, in order");
        assert!(o.is_empty());
    }

    #[test]
    fn a_lone_frame_or_a_large_one_is_written_from_its_own_buffer() {
        let mut o = Outgoing::default();
        let lone = frame(100, 1);
        o.push(lone.clone());
        assert_eq!(o.chunk().map(<[u8]>::as_ptr), Some(lone.as_ptr()));
        o.advance(100);
        let large = frame(3 * COALESCE + 5, 2);
        o.push(frame(10, 3));
        o.push(frame(10, 4));
        o.push(large.clone());
        o.push(frame(10, 5));
        let writes = drain(&mut o, usize::MAX);
        let lens: Vec<usize> = writes.iter().map(Vec::len).collect();
        // Two small ones gathered, the large one in pieces, the last alone.
        assert_eq!(lens, [20, COALESCE, COALESCE, COALESCE, 5, 10]);
        assert_eq!(writes.concat()[20..20 + large.len()], large[..]);
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut o = Outgoing::default();
        let frames: Vec<Bytes> = (0..50).map(|i| frame(1000 + i, i as u8)).collect();
        for f in &frames {
            o.push(f.clone());
        }
        o.push(frame(2 * COALESCE, 9));
        let writes = drain(&mut o, 777);
        assert!(writes.iter().all(|w| w.len() <= 777));
        let mut expected = frames.concat();
        expected.extend(vec![9; 2 * COALESCE]);
        assert_eq!(writes.concat(), expected);
    }

    #[test]
    fn a_drained_connection_keeps_buffers_only_after_a_burst_and_small_writes_shrink_them() {
        let mut o = Outgoing::default();
        for _ in 0..2000 {
            o.push(frame(64, 1));
        }
        // While frames wait, the buffer is kept from one write to the next...
        let mut writes = 0;
        while o.chunk().is_some() {
            assert!(o.gathered.capacity() >= COALESCE - 64);
            o.advance(COALESCE);
            writes += 1;
        }
        assert!(writes > 1);
        // ... and once everything is written, a burst's buffers are kept (for a quiet
        // run or `shrink` to give back)...
        assert!(o.gathered.capacity() >= COALESCE - 64);
        o.shrink();
        assert_eq!((o.gathered.capacity(), o.frames.capacity()), (0, 0));
        // ... and a few frames gathered take one allocation of their size, given back
        // once they are written.
        o.push(frame(64, 1));
        o.push(frame(64, 1));
        assert_eq!(o.chunk().map(<[u8]>::len), Some(128));
        assert_eq!(o.gathered.capacity(), 128);
        o.advance(128);
        assert_eq!(o.chunk(), None);
        assert_eq!(o.gathered.capacity(), 0);
        // Small gathered writes in a row while frames keep waiting shrink it too.
        for _ in 0..2000 {
            o.push(frame(64, 1));
        }
        let mut capacities = Vec::new();
        for _ in 0..40 {
            let n = o.chunk().expect("frames wait").len();
            capacities.push(o.gathered.capacity());
            // Two more frames arrive before this write completes.
            o.push(frame(64, 1));
            o.push(frame(64, 1));
            o.advance(n);
        }
        assert!(capacities[2] >= COALESCE, "kept while frames wait");
        assert!(*capacities.last().unwrap() < COALESCE, "{capacities:?}");
    }
}
