//! The view tests' tools: a transport that records what a party receives, seeds that fix a
//! corrupted coalition's keys, and the statistics that decide whether two sets of views
//! (of runs on two different secret inputs) tell the inputs apart. Compiled for the
//! crate's own tests and, with the `view-tests` feature, for the workspace's tests (never
//! in a release build: `CoalitionCoins` fixes keys).

use crate::coins::{os_seed, Coins, KeyId};
use crate::net::{NetError, Stats, Transport};
use crate::{PartyId, ProtocolError};
use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha12Rng;
use std::sync::{Arc, Mutex};

type R<T> = Result<T, ProtocolError>;

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
        // A log poisoned by another thread's panic still holds what was recorded.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
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
    let column = |s: &[Vec<u8>], j: usize| -> Vec<f64> { s.iter().map(|v| v[j] as f64).collect() };
    (0..len)
        .map(|j| welch(&column(a, j), &column(b, j)))
        .fold(0.0, f64::max)
}

/// Seeds for a view test: every key that a party of `coalition` holds is fixed (a function
/// of its name alone, the same in every run), every other key is fresh from the OS. What
/// the coalition receives then varies only through the honest parties' own keys.
pub struct CoalitionCoins {
    pub coalition: Vec<PartyId>,
}

impl Coins for CoalitionCoins {
    fn seed(&self, key: KeyId<'_>) -> R<[u8; 32]> {
        if !key.holders.iter().any(|h| self.coalition.contains(h)) {
            return os_seed();
        }
        // FNV-1a of the name, spread over 32 bytes by ChaCha.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(key.purpose.as_bytes());
        for &p in key.holders {
            eat(&(p as u64).to_le_bytes());
        }
        eat(&(key.index as u64).to_le_bytes());
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&h.to_le_bytes());
        let mut r = ChaCha12Rng::from_seed(seed);
        let mut out = [0u8; 32];
        r.fill_bytes(&mut out);
        Ok(out)
    }
}

/// The views' bytes as little-endian words of `width` bytes (a short tail is dropped).
fn words(v: &[u8], width: usize) -> Vec<u128> {
    v.chunks_exact(width)
        .map(|c| {
            let mut b = [0u8; 16];
            b[..width].copy_from_slice(c);
            u128::from_le_bytes(b)
        })
        .collect()
}

/// Welch's |z| of the difference of means of `a` and `b`; infinite where both are constant
/// and differ, 0 where both are the same constant.
fn welch(a: &[f64], b: &[f64]) -> f64 {
    let stats = |s: &[f64]| {
        let n = s.len() as f64;
        let m = s.iter().sum::<f64>() / n;
        let var = s.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, var / n)
    };
    let ((ma, va), (mb, vb)) = (stats(a), stats(b));
    let se = (va + vb).sqrt();
    if se == 0.0 {
        if ma == mb {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (ma - mb).abs() / se
    }
}

/// What the word-level statistics of two sets of views found.
#[derive(Debug)]
pub struct WordStats {
    /// The largest per-position |z| over words read as unsigned and as signed integers.
    pub max_z: f64,
    /// The word position of `max_z`.
    pub at: usize,
    /// `(Σ z² − V·m)/√(V·v)` over the `V` varying positions (signed reading), `m` and `v`
    /// the mean and variance of the square of a Student t with `ν = runs − 2` degrees of
    /// freedom (with χ²₁'s `1` and `2` instead, the t's heavier tails alone put thousands of
    /// sound 4-byte words at an excess of 6.7 once in a while): a leak spread thinly over
    /// many words (a mask a few bits too narrow) adds up here.
    pub excess: f64,
    /// A pair of positions whose difference is the same in every run of a set but differs
    /// between the sets: one mask used twice on secret-dependent values.
    pub reused: Option<(usize, usize)>,
}

/// Word-level comparison of views `va` and `vb` at `width` bytes per word.
pub fn word_stats(va: &[Vec<u8>], vb: &[Vec<u8>], width: usize) -> WordStats {
    let wa: Vec<Vec<u128>> = va.iter().map(|v| words(v, width)).collect();
    let wb: Vec<Vec<u128>> = vb.iter().map(|v| words(v, width)).collect();
    let len = wa[0].len();
    let bits = 8 * width as u32;
    let modulus = |v: u128| {
        if bits == 128 {
            v
        } else {
            v & ((1u128 << bits) - 1)
        }
    };
    // Words relative to the first run's, so that f64 keeps the low bits of large words
    // that vary little; read unsigned and signed, which wrap at two opposite points.
    let unsigned = |v: u128, base: u128| modulus(v.wrapping_sub(base)) as f64;
    let signed = |v: u128, base: u128| -> f64 {
        let d = modulus(v.wrapping_sub(base));
        if d >> (bits - 1) == 1 {
            -(modulus(d.wrapping_neg()) as f64)
        } else {
            d as f64
        }
    };
    let (mut max_z, mut at, mut sum, mut varying) = (0f64, 0usize, 0f64, 0usize);
    for j in 0..len {
        let base = wa[0][j];
        let ua: Vec<f64> = wa.iter().map(|w| unsigned(w[j], base)).collect();
        let ub: Vec<f64> = wb.iter().map(|w| unsigned(w[j], base)).collect();
        let sa: Vec<f64> = wa.iter().map(|w| signed(w[j], base)).collect();
        let sb: Vec<f64> = wb.iter().map(|w| signed(w[j], base)).collect();
        let (zu, zs) = (welch(&ua, &ub), welch(&sa, &sb));
        let z = zu.max(zs);
        if z > max_z {
            (max_z, at) = (z, j);
        }
        // The signed reading relative to the first run keeps a narrowly spread word in one
        // piece (the unsigned one splits it at the first run's value).
        if zs.is_finite() && (sa.iter().chain(&sb).any(|&v| v != sa[0])) {
            sum += zs * zs;
            varying += 1;
        }
    }
    // E[t²] = ν/(ν−2), Var[t²] = 2ν²(ν−1)/((ν−2)²(ν−4)) for ν > 4 (→ 1 and 2 as ν grows).
    let nu = (va.len() + vb.len()) as f64 - 2.0;
    let (mean_sq, var_sq) = if nu > 4.0 {
        (
            nu / (nu - 2.0),
            2.0 * nu * nu * (nu - 1.0) / ((nu - 2.0).powi(2) * (nu - 4.0)),
        )
    } else {
        (1.0, 2.0)
    };
    let excess = if varying == 0 {
        0.0
    } else {
        (sum - varying as f64 * mean_sq) / (var_sq * varying as f64).sqrt()
    };
    WordStats {
        max_z,
        at,
        excess,
        reused: reused_mask(&wa, &wb, bits),
    }
}

/// Positions `i < j` with `w_i − w_j` constant over the runs of each set, different
/// between the sets. Candidates are positions whose change between the first two runs of
/// a set is the same non-zero amount.
fn reused_mask(wa: &[Vec<u128>], wb: &[Vec<u128>], bits: u32) -> Option<(usize, usize)> {
    let m = |v: u128| {
        if bits == 128 {
            v
        } else {
            v & ((1u128 << bits) - 1)
        }
    };
    let mut groups: std::collections::HashMap<u128, Vec<usize>> = Default::default();
    for (j, (&first, &second)) in wa[0].iter().zip(&wa[1]).enumerate() {
        let d = m(first.wrapping_sub(second));
        if d != 0 {
            groups.entry(d).or_default().push(j);
        }
    }
    let constant = |set: &[Vec<u128>], i: usize, j: usize| -> Option<u128> {
        let d = m(set[0][i].wrapping_sub(set[0][j]));
        set.iter()
            .all(|w| m(w[i].wrapping_sub(w[j])) == d)
            .then_some(d)
    };
    for members in groups.values().filter(|g| g.len() >= 2) {
        for (k, &i) in members.iter().enumerate().take(256) {
            for &j in members[k + 1..].iter().take(256) {
                if let (Some(da), Some(db)) = (constant(wa, i, j), constant(wb, i, j)) {
                    if da != db {
                        return Some((i, j));
                    }
                }
            }
        }
    }
    None
}

/// Whether views `va` (of runs on one input) and `vb` (on another) tell the inputs apart,
/// by bytes and by words of 4, 8 and 16 bytes; the reason where they do.
pub fn views_differ(va: &[Vec<u8>], vb: &[Vec<u8>]) -> Option<String> {
    // Over a few thousand positions the largest |z| of independent samples stays near 4.5.
    const Z: f64 = 6.5;
    let z = max_z(va, vb);
    if z >= Z {
        return Some(format!(
            "a byte's mean depends on the input: max |z| = {z:.1}"
        ));
    }
    for width in [4, 8, 16] {
        let w = word_stats(va, vb, width);
        if w.max_z >= Z {
            return Some(format!(
                "a {width}-byte word's mean depends on the input: max |z| = {:.1} at byte {} of {}",
                w.max_z,
                w.at * width,
                va[0].len()
            ));
        }
        if w.excess >= Z {
            return Some(format!(
                "the {width}-byte words' means depend on the input together: excess {:.1}",
                w.excess
            ));
        }
        if let Some((i, j)) = w.reused {
            return Some(format!(
                "{width}-byte words {i} and {j} differ by an input-dependent constant"
            ));
        }
    }
    None
}

/// Views `va` (of runs on input `xa`) and `vb` (on `xb`) must not tell the inputs apart;
/// and the detector must fire on the same views with the input appended in the clear.
pub fn assert_views_independent(va: &[Vec<u8>], vb: &[Vec<u8>], xa: &[i64], xb: &[i64], who: &str) {
    if let Some(why) = views_differ(va, vb) {
        panic!("{who}: the view depends on the input: {why}");
    }
    let leak = |vs: &[Vec<u8>], x: &[i64]| -> Vec<Vec<u8>> {
        vs.iter()
            .map(|v| [v.clone(), x.iter().map(|&e| e as u8).collect()].concat())
            .collect()
    };
    assert!(views_differ(&leak(va, xa), &leak(vb, xb)).is_some());
}

/// The view tests' power: a toy opening (party 0 sends party 1 its secret `x` plus a mask,
/// in Z_2^32) with the flaws the tests must see, and without.
#[cfg(test)]
mod power {
    use super::*;
    use crate::testutil::{logged, logs, on_mesh};

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Mask {
        /// Uniform over the ring, from a key party 1 does not hold.
        Sound,
        /// Uniform over 4 bits more than `x` has: statistical hiding with 4 bits of slack.
        Slack4,
        /// One mask for two elements (a two-time pad).
        Reused,
        /// From a key party 1 holds.
        ReceiversKey,
    }

    /// Party 1's view of one run on `x` (values in `[0, 256)`), coalition `{1}`'s coins
    /// fixed.
    fn view(x: &[i64], mask: Mask) -> Vec<u8> {
        let coins = CoalitionCoins { coalition: vec![1] };
        let seen = logs(3);
        on_mesh(3, "power", |i, mesh| {
            let mut net = Recorder {
                inner: Box::new(mesh),
                seen: seen[i].clone(),
            };
            let holders: &[PartyId] = if mask == Mask::ReceiversKey {
                &[0, 1]
            } else {
                &[0, 2]
            };
            let mut out = Vec::new();
            if i == 0 {
                let seed = coins
                    .seed(KeyId {
                        purpose: "power",
                        holders,
                        index: 0,
                    })
                    .unwrap();
                let mut rng = ChaCha12Rng::from_seed(seed);
                let mut masks: Vec<u32> = (0..x.len()).map(|_| rng.next_u32()).collect();
                match mask {
                    Mask::Slack4 => masks.iter_mut().for_each(|m| *m %= 1 << 12),
                    Mask::Reused => {
                        let half = x.len() / 2;
                        for k in half..x.len() {
                            masks[k] = masks[k - half];
                        }
                    }
                    Mask::Sound | Mask::ReceiversKey => {}
                }
                let msg: Vec<u8> = x
                    .iter()
                    .zip(&masks)
                    .flat_map(|(&v, &m)| (v as u32).wrapping_add(m).to_le_bytes())
                    .collect();
                out.push((1, msg));
            }
            let expect: &[PartyId] = if i == 1 { &[0] } else { &[] };
            net.exchange(out, expect).unwrap();
        });
        logged(&seen).swap_remove(1)
    }

    fn differ(mask: Mask) -> Option<String> {
        const RUNS: usize = 100;
        // Low values against high ones, every element different between the sets, and the
        // two halves (which the reused mask pairs) related differently in each set.
        let xa: Vec<i64> = (0..256)
            .map(|i| if i < 128 { i % 64 } else { 63 - i % 64 })
            .collect();
        let xb: Vec<i64> = (0..256).map(|i| 255 - i % 64).collect();
        let va: Vec<Vec<u8>> = (0..RUNS).map(|_| view(&xa, mask)).collect();
        let vb: Vec<Vec<u8>> = (0..RUNS).map(|_| view(&xb, mask)).collect();
        views_differ(&va, &vb)
    }

    #[test]
    fn a_sound_mask_passes() {
        assert_eq!(differ(Mask::Sound), None);
    }

    #[test]
    fn a_mask_with_four_bits_of_slack_is_seen() {
        let why = differ(Mask::Slack4).expect("the slack is seen");
        assert!(why.contains("depend"), "{why}");
    }

    #[test]
    fn a_reused_mask_is_seen() {
        let why = differ(Mask::Reused).expect("the reuse is seen");
        assert!(why.contains("input-dependent constant"), "{why}");
    }

    #[test]
    fn a_mask_from_the_receivers_own_key_is_seen() {
        let why = differ(Mask::ReceiversKey).expect("the receiver's key is seen");
        assert!(why.contains("depends on the input"), "{why}");
    }
}
