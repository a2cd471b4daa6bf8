//! The driver's read buffer, sized to the traffic: small while the room is quiet (an
//! idle peer keeps 4 KiB, not 64), doubled by every read that fills it, halved after a
//! run of reads that use less than a quarter of it.

/// Smallest size: heartbeats and handshakes fit many times over.
pub(crate) const MIN: usize = 4 * 1024;
/// Largest size: one read per call of at most this (a socket's burst).
pub(crate) const MAX: usize = 64 * 1024;
/// Consecutive small reads after which the buffer halves.
const SMALL_RUN: u32 = 16;

/// A zeroed buffer of the current size, for `poll_read`.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    /// Reads in a row that used less than a quarter of the buffer.
    small: u32,
}

impl ReadBuf {
    pub(crate) fn new() -> Self {
        ReadBuf {
            buf: vec![0; MIN],
            small: 0,
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
        } else if n < len / 4 && len > MIN {
            self.small += 1;
            if self.small >= SMALL_RUN {
                self.resize(len / 2);
            }
        } else {
            self.small = 0;
        }
    }

    fn resize(&mut self, len: usize) {
        // A fresh allocation (not `resize`): a shrunk buffer gives its memory back.
        self.buf = vec![0; len.clamp(MIN, MAX)];
        self.small = 0;
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
        assert_eq!(b.space().len(), MIN);
    }
}
