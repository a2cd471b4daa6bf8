//! Buffers sized to the traffic. The driver's read buffer is small while the room is
//! quiet (an idle peer keeps 4 KiB, not 64), doubled by every read that fills it, and
//! halved after a run of reads that use less than a quarter of it ([`SmallRun`], which
//! also tells a connection when to give its write buffer back).
//!
//! A runtime that reads into a buffer's spare capacity
//! ([`Runtime::READS_SPARE`](crate::Runtime::READS_SPARE)) gets fresh buffers as they
//! come from the allocator; for any other, each new buffer is zeroed once (a
//! `poll_read` takes initialised bytes) and read into until its tail is short.

use bytes::{Bytes, BytesMut};

/// Smallest size: heartbeats and handshakes fit many times over.
pub(crate) const MIN: usize = 4 * 1024;
/// Largest size: one read per call of at most this (a socket's burst).
pub(crate) const MAX: usize = 64 * 1024;
/// Consecutive small uses after which a buffer shrinks.
const SMALL_RUN: u32 = 16;

/// Counts the uses in a row of a buffer that needed less than a quarter of it.
#[derive(Debug, Default)]
pub(crate) struct SmallRun(u32);

impl SmallRun {
    /// `used` bytes of a buffer of `size` were used: whether the buffer has been too
    /// large long enough to shrink (the run then starts again).
    pub(crate) fn shrink(&mut self, used: usize, size: usize) -> bool {
        if used >= size / 4 {
            self.0 = 0;
            return false;
        }
        self.0 += 1;
        if self.0 < SMALL_RUN {
            return false;
        }
        self.0 = 0;
        true
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// The driver's read buffer. Reads are handed out as [`Bytes`] slices of it (the
/// machine decodes payloads as slices of those, without copying); a read goes into the
/// unused tail of the current allocation while a quarter of the current size is left,
/// then into a new allocation (the old one lives on in the slices handed out, and is
/// freed with the last of them).
#[derive(Debug)]
pub(crate) struct ReadBuf {
    /// Zeroed: the bytes to read into (`len`); spare: nothing (`len` 0), the capacity
    /// to read into.
    buf: BytesMut,
    /// The size of a new allocation.
    size: usize,
    small: SmallRun,
    /// Reads go into the spare capacity: new buffers are not zeroed.
    spare: bool,
}

impl ReadBuf {
    /// A buffer for reads into initialised bytes ([`space`](Self::space)), or, with
    /// `spare`, into spare capacity ([`spare`](Self::spare)).
    pub(crate) fn new(spare: bool) -> Self {
        ReadBuf {
            buf: fresh(MIN, spare),
            size: MIN,
            small: SmallRun::default(),
            spare,
        }
    }

    /// The buffer to read into (zeroed or earlier bytes: never uninitialised).
    pub(crate) fn space(&mut self) -> &mut [u8] {
        debug_assert!(!self.spare);
        if self.buf.len() < self.size / 4 {
            self.buf = fresh(self.size, false);
        }
        &mut self.buf
    }

    /// The buffer whose spare capacity a read appends to (empty, at least a quarter of
    /// the size to spare).
    pub(crate) fn spare(&mut self) -> &mut BytesMut {
        debug_assert!(self.spare && self.buf.is_empty());
        if self.buf.capacity() < self.size / 4 {
            self.buf = fresh(self.size, true);
        }
        &mut self.buf
    }

    /// The first `n` bytes of [`space`](Self::space) (or the `n` bytes appended to
    /// [`spare`](Self::spare)), as the last read filled them, taken out; the buffer then
    /// adapts its size for the next reads.
    pub(crate) fn take(&mut self, n: usize) -> Bytes {
        let full = n == self.size;
        let bytes = self.buf.split_to(n).freeze();
        if full && self.size < MAX {
            self.resize(self.size * 2);
        } else if self.size > MIN && self.small.shrink(n, self.size) {
            self.resize(self.size / 2);
        }
        bytes
    }

    fn resize(&mut self, size: usize) {
        self.size = size.clamp(MIN, MAX);
        // A fresh allocation: a shrunk buffer gives its memory back (once the slices
        // handed out are gone).
        self.buf = fresh(self.size, self.spare);
        self.small.reset();
    }
}

/// A new read buffer of `size` bytes: zeroed, or (`spare`) capacity only.
fn fresh(size: usize, spare: bool) -> BytesMut {
    match spare {
        true => BytesMut::with_capacity(size),
        false => BytesMut::zeroed(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that fills what `space` offers.
    fn fill(b: &mut ReadBuf) -> Bytes {
        let n = b.space().len();
        b.take(n)
    }

    #[test]
    fn full_reads_double_it_up_to_the_maximum() {
        let mut b = ReadBuf::new(false);
        assert_eq!(b.space().len(), MIN);
        let sizes: Vec<usize> = (0..8).map(|_| fill(&mut b).len()).collect();
        assert_eq!(
            sizes,
            [4, 8, 16, 32, 64, 64, 64, 64].map(|k| k * 1024).to_vec()
        );
    }

    #[test]
    fn reads_are_slices_of_one_allocation_until_its_tail_is_short() {
        let mut b = ReadBuf::new(false);
        b.space()[..3].copy_from_slice(b"abc");
        let first = b.take(3);
        b.space()[..2].copy_from_slice(b"de");
        let second = b.take(2);
        assert_eq!((&first[..], &second[..]), (&b"abc"[..], &b"de"[..]));
        assert_eq!(
            second.as_ptr() as usize,
            first.as_ptr() as usize + 3,
            "the next read went into the tail"
        );
        assert_eq!(b.space().len(), MIN - 5);
        // Less than a quarter left: a new allocation of the full size.
        b.take(MIN - 5 - MIN / 4 + 1);
        assert_eq!(b.space().len(), MIN);
        assert_eq!(&first[..], b"abc", "slices handed out are kept");
    }

    #[test]
    fn a_run_of_small_reads_halves_it_down_to_the_minimum_and_a_large_one_resets_the_run() {
        let mut b = ReadBuf::new(false);
        while b.size < MAX {
            fill(&mut b);
        }
        for _ in 0..SMALL_RUN - 1 {
            b.take(100);
        }
        // A read of half the size: not small, the run starts again.
        b.space();
        b.take(MAX / 2);
        for _ in 0..SMALL_RUN - 1 {
            b.space();
            b.take(100);
        }
        assert_eq!(b.size, MAX, "no run of {SMALL_RUN} small reads yet");
        b.take(100);
        assert_eq!(b.size, MAX / 2);
        assert_eq!(b.space().len(), MAX / 2, "a shrunk buffer is a new one");
        for _ in 0..10 * SMALL_RUN {
            b.space();
            b.take(100);
        }
        assert_eq!(b.size, MIN);
    }

    /// A read that appends `bytes` to what `spare` offers.
    fn append(b: &mut ReadBuf, bytes: &[u8]) -> Bytes {
        b.spare().extend_from_slice(bytes);
        b.take(bytes.len())
    }

    #[test]
    fn spare_reads_are_slices_of_one_allocation_sized_like_zeroed_ones() {
        let mut b = ReadBuf::new(true);
        assert_eq!((b.spare().len(), b.spare().capacity()), (0, MIN));
        let first = append(&mut b, b"abc");
        let second = append(&mut b, b"de");
        assert_eq!((&first[..], &second[..]), (&b"abc"[..], &b"de"[..]));
        assert_eq!(second.as_ptr() as usize, first.as_ptr() as usize + 3);
        assert_eq!(b.spare().capacity(), MIN - 5);
        // Less than a quarter left: a new allocation of the full size.
        append(&mut b, &vec![1; MIN - 5 - MIN / 4 + 1]);
        assert_eq!(b.spare().capacity(), MIN);
        assert_eq!(&first[..], b"abc", "slices handed out are kept");
        // Full reads double it, as with zeroed buffers.
        let sizes: Vec<usize> = (0..5)
            .map(|_| {
                let n = b.spare().capacity();
                append(&mut b, &vec![2; n]).len()
            })
            .collect();
        assert_eq!(sizes, [4, 8, 16, 32, 64].map(|k| k * 1024).to_vec());
        assert!(b.spare().is_empty());
    }

    #[test]
    fn a_small_run_says_shrink_once_per_run() {
        let mut run = SmallRun::default();
        let says: Vec<bool> = (0..2 * SMALL_RUN).map(|_| run.shrink(1, 1024)).collect();
        let at: Vec<usize> = (0..says.len()).filter(|&i| says[i]).collect();
        assert_eq!(at, [SMALL_RUN as usize - 1, 2 * SMALL_RUN as usize - 1]);
        assert!(!run.shrink(256, 1024), "a quarter is not small");
    }
}
