//! [`Outgoing`]: what one connection still has to write. The driver writes every
//! socket itself, as it reads them: frames routed to a connection wait here until the
//! socket takes them. A write takes at most [`COALESCE`] bytes. Runs of small frames
//! are gathered (copied) into one buffer; every other frame is written from its own
//! buffer (no copy): a large one in pieces, and, when the socket takes vectored writes,
//! several frames (and a gathered run) in one write of up to [`MAX_SLICES`] slices.

use std::{collections::VecDeque, io::IoSlice};

use bytes::{Buf, Bytes};

use crate::readbuf::{self, SmallRun};

/// Most bytes handed to one write call.
pub(crate) const COALESCE: usize = 64 * 1024;
/// Most slices handed to one vectored write.
pub(crate) const MAX_SLICES: usize = 64;
/// Without vectored writes, frames at least this large are written from their own
/// buffer, never gathered.
const LARGE: usize = COALESCE / 2;
/// With vectored writes, frames at least this large are written from their own
/// buffer, never gathered: copying a smaller one costs less than a slice of its own.
const SMALL: usize = 1024;
/// A gathered write at least this large is a burst's: its buffers are kept once the
/// queue drains.
const BURST: usize = COALESCE / 2;

/// A connection's frames not yet written.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Frames not yet written, in order, after the gathered run; the first may have
    /// been written in part (it is advanced past what was written).
    frames: VecDeque<Bytes>,
    /// Small frames gathered for one write, written up to `at`; they go before
    /// `frames`.
    gathered: Vec<u8>,
    at: usize,
    /// Gathered writes in a row that used little of the buffer: it shrinks.
    small: SmallRun,
    /// The socket takes vectored writes.
    vectored: bool,
}

impl Outgoing {
    /// An empty queue for a socket that takes vectored writes (`vectored`) or not.
    pub(crate) fn new(vectored: bool) -> Self {
        Outgoing {
            frames: VecDeque::new(),
            gathered: Vec::new(),
            at: 0,
            small: SmallRun::default(),
            vectored,
        }
    }

    /// Queues a frame after the others.
    pub(crate) fn push(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.frames.push_back(frame);
        }
    }

    /// Nothing left to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.at == self.gathered.len() && self.frames.is_empty()
    }

    /// Fills `slices` with the bytes of the next write, in order (at most
    /// [`COALESCE`] bytes; one slice unless the socket takes vectored writes) and
    /// returns how many it filled: 0 when everything was written. What the write took
    /// is then [`advance`](Self::advance)d.
    pub(crate) fn slices<'a>(&'a mut self, slices: &mut [IoSlice<'a>]) -> usize {
        if self.at == self.gathered.len() {
            self.refill();
        }
        let this: &'a Outgoing = self;
        let max = if this.vectored { slices.len() } else { 1 };
        let (mut n, mut total) = (0, 0);
        if this.at < this.gathered.len() && max > 0 {
            slices[0] = IoSlice::new(&this.gathered[this.at..]);
            (n, total) = (1, this.gathered.len() - this.at);
        }
        for frame in &this.frames {
            if n == max || total == COALESCE {
                break;
            }
            if total + frame.len() > COALESCE && this.gathers(frame) && n > 0 {
                // A small frame is not split to fill a write: it starts the next run.
                break;
            }
            let take = frame.len().min(COALESCE - total);
            slices[n] = IoSlice::new(&frame[..take]);
            n += 1;
            total += take;
        }
        n
    }

    /// The last write took `n` bytes of the [`slices`](Self::slices).
    pub(crate) fn advance(&mut self, mut n: usize) {
        let gathered = n.min(self.gathered.len() - self.at);
        self.at += gathered;
        n -= gathered;
        while n > 0 {
            let Some(front) = self.frames.front_mut() else {
                break;
            };
            if n < front.len() {
                front.advance(n);
                break;
            }
            n -= front.len();
            self.frames.pop_front();
        }
    }

    /// Gives back the capacity a burst left (while nothing waits).
    pub(crate) fn shrink(&mut self) {
        if self.is_empty() {
            *self = Outgoing::new(self.vectored);
        }
    }

    /// Below this size a frame is gathered.
    fn gathers(&self, frame: &Bytes) -> bool {
        frame.len() < if self.vectored { SMALL } else { LARGE }
    }

    /// The gathered run is written: the next run of small frames at the front (two or
    /// more that fit in one write) is gathered; a frame alone, or one too large, is
    /// written from its own buffer.
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
        if self.frames.is_empty() {
            // Everything is written: a connection that waits keeps no gathering buffer
            // (an idle room's connections are many; the next gathered write allocates
            // once), unless its last gathered write was a burst's (a throughput run
            // drains its queue often): that one is kept while the burst lasts, and
            // given back by a quiet run ([`shrink`](Self::shrink)), as is the queue.
            if used < BURST {
                self.gathered = Vec::new();
            }
            return;
        }
        let run = self
            .frames
            .iter()
            .take_while(|f| self.gathers(f))
            .scan(0, |len, f| {
                *len += f.len();
                (*len <= COALESCE).then_some(*len)
            });
        let (count, len) = run.fold((0, 0), |(count, _), len| (count + 1, len));
        if count < 2 {
            return;
        }
        if self.gathered.capacity() == 0 {
            // One allocation for this write: the frames it will take.
            self.gathered.reserve_exact(len);
        }
        for frame in self.frames.drain(..count) {
            self.gathered.extend_from_slice(&frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next write's slices, as (address, length): nothing is advanced.
    fn next(o: &mut Outgoing) -> Vec<(usize, usize)> {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = o.slices(&mut slices);
        slices[..n]
            .iter()
            .map(|s| (s.as_ptr() as usize, s.len()))
            .collect()
    }

    /// One write that takes at most `max` bytes: its bytes (advanced past), or `None`
    /// when everything was written.
    fn write(o: &mut Outgoing, max: usize) -> Option<Vec<u8>> {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = o.slices(&mut slices);
        if n == 0 {
            return None;
        }
        let mut took = Vec::new();
        for s in &slices[..n] {
            let k = s.len().min(max - took.len());
            took.extend_from_slice(&s[..k]);
        }
        o.advance(took.len());
        Some(took)
    }

    /// Writes everything, `max` bytes per write at most: the writes.
    fn drain(o: &mut Outgoing, max: usize) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| write(o, max)).collect()
    }

    fn frame(len: usize, byte: u8) -> Bytes {
        Bytes::from(vec![byte; len])
    }

    fn lens(writes: &[Vec<u8>]) -> Vec<usize> {
        writes.iter().map(Vec::len).collect()
    }

    #[test]
    fn small_frames_are_gathered_into_writes_of_at_most_coalesce_bytes() {
        for vectored in [false, true] {
            let mut o = Outgoing::new(vectored);
            let frames: Vec<Bytes> = (0..3000).map(|i| frame(68, i as u8)).collect();
            for f in &frames {
                o.push(f.clone());
            }
            // One slice, the gathered run: as many whole frames as fit (a small frame
            // is not split to fill a write).
            assert_eq!(
                next(&mut o).iter().map(|s| s.1).collect::<Vec<_>>(),
                [COALESCE / 68 * 68]
            );
            let writes = drain(&mut o, usize::MAX);
            assert!(writes.iter().all(|w| w.len() <= COALESCE));
            assert_eq!(writes.len(), (3000 * 68usize).div_ceil(COALESCE / 68 * 68));
            assert_eq!(writes.concat(), frames.concat(), "every byte, in order");
            assert!(o.is_empty());
        }
    }

    #[test]
    fn a_lone_frame_or_a_large_one_is_written_from_its_own_buffer() {
        for vectored in [false, true] {
            let mut o = Outgoing::new(vectored);
            let lone = frame(100, 1);
            o.push(lone.clone());
            assert_eq!(next(&mut o), [(lone.as_ptr() as usize, 100)]);
            o.advance(100);
            assert!(o.is_empty());
            let large = frame(3 * COALESCE + 5, 2);
            o.push(frame(10, 3));
            o.push(frame(10, 4));
            o.push(large.clone());
            o.push(frame(10, 5));
            let first = next(&mut o);
            // The two small ones gathered, then the large one from its own buffer
            // (in the same write when the socket takes vectored writes).
            assert_eq!(first[0].1, 20);
            assert_ne!(first[0].0, large.as_ptr() as usize);
            if vectored {
                assert_eq!(first[1], (large.as_ptr() as usize, COALESCE - 20));
            } else {
                assert_eq!(first.len(), 1);
            }
            let writes = drain(&mut o, usize::MAX);
            let expected: &[usize] = match vectored {
                // The large one's last 5 bytes and the last frame are a run of two.
                false => &[20, COALESCE, COALESCE, COALESCE, 5 + 10],
                true => &[COALESCE, COALESCE, COALESCE, 25 + 10],
            };
            assert_eq!(lens(&writes), expected);
            let all = writes.concat();
            assert_eq!(all[20..20 + large.len()], large[..]);
            assert_eq!(all[..20], [[3; 10], [4; 10]].concat());
            assert_eq!(all[20 + large.len()..], [5; 10]);
        }
    }

    #[test]
    fn with_vectored_writes_frames_of_a_kilobyte_and_more_are_never_copied() {
        let frames: Vec<Bytes> = (0..40).map(|i| frame(4096, i as u8)).collect();
        let mut o = Outgoing::new(true);
        for f in &frames {
            o.push(f.clone());
        }
        // Sixteen frames per write, each a slice of its own buffer.
        let slices = next(&mut o);
        let own: Vec<(usize, usize)> = frames[..16]
            .iter()
            .map(|f| (f.as_ptr() as usize, f.len()))
            .collect();
        assert_eq!(slices, own);
        assert_eq!(o.gathered.capacity(), 0, "nothing gathered");
        let writes = drain(&mut o, usize::MAX);
        assert_eq!(lens(&writes), [COALESCE, COALESCE, 8 * 4096]);
        assert_eq!(writes.concat(), frames.concat());
        // Without vectored writes they are gathered: one slice, a copy.
        let mut o = Outgoing::new(false);
        for f in &frames {
            o.push(f.clone());
        }
        let slices = next(&mut o);
        assert_eq!(slices.len(), 1);
        assert_ne!(slices[0].0, frames[0].as_ptr() as usize);
        assert_eq!(drain(&mut o, usize::MAX).concat(), frames.concat());
    }

    #[test]
    fn a_vectored_write_takes_at_most_max_slices() {
        let mut o = Outgoing::new(true);
        let frames: Vec<Bytes> = (0..200)
            .map(|i| match i % 2 {
                0 => frame(2000, i as u8),
                _ => frame(10, i as u8),
            })
            .collect();
        for f in &frames {
            o.push(f.clone());
        }
        // No run of two small frames: every frame is a slice of its own, and 64 of
        // them (64,320 bytes) fill a write before COALESCE does.
        let slices = next(&mut o);
        assert_eq!(slices.len(), MAX_SLICES);
        assert!(slices.iter().map(|s| s.1).sum::<usize>() < COALESCE);
        let writes = drain(&mut o, usize::MAX);
        assert_eq!(writes.concat(), frames.concat());
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        for vectored in [false, true] {
            let mut o = Outgoing::new(vectored);
            // Below and above the vectored gathering size, and a large one.
            let frames: Vec<Bytes> = (0..50).map(|i| frame(1000 + i, i as u8)).collect();
            for f in &frames {
                o.push(f.clone());
            }
            o.push(frame(2 * COALESCE, 9));
            for max in [777, 1, 5000] {
                if max == 1 {
                    // A few bytes at a time through the first frames.
                    for _ in 0..3000 {
                        write(&mut o, max);
                    }
                    continue;
                }
                let writes = drain(&mut o, max);
                assert!(writes.iter().all(|w| w.len() <= max));
                let mut expected = frames.concat();
                expected.extend(vec![9; 2 * COALESCE]);
                assert_eq!(
                    writes.concat(),
                    expected[expected.len() - writes.concat().len()..]
                );
                assert!(o.is_empty());
                for f in &frames {
                    o.push(f.clone());
                }
                o.push(frame(2 * COALESCE, 9));
            }
            let mut expected = frames.concat();
            expected.extend(vec![9; 2 * COALESCE]);
            let mut all = Vec::new();
            while let Some(w) = write(&mut o, 777) {
                all.extend(w);
            }
            assert_eq!(all, expected);
        }
    }

    #[test]
    fn a_drained_connection_keeps_buffers_only_after_a_burst_and_small_writes_shrink_them() {
        let mut o = Outgoing::new(false);
        for _ in 0..2000 {
            o.push(frame(64, 1));
        }
        // While frames wait, the buffer is kept from one write to the next...
        let mut writes = 0;
        while !next(&mut o).is_empty() {
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
        assert_eq!(next(&mut o).iter().map(|s| s.1).sum::<usize>(), 128);
        assert_eq!(o.gathered.capacity(), 128);
        o.advance(128);
        assert!(next(&mut o).is_empty());
        assert_eq!(o.gathered.capacity(), 0);
        // Small gathered writes in a row while frames keep waiting shrink it too.
        for _ in 0..2000 {
            o.push(frame(64, 1));
        }
        let mut capacities = Vec::new();
        for _ in 0..40 {
            let n: usize = next(&mut o).iter().map(|s| s.1).sum();
            assert!(n > 0, "frames wait");
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
