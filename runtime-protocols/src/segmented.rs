//! A list that grows a segment at a time: the check ledgers of `spdz2k` and `mal-rep3`
//! hold millions of entries between checks, and a vector doubling as it grows holds up to
//! twice what it needs, three times while it copies itself into the larger one (issue 21:
//! up to 0.8 GB per party of `spdz2k`'s ledger was that slack).

/// Entries per segment: 8 in the unit tests, so that their ledgers cross segments.
pub(crate) const SEGMENT: usize = if cfg!(test) { 8 } else { 1 << 16 };

/// Entries in order, in vectors of [`SEGMENT`] entries (the last one filling).
pub(crate) struct Segmented<T> {
    segments: Vec<Vec<T>>,
}

impl<T> Default for Segmented<T> {
    fn default() -> Self {
        Segmented {
            segments: Vec::new(),
        }
    }
}

impl<T> Segmented<T> {
    pub fn push(&mut self, v: T) {
        match self.segments.last_mut() {
            Some(last) if last.len() < SEGMENT => last.push(v),
            _ => {
                let mut next = Vec::with_capacity(SEGMENT);
                next.push(v);
                self.segments.push(next);
            }
        }
    }

    /// Every segment but the last is full.
    pub fn len(&self) -> usize {
        self.segments
            .last()
            .map_or(0, |last| (self.segments.len() - 1) * SEGMENT + last.len())
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.segments.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_in_order_in_full_segments() {
        let mut s = Segmented::default();
        let mut want = Vec::new();
        for (i, n) in [3usize, 0, 5, 1, 17, 8, 2].into_iter().enumerate() {
            for v in (0..n as u32).map(|j| 100 * i as u32 + j) {
                s.push(v);
                want.push(v);
            }
        }
        s.push(7);
        want.push(7);
        assert_eq!(s.len(), want.len());
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), want);
        let (last, full) = s.segments.split_last().unwrap();
        assert!(full
            .iter()
            .all(|seg| seg.len() == SEGMENT && seg.capacity() == SEGMENT));
        assert!(!last.is_empty() && last.len() <= SEGMENT);
    }
}
