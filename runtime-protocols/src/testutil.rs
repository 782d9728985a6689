//! Helpers of the protocols' unit tests.

use crate::net::{loopback, Hello, Mesh, NetError, Stats, Timeouts, Transport};
use crate::PartyId;
use std::sync::{Arc, Mutex};

/// Runs `f` in `n` parties, each with its mesh over loopback; returns their results.
pub fn on_mesh<T: Send>(n: usize, protocol: &str, f: impl Fn(PartyId, Mesh) -> T + Sync) -> Vec<T> {
    let (addrs, listeners) = loopback(n).unwrap();
    let hello = Hello {
        program: [7; 32],
        protocol: protocol.into(),
        parties: n,
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let (addrs, hello, f) = (&addrs, &hello, &f);
                s.spawn(move || {
                    f(
                        i,
                        Mesh::with_listener(i, l, addrs, hello, Timeouts::default()).unwrap(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A deterministic spread of test values in `[lo, hi]`, including both ends.
pub fn values(n: usize, lo: i64, hi: i64, seed: u64) -> Vec<i64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let span = (hi as i128 - lo as i128 + 1) as u128;
    let mut v: Vec<i64> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (lo as i128 + (s as u128 % span) as i128) as i64
        })
        .collect();
    if n >= 2 {
        v[0] = lo;
        v[1] = hi;
    }
    v
}

/// Records every byte a party receives.
pub struct Recorder {
    pub inner: Box<dyn Transport>,
    pub seen: Arc<Mutex<Vec<u8>>>,
}

impl Transport for Recorder {
    fn party(&self) -> PartyId {
        self.inner.party()
    }
    fn parties(&self) -> usize {
        self.inner.parties()
    }
    fn exchange(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        let got = self.inner.exchange(out, expect)?;
        let mut seen = self.seen.lock().unwrap();
        for (_, m) in &got {
            seen.extend_from_slice(m);
        }
        Ok(got)
    }
    fn stats(&self) -> Stats {
        self.inner.stats()
    }
    fn abort(&mut self, reason: &str) {
        self.inner.abort(reason)
    }
}

/// The largest |z| over byte positions of the difference of means between two sets of
/// samples. A position constant in both sets with different values is a certain leak.
pub fn max_z(a: &[Vec<u8>], b: &[Vec<u8>]) -> f64 {
    let len = a[0].len();
    assert!(
        a.iter().chain(b).all(|v| v.len() == len),
        "view sizes differ"
    );
    let stats = |s: &[Vec<u8>], j: usize| {
        let n = s.len() as f64;
        let m = s.iter().map(|v| v[j] as f64).sum::<f64>() / n;
        let var = s.iter().map(|v| (v[j] as f64 - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, var, n)
    };
    (0..len)
        .map(|j| {
            let ((ma, va, na), (mb, vb, nb)) = (stats(a, j), stats(b, j));
            let se = (va / na + vb / nb).sqrt();
            if se == 0.0 {
                if ma == mb {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else {
                (ma - mb).abs() / se
            }
        })
        .fold(0.0, f64::max)
}
