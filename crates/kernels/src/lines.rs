//! Reusable buffers whose contents start on a cache line.
//!
//! The kernels read activations and per-block scales 32 bytes at a time. A
//! `Vec` only promises its element type's alignment, so half of those loads
//! (and of the stores that fill the scale tables) would straddle two cache
//! lines, which costs an extra cycle each and defeats store-to-load
//! forwarding. [`LineBuf`] keeps a little slack in front and hands out the
//! part that starts on a 64-byte boundary.

/// Bytes per cache line.
const LINE: usize = 64;

/// A growable buffer of `T` whose visible part starts on a cache line.
#[derive(Debug, Clone)]
pub(crate) struct LineBuf<T> {
    raw: Vec<T>,
    len: usize,
}

impl<T> Default for LineBuf<T> {
    fn default() -> Self {
        LineBuf {
            raw: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Copy + Default> LineBuf<T> {
    /// Elements of slack in front: enough to reach any line boundary.
    const SLACK: usize = LINE / std::mem::size_of::<T>();

    /// Where the visible part starts in `raw` (the same until `raw` grows).
    fn start(&self) -> usize {
        if self.raw.is_empty() {
            return 0;
        }
        self.raw.as_ptr().align_offset(LINE).min(Self::SLACK)
    }

    /// Makes the visible part at least `len` long (it never shrinks); what it
    /// held before is unspecified afterwards.
    pub fn grow_to(&mut self, len: usize) {
        if len > self.len {
            self.raw.resize(len + Self::SLACK, T::default());
            self.len = len;
        }
    }

    /// The visible part made exactly `len` long, holding whatever it held
    /// (for a caller that writes all of it).
    pub fn resized(&mut self, len: usize) -> &mut [T] {
        if self.raw.len() < len + Self::SLACK {
            self.raw.resize(len + Self::SLACK, T::default());
        }
        self.len = len;
        self.as_mut_slice()
    }

    /// The visible part made exactly `len` long and filled with the default.
    pub fn cleared(&mut self, len: usize) -> &mut [T] {
        let s = self.resized(len);
        s.fill(T::default());
        s
    }

    pub fn as_slice(&self) -> &[T] {
        let s = self.start();
        &self.raw[s..s + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let s = self.start();
        &mut self.raw[s..s + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_start_on_a_line_and_keep_their_length() {
        let mut b = LineBuf::<f32>::default();
        assert!(b.as_slice().is_empty() && b.cleared(0).is_empty());
        for len in [1, 7, 100, 3, 1000] {
            b.grow_to(len);
            assert!(b.as_slice().len() >= len);
            assert_eq!(b.as_slice().as_ptr() as usize % LINE, 0);
            let c = b.cleared(len);
            assert_eq!(c.len(), len);
            assert!(c.iter().all(|&x| x == 0.0));
            assert_eq!(c.as_ptr() as usize % LINE, 0);
        }
        let mut q = LineBuf::<i8>::default();
        q.grow_to(640);
        q.as_mut_slice()[639] = 5;
        assert_eq!(q.as_slice()[639], 5);
        // Resizing keeps the line start and, within the old length, the contents.
        assert_eq!(q.resized(640)[639], 5);
        assert_eq!(q.as_slice().as_ptr() as usize % LINE, 0);
        assert_eq!(q.as_slice().as_ptr() as usize % LINE, 0);
    }
}
