//! `clamp(round_half_even(x·num/d) + zp, lo, hi)` element-wise for additive shares among
//! `n` parties, with the dealer's help: the one nonlinear primitive of `semi2k`. Rescale,
//! clamp, max and argmax are special cases of it (see [`crate::func`]).
//!
//! With `x ∈ [x_lo, x_hi]`, `y = x − x_lo < 2^ℓ` and `m = ℓ + 1`:
//!
//! 1. *open* (1 round): every party broadcasts its share of `y + r mod 2^m`, so all learn
//!    `c = y + r mod 2^m`; `r` is the dealer's. As `y < 2^(m−1)`, `y = c − r'` with the
//!    reading `r' = r` when `c`'s top bit is set and `r' = r − r_{m−1}·2^m` otherwise.
//!    Then `x·num + ⌊d/2⌋ = P − Q` with `P = (c + x_lo)·num + ⌊d/2⌋` public and
//!    `Q = r'·num` the dealer's, so `⌊(x·num + ⌊d/2⌋)/d⌋ = H − Q_h − [P_l < Q_l]` (`H`,
//!    `Q_h` quotients and `P_l`, `Q_l` remainders by `d`). Round-half-even takes one more
//!    off at a tie (`P_l = Q_l`, even `d`) with an odd quotient (`H_0 ⊕ Q_{h,0}`): both go
//!    into one borrow `β`, a comparison of `2·P_l + H_0` with the dealer's tables of `Q_l`
//!    whose lowest chunk also knows the parity. The clamp tests are `[y ≥ T]` for two
//!    public thresholds `T` (the result is non-decreasing in `x`), i.e.
//!    `1 ⊕ a_{m−1} ⊕ r_{m−1} ⊕ [a' < r']` with `a = c − T mod 2^m` and primes for the low
//!    `m − 1` bits.
//! 2. *compare* (`log2` of the chunk count rounds): every comparison is a lookup of public
//!    chunks in the dealer's XOR-shared tables (`[v < chunk_j]` for every `v`), and a tree
//!    of Beaver ANDs combines the chunks, most significant first; all comparisons of all
//!    elements are lanes of one tree.
//! 3. *open bits* (1 round): the parties open `g_mid ⊕ e_1`, `β ⊕ e_2`, `g_hi ⊕ e_3` (`e`
//!    the dealer's random bits) and compute additive shares of
//!    `lo + g_mid·(H + zp − lo − Q_h − β) + g_hi·(hi − lo)` from the dealer's shares of `e_1`,
//!    `e_2`, `e_3`, `e_1·e_2`, `Q_h` and `e_1·Q_h` (of both readings of the mask).
//!
//! A comparison whose outcome is public for every element (a threshold outside the
//! bounds, a denominator of 1) is not computed, and a selector bit that is public is not
//! opened. Every value a party sees is masked: `c` by `r`, tree openings by the triples,
//! the opened bits by `e`.

use super::prep::{random_bits, Block, Layout};
use super::Semi2k;
use crate::bitvec::{
    and, bit_bytes, bits_at, bits_of, concat, get, low_mask as mask, or_bits, pack, part, set,
    split, unpack, words, xor,
};
use crate::borrow::{BorrowChunks, Readings, MAX_CHUNK};
use crate::cost::{Round, Rounds};
use crate::stream::Stream;
use crate::word::Word;
use crate::{Bounds, ProtocolError, Requant};

type R<T> = Result<T, ProtocolError>;

/// Ring words the dealer shares per element: `r`, `e_1`, `e_2`, `e_3`, `e_1·e_2`, then
/// `Q_h` and `e_1·Q_h` for the readings `r` and `r − r_{m−1}·2^m`.
const WORDS: usize = 9;

/// A comparison of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    Borrow,
    Lo,
    Hi,
}

/// Public parameters of one call.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Bits of the opening `c`.
    pub(crate) m: u32,
    /// Comparisons the tree computes, in lane order.
    pub(crate) lanes: Vec<Lane>,
    /// Chunk widths of the threshold comparisons (`m − 1` bits), least significant first.
    pub(crate) t_chunks: Vec<u32>,
    /// The borrow comparison's chunks (the parity, then the remainder's bits) and their
    /// tables for the two readings of the mask.
    pub(crate) borrow: BorrowChunks,
    /// Units of every tree (a power of two).
    pub(crate) units: usize,
    /// `(T_lo, T_hi)` per element, in `y`-space.
    pub(crate) thresholds: Vec<(u64, u64)>,
}

impl Plan {
    /// The plan of `q` on values in `b` for a core in `domain`; fails where the opening
    /// would not fit the ring (or 64 bits).
    pub fn new(q: &Requant, b: Bounds, domain: crate::func::Domain) -> R<Plan> {
        let (ring_bits, ring) = match domain {
            crate::func::Domain::Ring { bits } => (bits, format!("Z_2^{bits}")),
            crate::func::Domain::Field { bits, .. } => (bits, "the field".to_string()),
        };
        if b.lo > b.hi {
            return Err(ProtocolError::Invalid(format!(
                "empty bounds [{}, {}]",
                b.lo, b.hi
            )));
        }
        if q.num.iter().any(|&v| !(0..=1 << 62).contains(&v)) || q.den.iter().any(|&d| d < 1) {
            return Err(ProtocolError::Invalid(
                "a selection needs multipliers in [0, 2^62] and positive denominators".into(),
            ));
        }
        let span = (b.hi as i128 - b.lo as i128) as u128;
        let bits = bits_of(span).max(1);
        let m = bits + 1;
        if m > ring_bits.min(64) {
            return Err(ProtocolError::Invalid(format!(
                "values of {bits} bits do not fit a masked opening in {ring}"
            )));
        }
        let thresholds = q.y_thresholds(b, bits);
        let varies = |t: u64| t > 0 && t as u128 <= span;
        let mut lanes = Vec::new();
        if q.den.iter().any(|&d| d > 1) {
            lanes.push(Lane::Borrow);
        }
        if thresholds.iter().any(|&(t, _)| varies(t)) {
            lanes.push(Lane::Lo);
        }
        if thresholds.iter().any(|&(_, t)| varies(t)) {
            lanes.push(Lane::Hi);
        }
        let d_bits = q
            .den
            .iter()
            .map(|&d| bits_of(d as u128 - 1))
            .max()
            .unwrap_or(0);
        // Power-of-two divisors (1 included) let most borrow chunks share a table.
        let readings = if q.den.iter().all(|&d| d.count_ones() == 1) {
            Readings::PowerOfTwo
        } else {
            Readings::Apart
        };
        let need = |t: u32| t.div_ceil(MAX_CHUNK).next_power_of_two() as usize;
        let mut units = 1;
        for l in &lanes {
            units = units.max(match l {
                Lane::Borrow => need(d_bits + 1),
                _ => need(m - 1),
            });
        }
        Ok(Plan {
            m,
            t_chunks: split(m - 1, units),
            borrow: BorrowChunks::new(d_bits, m, units, readings, MAX_CHUNK),
            units,
            lanes,
            thresholds,
        })
    }

    pub(crate) fn has(&self, l: Lane) -> bool {
        self.lanes.contains(&l)
    }

    /// Whether some element has a denominator above 1.
    pub fn rounds(&self) -> bool {
        self.has(Lane::Borrow)
    }

    /// `(T_lo, T_hi)` per element, in `y`-space.
    pub fn thresholds(&self) -> &[(u64, u64)] {
        &self.thresholds
    }

    /// Whether some threshold depends on the secret.
    pub fn has_thresholds(&self) -> bool {
        self.has(Lane::Lo) || self.has(Lane::Hi)
    }

    /// Which selector bits are secret and get opened: `g_mid`, `β`, `g_hi`.
    pub(crate) fn opened(&self) -> [bool; 3] {
        [
            self.has_thresholds(),
            self.has(Lane::Borrow),
            self.has(Lane::Hi),
        ]
    }

    pub(crate) fn opened_count(&self) -> usize {
        self.opened().iter().filter(|&&o| o).count()
    }

    /// Whether the call needs no communication: no secret selector, every `d = 1`.
    pub fn is_local(&self) -> bool {
        self.lanes.is_empty()
    }

    /// `(g_mid, g_hi)` of element `i` when both are public.
    pub fn public_selectors(&self, i: usize) -> (bool, bool) {
        let (t_lo, t_hi) = self.thresholds[i];
        let hi = Plan::fixed(t_hi) == 1;
        (Plan::fixed(t_lo) == 1 && !hi, hi)
    }

    /// The public outcome of a threshold that does not vary.
    pub fn fixed(t: u64) -> u64 {
        u64::from(t == 0)
    }

    pub(crate) fn t_table_bits(&self) -> usize {
        if self.has_thresholds() {
            self.t_chunks.iter().map(|&w| 1usize << w).sum()
        } else {
            0
        }
    }

    /// Borrow table bits per element, both readings.
    fn b_table_bits(&self) -> usize {
        if self.has(Lane::Borrow) {
            self.borrow.table_bits()
        } else {
            0
        }
    }

    /// Table bits per element: threshold tables, then borrow tables of the readings `r`
    /// and (the chunks that differ) `r − 2^m`.
    pub(crate) fn table_bits(&self) -> usize {
        self.t_table_bits() + self.b_table_bits()
    }

    /// Where each chunk of `lane`'s table starts, from an element's first table bit, for
    /// the readings `r` and `r − 2^m` (the thresholds' are the same for both).
    pub(crate) fn table_offsets(&self, lane: Lane) -> [Vec<usize>; 2] {
        let chunks = match lane {
            Lane::Borrow => self.borrow.widths.len(),
            Lane::Lo | Lane::Hi => self.t_chunks.len(),
        };
        [false, true].map(|second| {
            (0..chunks)
                .map(|j| self.table_offset(lane, j, second))
                .collect()
        })
    }

    /// Where chunk `j` of `lane`'s table starts, from an element's first table bit; the
    /// borrow's for the reading `r` or, with `second`, `r − 2^m`.
    pub(crate) fn table_offset(&self, lane: Lane, j: usize, second: bool) -> usize {
        match lane {
            Lane::Borrow => self.t_table_bits() + self.borrow.offset(j, second),
            Lane::Lo | Lane::Hi => self.t_chunks[..j].iter().map(|&w| 1usize << w).sum(),
        }
    }

    /// Per tree level: pairs of units combined, and whether it is the last.
    pub(crate) fn levels(&self) -> Vec<(usize, bool)> {
        if self.lanes.is_empty() {
            return Vec::new();
        }
        let mut units = self.units;
        let mut out = Vec::new();
        while units > 1 {
            out.push((units / 2, units == 2));
            units /= 2;
        }
        out
    }

    fn open_bytes(&self) -> usize {
        (self.m as usize).div_ceil(8)
    }

    /// The dealer's material for `n` elements: words, then the tables, the top bits of
    /// `r`, the bits `e`, and per tree level the triples `a, b_1, c_1, b_2, c_2`.
    pub(crate) fn layout(&self, n: usize) -> Layout {
        let mut l = Layout::words(WORDS * n)
            .seg(n * self.table_bits())
            .seg(n)
            .seg(3 * n);
        let lanes = self.lanes.len() * n;
        for (pairs, last) in self.levels() {
            let p = pairs * lanes;
            let second = if last { 0 } else { p };
            l = l.seg(p).seg(p).seg(p).seg(second).seg(second);
        }
        l
    }

    /// The messages of one call on `n` elements among `parties` parties.
    pub fn pattern(&self, n: usize, parties: usize) -> Rounds {
        let mut bytes = vec![n * self.open_bytes()];
        let lanes = self.lanes.len() * n;
        for (pairs, last) in self.levels() {
            bytes.push(bit_bytes(pairs * lanes) * if last { 2 } else { 3 });
        }
        if self.opened_count() > 0 {
            bytes.push(bit_bytes(self.opened_count() * n));
        }
        bytes.into_iter().map(|b| all_to_all(parties, b)).collect()
    }

    /// The dealer's material (values) for `q` on `n` elements, from its own randomness.
    pub(crate) fn deal<W: Word>(&self, q: &Requant, rng: &mut Stream) -> Block<W> {
        let n = q.num.len();
        let m = self.m;
        let tb = self.table_bits();
        let (t_bits, b_bits) = (self.t_table_bits(), self.b_table_bits());
        let t_at = |j: usize| Some(self.table_offset(Lane::Lo, j, false));
        let mut tables = vec![0u64; words(n * tb)];
        let mut rtop = vec![0u64; words(n)];
        let [o_mid, o_beta, o_hi] = self.opened();
        let mut e = vec![0u64; words(3 * n)];
        for (k, open) in [o_mid, o_beta, o_hi].into_iter().enumerate() {
            if open {
                let r = random_bits(rng, n);
                for i in 0..n {
                    set(&mut e, k * n + i, get(&r, i));
                }
            }
        }
        let mut w = vec![W::ZERO; WORDS * n];
        let rs = random_bits(rng, 64 * n);
        for i in 0..n {
            let r = rs[i] & mask(m);
            let rt = (r >> (m - 1)) & 1;
            set(&mut rtop, i, rt);
            if t_bits > 0 {
                fill_tables(
                    &mut tables,
                    i * tb,
                    &self.t_chunks,
                    t_at,
                    r & mask(m - 1),
                    None,
                );
            }
            let readings = [r as i128, r as i128 - ((rt as i128) << m)];
            let (num, d) = (q.num[i] as i128, q.den[i] as i128);
            let split_q = |rv: i128| {
                let qv = rv * num;
                (qv.rem_euclid(d) as u64, qv.div_euclid(d))
            };
            let mut qh = [0i128; 2];
            for (v, &rv) in readings.iter().enumerate() {
                let (ql, h) = split_q(rv);
                qh[v] = h;
                if b_bits > 0 {
                    let tie = (d % 2 == 0).then_some((h & 1) as u64);
                    let second = v == 1;
                    let at = |j: usize| {
                        (!second || self.borrow.differs[j])
                            .then(|| self.table_offset(Lane::Borrow, j, second))
                    };
                    let widths = &self.borrow.widths;
                    fill_tables(&mut tables, i * tb, widths, at, ql << 1, Some(tie));
                }
            }
            let bit = |k: usize| W::from_u128(u128::from(get(&e, k * n + i)));
            let (e1, e2, e3) = (bit(0), bit(1), bit(2));
            let ring = |v: i128| W::from_u128(v as u128);
            let vals = [
                W::from_u128(u128::from(r)),
                e1,
                e2,
                e3,
                e1.mul(e2),
                ring(qh[0]),
                e1.mul(ring(qh[0])),
                ring(qh[1]),
                e1.mul(ring(qh[1])),
            ];
            for (k, v) in vals.into_iter().enumerate() {
                w[k * n + i] = v;
            }
        }
        let mut segs = vec![tables, rtop, e];
        let lanes = self.lanes.len() * n;
        for (pairs, last) in self.levels() {
            let p = pairs * lanes;
            let a = random_bits(rng, p);
            let b1 = random_bits(rng, p);
            let c1 = and(&a, &b1);
            segs.extend([a.clone(), b1, c1]);
            if last {
                segs.extend([Vec::new(), Vec::new()]);
            } else {
                let b2 = random_bits(rng, p);
                let c2 = and(&a, &b2);
                segs.extend([b2, c2]);
            }
        }
        Block {
            words: w,
            segs,
            public: Default::default(),
        }
    }
}

/// Comparison tables at bit `base` of `tables`: for each chunk `j` of `q` (widths
/// `chunks`) that has a table (at `base + at(j)`), `[v < q_j]` for every `v` of the chunk. With `tie = Some(t)` the lowest chunk
/// compares `v >> 1` with `q_0 >> 1` and borrows at equality when `t = Some(parity)` and
/// `(v & 1) ⊕ parity = 1` (round half to even); `Some(None)` never borrows at equality.
fn fill_tables(
    tables: &mut [u64],
    base: usize,
    chunks: &[u32],
    at: impl Fn(usize) -> Option<usize>,
    q: u64,
    tie: Option<Option<u64>>,
) {
    // Each chunk's table is a run of ones (`v < q_j`) and, at a tie, one more bit: one
    // word per chunk, not entry by entry (this is most of the dealer's work).
    let mut shift = 0u32;
    for (j, &w) in chunks.iter().enumerate() {
        let qj = (q >> shift) & mask(w);
        shift += w;
        let Some(off) = at(j) else {
            continue;
        };
        let entries = match tie {
            // `v >> 1 < q_j >> 1`, and at `v >> 1 = q_j >> 1` the `v` of odd parity.
            Some(t) if j == 0 => {
                let even = qj & !1;
                mask(even as u32) | t.map_or(0, |par| 1 << (even | (1 ^ par)))
            }
            _ => mask(qj as u32),
        };
        or_bits(tables, base + off, entries, 1 << w);
    }
}

/// A round in which every party sends `bytes` to every other party.
pub(crate) fn all_to_all(parties: usize, bytes: usize) -> Round {
    Round::of((0..parties).flat_map(|f| {
        (0..parties)
            .filter(move |&t| t != f)
            .map(move |t| (f, t, bytes as u64))
    }))
}

/// Per chunk unit: XOR shares of `lt` and `eq` over all lanes.
type Unit = (Vec<u64>, Vec<u64>);

/// Party `p`'s share of `q` applied to `x` (values in `b`); see the module doc.
pub(crate) fn eval<W: Word>(
    p: &mut Semi2k<W>,
    x: &[W],
    q: &Requant,
    b: Bounds,
    plan: &Plan,
) -> R<Vec<W>> {
    let n = x.len();
    let mat: Block<W> = p.prep.take(&plan.layout(n), p.net.as_mut())?;
    let first = p.me == 0;
    let m = plan.m;
    let mm = mask(m);
    let low = |w: W| (w.to_u128() as u64) & mm;
    let word = |k: usize, i: usize| mat.words[k * n + i];

    // Round 1: c = y + r mod 2^m.
    let neg_lo = W::from_i64(b.lo).neg();
    let mine: Vec<u64> = (0..n)
        .map(|i| {
            let y = if first { x[i].add(neg_lo) } else { x[i] };
            low(y.add(word(0, i)))
        })
        .collect();
    let c = p.open_low(mine, m)?;
    let top = |i: usize| (c[i] >> (m - 1)) & 1;

    // Public quotient and remainder of P by d.
    let (hs, pls): (Vec<i128>, Vec<u64>) = (0..n)
        .map(|i| {
            let d = q.den[i] as i128;
            let pv = (c[i] as i128 + b.lo as i128) * q.num[i] as i128 + d / 2;
            (pv.div_euclid(d), pv.rem_euclid(d) as u64)
        })
        .unzip();

    // Leaves of every comparison lane.
    let tables = &mat.segs[0];
    let rtop = &mat.segs[1];
    let e = &mat.segs[2];
    let tb = plan.table_bits();
    let lanes = plan.lanes.len() * n;
    let mut units: Vec<Unit> = (0..plan.units)
        .map(|_| (vec![0u64; words(lanes)], vec![0u64; words(lanes)]))
        .collect();
    // The public part and the shared top bit of each threshold comparison.
    let mut fixed_part = vec![0u64; words(lanes)];
    for (k, &lane) in plan.lanes.iter().enumerate() {
        let offsets = plan.table_offsets(lane);
        for i in 0..n {
            let at = k * n + i;
            // With `c < 2^(m−1)` the mask reads as `r − 2^m`.
            let second = top(i) == 0;
            let (index, chunks) = match lane {
                Lane::Borrow => ((pls[i] << 1) | (hs[i] & 1) as u64, &plan.borrow.widths),
                Lane::Lo | Lane::Hi => {
                    let (t_lo, t_hi) = plan.thresholds[i];
                    let t = if lane == Lane::Lo { t_lo } else { t_hi };
                    let a = c[i].wrapping_sub(t) & mm;
                    let public = if first { 1 ^ (a >> (m - 1)) } else { 0 };
                    set(&mut fixed_part, at, public ^ get(rtop, i));
                    (a & mask(m - 1), &plan.t_chunks)
                }
            };
            let mut shift = 0u32;
            for (j, unit) in units.iter_mut().enumerate() {
                let Some(&w) = chunks.get(j) else {
                    // A neutral unit on top: lt = 0, eq = 1.
                    set(&mut unit.1, at, u64::from(first));
                    continue;
                };
                let v = (index >> shift) & mask(w);
                // The table shifted up one, entry −1 (`[v < q]` at v = −1 is 1, shared
                // as party 0's) below it: `below` and `lt` side by side, one read.
                let off = offsets[usize::from(second)][j];
                let t = bits_at(tables, i * tb + off, 1 << w) << 1 | u64::from(first);
                let (below, lt) = ((t >> v) & 1, (t >> (v + 1)) & 1);
                set(&mut unit.0, at, lt);
                set(&mut unit.1, at, below ^ lt);
                shift += w;
            }
        }
    }
    let lt = tree(p, units, lanes, &mat.segs[3..], &plan.levels())?;
    let results = xor(&lt, &fixed_part);

    // XOR shares (or public values) of g_lo, g_hi, β per element.
    let lane_bit = |l: Lane, i: usize, public: u64| match plan.lanes.iter().position(|&x| x == l) {
        Some(k) => get(&results, k * n + i),
        None => public & u64::from(first),
    };
    let mut sel = vec![0u64; words(3 * n)];
    for i in 0..n {
        let (t_lo, t_hi) = plan.thresholds[i];
        let g_lo = lane_bit(Lane::Lo, i, Plan::fixed(t_lo));
        let g_hi = lane_bit(Lane::Hi, i, Plan::fixed(t_hi));
        let beta = lane_bit(Lane::Borrow, i, 0);
        set(&mut sel, i, g_lo ^ g_hi);
        set(&mut sel, n + i, beta);
        set(&mut sel, 2 * n + i, g_hi);
    }
    // Open the secret ones, masked by e; the public ones are known to all.
    let opened = plan.opened();
    let mut h = vec![0u64; words(3 * n)];
    let mut masked = Vec::new();
    for (k, &o) in opened.iter().enumerate() {
        if o {
            masked.push(xor(&part(&sel, k, n), &part(e, k, n)));
        }
    }
    if !masked.is_empty() {
        let refs: Vec<&Vec<u64>> = masked.iter().collect();
        let mine = concat(&refs, n);
        let mut msg = Vec::new();
        pack(&mine, masked.len() * n, &mut msg);
        let got = p.all_round(msg)?;
        let mut all = mine;
        for g in &got {
            all = xor(&all, &unpack(g, masked.len() * n));
        }
        let mut at = 0;
        for (k, &o) in opened.iter().enumerate() {
            if o {
                let v = part(&all, at, n);
                for i in 0..n {
                    set(&mut h, k * n + i, get(&v, i));
                }
                at += 1;
            }
        }
    }
    for i in 0..n {
        let (t_lo, t_hi) = plan.thresholds[i];
        let public = [Plan::fixed(t_lo) ^ Plan::fixed(t_hi), 0, Plan::fixed(t_hi)];
        for (k, &o) in opened.iter().enumerate() {
            if !o {
                set(&mut h, k * n + i, public[k]);
            }
        }
    }

    // Additive shares of the result.
    let bit = |v: u64| if v == 1 { W::ONE } else { W::ZERO };
    let sign = |v: u64| if v == 1 { W::ONE.neg() } else { W::ONE };
    let pubw = |v: W| if first { v } else { W::ZERO };
    let ring = |v: i128| W::from_u128(v as u128);
    let span = ring(q.hi as i128 - q.lo as i128);
    Ok((0..n)
        .map(|i| {
            let (mh, bh, hh) = (get(&h, i), get(&h, n + i), get(&h, 2 * n + i));
            let mid = pubw(bit(mh)).add(sign(mh).mul(word(1, i)));
            let qk = if top(i) == 1 { 5 } else { 7 };
            let mid_qh = bit(mh).mul(word(qk, i)).add(sign(mh).mul(word(qk + 1, i)));
            let mid_beta = pubw(bit(mh & bh))
                .add(bit(mh).mul(sign(bh)).mul(word(2, i)))
                .add(bit(bh).mul(sign(mh)).mul(word(1, i)))
                .add(sign(mh).mul(sign(bh)).mul(word(4, i)));
            let hi_bit = pubw(bit(hh)).add(sign(hh).mul(word(3, i)));
            let v = ring(hs[i] + q.zp[i] as i128 - q.lo as i128);
            mid.mul(v)
                .sub(mid_qh)
                .sub(mid_beta)
                .add(span.mul(hi_bit))
                .add(pubw(W::from_i64(q.lo)))
        })
        .collect())
}

/// Combine the units pairwise, one round of Beaver ANDs per level: with `(lt, eq)` of the
/// high and the low unit, `lt = lt_hi ⊕ eq_hi·lt_lo` and `eq = eq_hi·eq_lo` (both ANDs
/// share the triple's `a`). Returns the shares of `lt` of the whole comparison.
fn tree<W: Word>(
    p: &mut Semi2k<W>,
    mut units: Vec<Unit>,
    lanes: usize,
    triples: &[Vec<u64>],
    levels: &[(usize, bool)],
) -> R<Vec<u64>> {
    let first = p.me == 0;
    for (lv, &(pairs, last)) in levels.iter().enumerate() {
        let t = &triples[5 * lv..5 * lv + 5];
        let (a, b1, c1, b2, c2) = (&t[0], &t[1], &t[2], &t[3], &t[4]);
        let bits = pairs * lanes;
        let eq_hi: Vec<&Vec<u64>> = (0..pairs).map(|j| &units[2 * j + 1].1).collect();
        let lt_lo: Vec<&Vec<u64>> = (0..pairs).map(|j| &units[2 * j].0).collect();
        let eq_lo: Vec<&Vec<u64>> = (0..pairs).map(|j| &units[2 * j].1).collect();
        let d = xor(&concat(&eq_hi, lanes), a);
        let f1 = xor(&concat(&lt_lo, lanes), b1);
        let f2 = if last {
            Vec::new()
        } else {
            xor(&concat(&eq_lo, lanes), b2)
        };
        let mut msg = Vec::new();
        pack(&d, bits, &mut msg);
        pack(&f1, bits, &mut msg);
        if !last {
            pack(&f2, bits, &mut msg);
        }
        let got = p.all_round(msg)?;
        let bb = bit_bytes(bits);
        let (mut d, mut f1, mut f2) = (d, f1, f2);
        for g in &got {
            d = xor(&d, &unpack(&g[..bb], bits));
            f1 = xor(&f1, &unpack(&g[bb..2 * bb], bits));
            if !last {
                f2 = xor(&f2, &unpack(&g[2 * bb..3 * bb], bits));
            }
        }
        let and_share = |f: &[u64], b: &[u64], c: &[u64]| -> Vec<u64> {
            (0..words(bits))
                .map(|k| {
                    let own = if first { d[k] & f[k] } else { 0 };
                    c[k] ^ (d[k] & b[k]) ^ (f[k] & a[k]) ^ own
                })
                .collect()
        };
        let z1 = and_share(&f1, b1, c1);
        let z2 = if last {
            Vec::new()
        } else {
            and_share(&f2, b2, c2)
        };
        units = (0..pairs)
            .map(|j| {
                let lt = xor(&units[2 * j + 1].0, &part(&z1, j, lanes));
                let eq = if last {
                    Vec::new()
                } else {
                    part(&z2, j, lanes)
                };
                (lt, eq)
            })
            .collect();
    }
    Ok(units.swap_remove(0).0)
}
