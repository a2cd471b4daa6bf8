//! Buffers sized to the traffic. The driver's read buffer is small while the room is
//! quiet (an idle peer keeps 4 KiB, not 64), doubled by every read that fills it, and
//! halved after a run of reads that use less than a quarter of it ([`SmallRun`], which
//! also tells a writer when to give its coalescing buffer back).

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

/// A zeroed buffer of the current size, for `poll_read`.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    small: SmallRun,
}

impl ReadBuf {
    pub(crate) fn new() -> Self {
        ReadBuf {
            buf: vec![0; MIN],
            small: SmallRun::default(),
        }
    }

    /// The buffer to read into.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The first `n` bytes, as the last read filled them.
    pub(crate) fn filled(&self, n: usize) -> &[u8] {
        &self.buf[..n]
    }

    /// A read of `n` bytes happened: resize for the next one. Call after the bytes
    /// were used.
    pub(crate) fn read(&mut self, n: usize) {
        let len = self.buf.len();
        if n == len && len < MAX {
            self.resize(len * 2);
        } else if len > MIN && self.small.shrink(n, len) {
            self.resize(len / 2);
        }
    }

    fn resize(&mut self, len: usize) {
        // A fresh allocation (not `resize`): a shrunk buffer gives its memory back.
        self.buf = vec![0; len.clamp(MIN, MAX)];
        self.small.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_reads_double_it_up_to_the_maximum() {
        let mut b = ReadBuf::new();
        assert_eq!(b.space().len(), MIN);
        let mut sizes = vec![b.space().len()];
        for _ in 0..8 {
            let n = b.space().len();
            b.read(n);
            sizes.push(b.space().len());
        }
        assert_eq!(
            sizes,
            [4, 8, 16, 32, 64, 64, 64, 64, 64]
                .map(|k| k * 1024)
                .to_vec()
        );
    }

    #[test]
    fn a_run_of_small_reads_halves_it_down_to_the_minimum_and_a_large_one_resets_the_run() {
        let mut b = ReadBuf::new();
        while b.space().len() < MAX {
            let n = b.space().len();
            b.read(n);
        }
        for _ in 0..SMALL_RUN - 1 {
            b.read(100);
        }
        // A read of half the buffer: not small, the run starts again.
        b.read(MAX / 2);
        for _ in 0..SMALL_RUN - 1 {
            b.read(100);
        }
        assert_eq!(
            b.space().len(),
            MAX,
            "no run of {SMALL_RUN} small reads yet"
        );
        b.read(100);
        assert_eq!(b.space().len(), MAX / 2);
        for _ in 0..10 * SMALL_RUN {
            b.read(100);
        }
        assert_eq!(b.space().len(), MIN);
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
