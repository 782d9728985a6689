//! One whole requantization `clamp(round_half_even(x·num/2^s) + zp, lo, hi)` (per-element
//! `num`, `s` and `zp`; every comparison is laid out for the widest `s`) with the third
//! party as a dealer, in `L + 3` rounds (`L` the comparison tree's levels, [`super::tree`]:
//! 2 for int32 accumulators, 1 favouring rounds, [`crate::Favor`]) instead of a masked
//! division followed by a clamp; from a
//! product's unreshared parts too ([`Operand::Parts`]), which saves the product's round.
//!
//! Roles rotate by element group as in [`super::assist`]: dealer `D`, evaluators `A`, `B`.
//! With `y = x − x_lo < 2^ℓ`, the opening has `m = max(ℓ, s) + 1` bits where every
//! divisor is a power of two and the ring allows (Z_2^64), else `m = ℓ + 1` (Z_2^32 with
//! `s ≥ 32`, as int8 models have), and `ℓ + 1` too where that costs less
//! ([`RequantPlan::new`]):
//!
//! 1. *open* (1 round): `A` and `B` learn `c = y + r mod 2^m` (`r` known to `D` only). As
//!    `y < 2^(m−1)`, `y = c − r` when `c`'s top bit is set and `y = c − (r − r_{m−1}·2^m)`
//!    otherwise: call the mask's reading `r'` (public which one, as `c` is; only `D` knows
//!    its value). Then `x·num + 2^(s−1) = P − Q` with `P = (c + x_lo)·num + 2^(s−1)`
//!    (public to the evaluators) and `Q = r'·num` (known to `D`), so the floor over `2^s`
//!    is `H − Q_h − [P_l < Q_l]` (`H`, `Q_h` the high parts, `P_l`, `Q_l` the low `s`
//!    bits), and round-half-even subtracts one more at a tie (`P_l = Q_l`) with an odd
//!    floor (`H_0 ⊕ Q_{h,0}`): both fold into one borrow
//!    `β = [P_l < Q_l] ∨ ([P_l = Q_l] ∧ (H_0 ⊕ Q_{h,0}))`, a comparison whose lowest unit
//!    also indexes the parity. With `m > s` both readings of `r` give the same `Q_l` and
//!    parity and `D` sends one set of borrow tables; otherwise one per reading, and the
//!    evaluators look up the set `c` picks. The clamp tests are `[x ≥ θ]` for two public
//!    thresholds (the result is non-decreasing in `x`), i.e.
//!    `1 ⊕ a_{m−1} ⊕ r_{m−1} ⊕ [a' < r']` with `a = c − (θ − x_lo) mod 2^m` and primes
//!    for the low `m − 1` bits. In this round `D` sends `B` the masked comparison tables
//!    of `r` and of `Q`, Beaver triples, and arithmetic shares of everything the output
//!    needs.
//! 2. *compare* (`L` rounds): the three comparisons of every element run as lanes of one
//!    Beaver tree.
//! 3. *open bits* (1 round): `A` and `B` open `g_mid ⊕ e_1`, `β ⊕ e_2`, `g_hi ⊕ e_3` and
//!    form additive shares of
//!    `lo + g_mid·(H + zp − lo − Q_h − β) + g_hi·(hi − lo)`, where `g_mid = g_lo ⊕ g_hi`,
//!    from the dealer's shares of `e_1`, `e_2`, `e_3`, `e_1·e_2`, and `Q_h`, `e_1·Q_h` of
//!    both readings of the mask.
//! 4. *reshare* (1 round) to replicated shares, as in [`super::assist`].
//!
//! What each party sees is masked as in [`super::assist`]: `c` by `r`, table entries by
//! `A`'s pads, tree openings by triples, the opened bits by the dealer's `e`, and the
//! dealer's two incoming parts by randomness of `A` and `B`.

use super::assist::{
    bit_bytes, concat, get, pack, part, put_words, reshare_parts, role, set, words, xor, Post,
    Role, Seat,
};
use super::tree::{
    self, combine_tree, draw_triples, pack_b_products, receive_products, Level, Tree, Triples,
};
use super::Rep3;
use crate::bitvec::{bits_at, bits_of, low_mask as mask, or_bits, split};
use crate::borrow::{BorrowChunks, Readings, MAX_CHUNK, WIDEST_CHUNK};
use crate::planes::{Pair, Plane};
use crate::word::Word;
use crate::{Bounds, Favor, PartyId, ProtocolError, Requant};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

type R<T> = Result<T, ProtocolError>;

/// Ring words the dealer shares per element for the output.
const ARITH: usize = 8;
/// Comparison lanes per element: the borrow and the two clamp tests.
const LANES: usize = 3;

/// Public parameters of a fused requantization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RequantPlan {
    /// Bits of the widest remainder: every divisor `D_i` (see [`divisor`]) is at most
    /// `2^s`.
    pub s: u32,
    /// Per element; shared by the plans [`RequantPlan::new`] weighs (a layer's elements
    /// number in the millions).
    pub divs: Arc<[Divisor]>,
    /// `y = x − x_lo < 2^bits`.
    pub bits: u32,
    /// Bits of the opening `c`.
    pub m: u32,
    /// `m ≤ s`: the two readings of the mask (`r` and `r − 2^m`) need their own borrow
    /// tables (where they differ, see [`BorrowChunks`]); with `m > s` every divisor is a
    /// power of two, the readings differ by a multiple of `2^s` and share them.
    pub dual: bool,
    /// Chunk widths of the threshold comparisons (`m − 1` bits), least significant first.
    pub t_chunks: Vec<u32>,
    /// The borrow comparison's chunks (`s + 1` bits: the parity, then `P_l`) and their
    /// tables for the two readings of the mask.
    pub borrow: BorrowChunks,
    /// Units of every tree (a power of two where bytes are favoured); shorter trees get
    /// neutral units on top.
    pub units: usize,
    /// How the tree ends ([`tree::levels`]).
    pub favor: Favor,
}

impl RequantPlan {
    /// `None` when the requantization is not of this form (a positive multiplier, a
    /// divisor under `2^62`) or too wide for `ring_bits`.
    pub fn new(q: &Requant, b: Bounds, ring_bits: u32, favor: Favor) -> Option<RequantPlan> {
        if b.lo > b.hi || q.num.is_empty() {
            return None;
        }
        let bits = bits_of((b.hi as i128 - b.lo as i128) as u128).max(1);
        let cap = ring_bits.min(64);
        if bits >= cap {
            return None;
        }
        // Per-channel parameters come in runs of a channel's elements: one divisor per run.
        let mut last: Option<((i64, i64), Divisor)> = None;
        let divs: Arc<[Divisor]> = q
            .num
            .iter()
            .zip(&q.den)
            .map(|(&num, &den)| match last {
                Some((key, d)) if key == (num, den) => Some(d),
                _ => {
                    let d = divisor(num, den)?;
                    last = Some(((num, den), d));
                    Some(d)
                }
            })
            .collect::<Option<_>>()?;
        let s = divs.iter().map(|d| bits_of((d.den - 1) as u128)).max()?;
        let dyadic = divs.iter().all(|d| d.den.count_ones() == 1);
        // Openings of `bits + 1` bits with tables for both readings of the mask where they
        // differ, or, where every divisor is a power of two and the ring allows, of
        // `max(bits, s) + 1` bits with one set (the readings `r` and `r − 2^m` then leave
        // the same remainder and parity). Where `s > bits` the wider opening costs wider
        // threshold comparisons too: the cheaper of the two (the narrower where they tie),
        // costed with the default's tree so that the opening does not depend on the favor.
        // An opening's bytes go out up to four times (`A`↔`B`, and the dealer's product
        // part to both).
        let narrow = Opening {
            m: bits + 1,
            readings: if dyadic {
                Readings::PowerOfTwo
            } else {
                Readings::Apart
            },
        };
        let opening = if dyadic && bits.max(s) < cap {
            let wide = Opening {
                m: bits.max(s) + 1,
                readings: Readings::Same,
            };
            let cost = |o: Opening| {
                let p = Self::with(&divs, s, bits, o, Favor::Bytes);
                (p.levels().len(), p.dealer_bits() + 32 * p.open_bytes())
            };
            if s > bits && cost(narrow) <= cost(wide) {
                narrow
            } else {
                wide
            }
        } else {
            narrow
        };
        Some(Self::with(&divs, s, bits, opening, favor))
    }

    /// The plan for an opening and a favor.
    fn with(divs: &Arc<[Divisor]>, s: u32, bits: u32, o: Opening, favor: Favor) -> RequantPlan {
        let m = o.m;
        let plan = |units: usize, widest: u32| RequantPlan {
            s,
            divs: Arc::clone(divs),
            bits,
            m,
            dual: o.readings != Readings::Same,
            t_chunks: split(m - 1, units),
            borrow: BorrowChunks::new(s, m, units, o.readings, widest),
            units,
            favor,
        };
        let need = |t: u32, widest: u32| t.div_ceil(widest) as usize;
        match favor {
            // Narrow chunks, paired off level by level down to a last level of four.
            Favor::Bytes => {
                let units = need(m - 1, MAX_CHUNK)
                    .max(need(s + 1, MAX_CHUNK))
                    .next_power_of_two();
                plan(units, MAX_CHUNK)
            }
            // As few units as the widest table allows, or one more where that deals fewer
            // bits (the last level's products grow about twofold per unit, the tables
            // shrink as the chunks narrow): one level up to seven units.
            Favor::Rounds => {
                let fewest = need(m - 1, WIDEST_CHUNK).max(need(s + 1, WIDEST_CHUNK));
                let (a, b) = (plan(fewest, WIDEST_CHUNK), plan(fewest + 1, WIDEST_CHUNK));
                let one_round = b.levels().len() <= a.levels().len();
                if one_round && b.dealer_bits() < a.dealer_bits() {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// The rounds of the comparison tree.
    pub fn levels(&self) -> Vec<Level> {
        tree::levels(self.units, self.favor)
    }

    /// Bits the dealer sends `B` per element for the comparisons: the tables, the mask's
    /// top bit, and the tree's material (over eight elements' lanes, whole bytes).
    fn dealer_bits(&self) -> usize {
        self.table_bits() + 1 + tree::dealer_bytes(&self.levels(), LANES * 8)
    }

    pub fn open_bytes(&self) -> usize {
        (self.m as usize).div_ceil(8)
    }

    fn t_table_bits(&self) -> usize {
        self.t_chunks.iter().map(|&w| 1usize << w).sum()
    }

    /// Where borrow chunk `j`'s table starts within an element's tables, for the reading
    /// `r` or, with `second`, `r − 2^m`.
    fn b_table_offset(&self, j: usize, second: bool) -> usize {
        self.t_table_bits() + self.borrow.offset(j, second)
    }

    /// Table bits per element: the threshold tables, then the borrow tables of `r`, then
    /// those of `r − 2^m` that differ.
    pub fn table_bits(&self) -> usize {
        self.t_table_bits() + self.borrow.table_bits()
    }

    /// Bytes `D` sends `B` in round 1 for a group of `n` elements.
    pub fn dealer_bytes(&self, n: usize, word: usize) -> usize {
        bit_bytes(n * self.table_bits())
            + bit_bytes(n)
            + tree::dealer_bytes(&self.levels(), LANES * n)
            + ARITH * n * word
    }
}

/// The opening's width and how the mask's two readings relate (see [`RequantPlan::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Opening {
    m: u32,
    readings: Readings,
}

/// `round_half_even(x·num/den)` as a floor `⌊(x·N + O) / D⌋`, with a tie exactly where
/// the remainder is zero: `(num, den, den/2)` for an even `den`, `(2·num, 2·den, den)` for
/// an odd one. `None` outside `num ∈ [1, 2^62]`, `D ≤ 2^62` (which keeps `P` and `Q` of the
/// module doc within `i128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Divisor {
    pub num: i64,
    pub den: i64,
    pub half: i64,
}

pub(super) fn divisor(num: i64, den: i64) -> Option<Divisor> {
    const CAP: i64 = 1 << 62;
    if !(1..=CAP).contains(&num) || !(1..=CAP).contains(&den) {
        return None;
    }
    let d = if den % 2 == 0 {
        Divisor {
            num,
            den,
            half: den / 2,
        }
    } else {
        Divisor {
            num: 2 * num,
            den: 2 * den,
            half: den,
        }
    };
    (d.num <= CAP && d.den <= CAP).then_some(d)
}

/// `(⌊v / den⌋, v mod den)` for `den > 0`: a shift and a mask for the powers of two that
/// most divisors are (an `i128` division is a library call).
fn floor_divide(v: i128, den: i64) -> (i128, i128) {
    if den.count_ones() == 1 {
        let s = den.trailing_zeros();
        (v >> s, v & (i128::from(den) - 1))
    } else {
        let den = i128::from(den);
        (v.div_euclid(den), v.rem_euclid(den))
    }
}

/// Where a comparison unit reads one lane's operand and its table (see `requantize`).
#[derive(Clone, Copy)]
struct UnitRead {
    /// The chunk's width.
    w: u32,
    /// Where the chunk starts in the operand.
    shift: u32,
    /// Where its table starts in an element's tables, for the readings `r` and `r − 2^m`.
    offsets: [usize; 2],
}

/// What one party holds of one group.
struct Part<W> {
    role: Role,
    da: usize,
    db: usize,
    range: Range<usize>,
    d: PartyId,
    pa: PartyId,
    pb: PartyId,
    c: Vec<u64>,
    mask: Vec<u64>,
    tables: Vec<u64>,
    rtop: Vec<u64>,
    triples: Vec<Triples>,
    /// `e_1 | e_2 | e_3`, `n` bits each.
    e: Vec<u64>,
    /// `[e_1], [e_2], [e_3], [e_1 e_2]`, then `[Q_h]`, `[e_1 Q_h]` for the readings `r` and
    /// `r − 2^m` of the mask, `n` each.
    arith: Vec<W>,
}

impl<W> Part<W> {
    fn n(&self) -> usize {
        self.range.len()
    }
    fn other(&self) -> PartyId {
        if self.role == Role::A {
            self.pb
        } else {
            self.pa
        }
    }
}

fn ring<W: Word>(v: i128) -> W {
    W::from_u128(v as u128)
}

/// What a requantization reads.
#[derive(Clone, Copy)]
pub(super) enum Operand<'a, W> {
    /// Replicated shares.
    Shares(&'a Pair<W>),
    /// This party's additive part of a product before its resharing (the three parties'
    /// parts sum to the value).
    Parts(&'a [W]),
}

impl<W: Word> Operand<'_, W> {
    fn len(&self) -> usize {
        match self {
            Operand::Shares(x) => x.len(),
            Operand::Parts(z) => z.len(),
        }
    }

    /// What an evaluator sends the other for element `e` before masking: `A` component
    /// `g + 1` or its part with `−x_lo` folded in, `B` component `g` or its part.
    fn sent(&self, e: usize, is_a: bool, neg_lo: W) -> W {
        match (self, is_a) {
            (Operand::Shares(x), true) => x.a[e].add(neg_lo),
            (Operand::Shares(x), false) => x.b[e],
            (Operand::Parts(z), true) => z[e].add(neg_lo),
            (Operand::Parts(z), false) => z[e],
        }
    }

    /// What an evaluator adds of its own to the others' openings for element `e`.
    fn kept(&self, e: usize, is_a: bool, neg_lo: W) -> W {
        match self {
            Operand::Shares(x) => {
                let a = if is_a { x.a[e].add(neg_lo) } else { x.a[e] };
                a.add(x.b[e])
            }
            Operand::Parts(_) => self.sent(e, is_a, neg_lo),
        }
    }
}

/// `q` applied to `x` (bounds `b`), as replicated shares; see the module doc. From a
/// product's parts ([`Operand::Parts`]) the opening of round 1 takes the dealer's part
/// too: `A` and `B` send theirs masked with a key they share with `D` (`u_A`, `u_B`), and
/// `D` sends `A` its part masked with `v_B` and `B` with `v_A` (the keys' second draws),
/// so `c = y + r` with `r = u_A + v_A + u_B + v_B`, which only `D` knows.
pub(super) fn requantize<W: Word>(
    p: &mut Rep3<W>,
    plan: &RequantPlan,
    q: &Requant,
    x: Operand<'_, W>,
    b: Bounds,
) -> R<Pair<W>> {
    let from_parts = matches!(x, Operand::Parts(_));
    let n = x.len();
    if n == 0 {
        return Ok(Pair::default());
    }
    let me = p.me;
    let m = plan.m;
    let mmask = mask(m);
    let sbits = plan.table_bits();
    let levels = plan.levels();
    let ob = plan.open_bytes();
    let low = |w: W| (w.to_u128() as u64) & mmask;
    let neg_lo = W::from_i64(b.lo).neg();
    let mut parts: Vec<Part<W>> = (0..3)
        .map(|g| Part {
            role: role(me, g),
            da: (g + 1) % 3,
            db: g % 3,
            range: p.group(n, g),
            d: g % 3,
            pa: (g + 1) % 3,
            pb: (g + 2) % 3,
            c: Vec::new(),
            mask: Vec::new(),
            tables: Vec::new(),
            rtop: Vec::new(),
            triples: Vec::new(),
            e: Vec::new(),
            arith: Vec::new(),
        })
        .collect();

    // Round 1: openings and the dealer's material.
    let mut post = Post::new();
    for gr in parts.iter_mut() {
        let nn = gr.n();
        if nn == 0 {
            continue;
        }
        let range = gr.range.clone();
        match gr.role {
            Role::A | Role::B => {
                let is_a = gr.role == Role::A;
                let key = if is_a { gr.da } else { gr.db };
                let own: Vec<u64> = p.draw_words(key, nn).iter().map(|&w| low(w)).collect();
                let mut msg = Vec::with_capacity(nn * ob);
                for (i, e) in range.enumerate() {
                    let v = low(x.sent(e, is_a, neg_lo)).wrapping_add(own[i]) & mmask;
                    msg.extend_from_slice(&v.to_le_bytes()[..ob]);
                }
                let other = gr.other();
                post.send(other, msg);
                post.expect[other] += nn * ob;
                gr.mask = own;
                if from_parts {
                    // The dealer's part comes masked with the other key's second draw; this
                    // key's second draw masks what the dealer sends the other evaluator.
                    let second = p.draw_words(key, nn);
                    for (m, w) in gr.mask.iter_mut().zip(second) {
                        *m = m.wrapping_add(low(w)) & mmask;
                    }
                    post.expect[gr.d] += nn * ob;
                }
                if gr.role == Role::A {
                    gr.tables = p.draw_bits(gr.da, nn * sbits);
                    gr.rtop = p.draw_bits(gr.da, nn);
                    gr.triples = draw_triples(p, gr.da, &levels, LANES * nn, true);
                    gr.e = p.draw_bits(gr.da, 3 * nn);
                    gr.arith = p.draw_words(gr.da, ARITH * nn);
                } else {
                    post.expect[gr.d] += plan.dealer_bytes(nn, W::BYTES);
                    gr.triples = draw_triples(p, gr.db, &levels, LANES * nn, false);
                    gr.e = p.draw_bits(gr.db, 3 * nn);
                }
            }
            Role::Dealer => {
                let mut draw = |key: usize| -> Vec<u64> {
                    p.draw_words(key, nn).iter().map(|&w| low(w)).collect()
                };
                let (ua, va) = if from_parts {
                    (draw(gr.da), draw(gr.da))
                } else {
                    (draw(gr.da), vec![0; nn])
                };
                let (ub, vb) = if from_parts {
                    (draw(gr.db), draw(gr.db))
                } else {
                    (draw(gr.db), vec![0; nn])
                };
                if let Operand::Parts(z) = x {
                    // Its own part: to `A` under `v_B`, to `B` under `v_A`.
                    for (to, pad) in [(gr.pa, &vb), (gr.pb, &va)] {
                        let mut msg = Vec::with_capacity(nn * ob);
                        for (i, e) in range.clone().enumerate() {
                            let v = low(z[e]).wrapping_add(pad[i]) & mmask;
                            msg.extend_from_slice(&v.to_le_bytes()[..ob]);
                        }
                        post.send(to, msg);
                    }
                }
                let r: Vec<u64> = (0..nn)
                    .map(|i| {
                        ua[i]
                            .wrapping_add(va[i])
                            .wrapping_add(ub[i])
                            .wrapping_add(vb[i])
                            & mmask
                    })
                    .collect();
                let msg = dealer_material(p, gr, plan, &r)?;
                post.send(gr.pb, msg);
            }
        }
    }
    let mut inbox = p.post(post)?;

    // Leaves of the three comparisons of every element, as lanes `k·n + i`.
    // A twin computes no values (see `Word::DATA`).
    let thr = if W::DATA {
        q.y_thresholds(b, plan.bits)
    } else {
        Vec::new()
    };
    let mut units: Vec<Vec<(Vec<u64>, Vec<u64>)>> = (0..3).map(|_| Vec::new()).collect();
    let mut top: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut hs: Vec<Vec<i128>> = vec![Vec::new(); 3];
    for gr in parts.iter_mut() {
        let nn = gr.n();
        if nn == 0 || gr.role == Role::Dealer {
            continue;
        }
        let dealt_len = if from_parts { nn * ob } else { 0 };
        let (got, dealt) = inbox.take_two((gr.other(), nn * ob), (gr.d, dealt_len));
        let opened = |v: &[u8], i: usize| -> u64 {
            let mut bytes = [0u8; 8];
            if let Some(b) = v.get(i * ob..(i + 1) * ob) {
                bytes[..ob].copy_from_slice(b);
            }
            u64::from_le_bytes(bytes)
        };
        let is_a = gr.role == Role::A;
        gr.c = gr
            .range
            .clone()
            .enumerate()
            .map(|(i, e)| {
                low(x.kept(e, is_a, neg_lo))
                    .wrapping_add(gr.mask[i])
                    .wrapping_add(opened(got, i))
                    .wrapping_add(opened(dealt, i))
                    & mmask
            })
            .collect();
        if !is_a {
            gr.tables = inbox.bits(gr.d, nn * sbits);
            gr.rtop = inbox.bits(gr.d, nn);
            receive_products(&mut gr.triples, &levels, LANES * nn, &mut inbox, gr.d)?;
            gr.arith = inbox.words(gr.d, ARITH * nn);
        }
    }
    // Each evaluator group's leaves (a party evaluates two groups: side by side).
    let leaves: Vec<Option<Leaves>> = parts
        .par_iter()
        .map(|gr| (gr.n() > 0 && gr.role != Role::Dealer).then(|| leaves_of(gr, plan, &thr, b)))
        .collect();
    for (gi, l) in leaves.into_iter().enumerate() {
        if let Some(l) = l {
            hs[gi] = l.h;
            top[gi] = l.top;
            units[gi] = l.units;
        }
    }

    // The tree, one Beaver round per level.
    let mut trees: Vec<Option<Tree>> = parts
        .iter()
        .zip(units)
        .map(|(gr, u)| {
            (gr.n() > 0 && gr.role != Role::Dealer).then(|| Tree {
                is_a: gr.role == Role::A,
                other: gr.other(),
                lanes: LANES * gr.n(),
                triples: &gr.triples,
                units: u,
            })
        })
        .collect();
    combine_tree(p, &mut trees, &levels)?;
    let lts: Vec<Vec<u64>> = trees
        .into_iter()
        .map(|t| t.map(|mut t| t.units.swap_remove(0).0).unwrap_or_default())
        .collect();

    // Open g_mid ⊕ e_1, β ⊕ e_2, g_hi ⊕ e_3.
    let mut post = Post::new();
    let mut mine: Vec<Vec<u64>> = vec![Vec::new(); 3];
    for (gi, gr) in parts.iter().enumerate() {
        let nn = gr.n();
        if nn == 0 || gr.role == Role::Dealer {
            continue;
        }
        let res = xor(&lts[gi], &top[gi]);
        let (beta, g_lo, g_hi) = (part(&res, 0, nn), part(&res, 1, nn), part(&res, 2, nn));
        let bitsv = concat(&[&xor(&g_lo, &g_hi), &beta, &g_hi], nn);
        let o = xor(&bitsv, &gr.e);
        let mut msg = Vec::new();
        pack(&o, LANES * nn, &mut msg);
        post.expect[gr.other()] += msg.len();
        post.send(gr.other(), msg);
        mine[gi] = o;
    }
    let mut inbox = p.post(post)?;

    // Additive shares of the result, then the reshare to `D`.
    let mut zs: Vec<Vec<W>> = vec![Vec::new(); 3];
    for (gi, gr) in parts.iter().enumerate() {
        let nn = gr.n();
        if nn == 0 || gr.role == Role::Dealer {
            continue;
        }
        let is_a = gr.role == Role::A;
        let opened = xor(&mine[gi], &inbox.bits(gr.other(), LANES * nn));
        let bit = |v: u64| if v == 1 { W::ONE } else { W::ZERO };
        let sign = |v: u64| if v == 1 { W::ONE.neg() } else { W::ONE };
        let pubw = |v: W| if is_a { v } else { W::ZERO };
        let span = ring::<W>(q.hi as i128 - q.lo as i128);
        let mut z = Vec::with_capacity(nn);
        for (i, e) in gr.range.clone().enumerate() {
            let (mh, bh, hh) = (
                get(&opened, i),
                get(&opened, nn + i),
                get(&opened, 2 * nn + i),
            );
            let a = |k: usize| gr.arith[k * nn + i];
            let mid = pubw(bit(mh)).add(sign(mh).mul(a(0)));
            // `[Q_h]`, `[e_1 Q_h]` of the reading of the mask that `c`'s top bit picks.
            let qk = if gr.c[i] >> (m - 1) == 1 { 4 } else { 6 };
            let mid_qh = bit(mh).mul(a(qk)).add(sign(mh).mul(a(qk + 1)));
            let mid_beta = pubw(bit(mh & bh))
                .add(bit(mh).mul(sign(bh)).mul(a(1)))
                .add(bit(bh).mul(sign(mh)).mul(a(0)))
                .add(sign(mh).mul(sign(bh)).mul(a(3)));
            let hi_bit = pubw(bit(hh)).add(sign(hh).mul(a(2)));
            let v = ring::<W>(hs[gi][i] + q.zp[e] as i128 - q.lo as i128);
            z.push(
                mid.mul(v)
                    .sub(mid_qh)
                    .sub(mid_beta)
                    .add(span.mul(hi_bit))
                    .add(pubw(W::from_i64(q.lo))),
            );
        }
        zs[gi] = z;
    }
    let seats: Vec<Seat> = (0..3).map(|g| Seat::new(me, g, p.group(n, g))).collect();
    let shares = reshare_parts(p, &seats, &zs, 1)?;
    let mut out = Pair::<W>::zeros(n);
    for (gr, (a, b)) in parts.iter().zip(shares) {
        for (i, e) in gr.range.clone().enumerate() {
            out.a[e] = a[i];
            out.b[e] = b[i];
        }
    }
    Ok(out)
}

/// One evaluator group's leaves after the opening: `H` per element, the public parts of the
/// threshold tests, and every unit's `lt` and `eq` shares of the three comparisons.
struct Leaves {
    h: Vec<i128>,
    top: Vec<u64>,
    units: Vec<(Vec<u64>, Vec<u64>)>,
}

/// [`Leaves`] of an evaluator's group `gr` (its `c`, tables and mask's top bit in place).
fn leaves_of<W: Word>(gr: &Part<W>, plan: &RequantPlan, thr: &[(u64, u64)], b: Bounds) -> Leaves {
    let nn = gr.n();
    let m = plan.m;
    let mmask = mask(m);
    let sbits = plan.table_bits();
    let is_a = gr.role == Role::A;
    // Per element: the borrow index `2·P_l + H_0` and the two threshold operands.
    let lanes = LANES * nn;
    let mut idx: Vec<u64> = vec![0; lanes];
    let mut h = vec![0; nn];
    let mut tv = vec![0u64; words(lanes)];
    // A twin computes no values (see `Word::DATA`).
    if W::DATA {
        for (i, e) in gr.range.clone().enumerate() {
            let c = gr.c[i];
            // Elements with a smaller divisor leave the top bits of P_l and Q_l zero.
            let d = plan.divs[e];
            let pv = (c as i128 + b.lo as i128) * d.num as i128 + d.half as i128;
            let (hv, pl) = floor_divide(pv, d.den);
            let pl = pl as u64;
            idx[i] = (pl << 1) | (hv & 1) as u64;
            h[i] = hv;
            let (t_lo, t_hi) = thr[e];
            for (k, t) in [(1, t_lo), (2, t_hi)] {
                let a = c.wrapping_sub(t) & mmask;
                idx[k * nn + i] = a;
                let pubbit = if is_a { 1 ^ (a >> (m - 1)) } else { 0 };
                set(&mut tv, k * nn + i, pubbit ^ get(&gr.rtop, i));
            }
        }
    }
    let mut gvs = vec![vec![0u64; words(lanes)]; plan.units];
    let mut pvs = vec![vec![0u64; words(lanes)]; plan.units];
    // A twin computes no values (see `Word::DATA`).
    if W::DATA {
        // Per unit and lane kind: the chunk's width, where it reads the operand, and
        // where its table starts for the readings `r` and `r − 2^m` (the borrow's)
        // or for both (the thresholds'); `None` for a neutral unit on top.
        let specs: Vec<[Option<UnitRead>; LANES]> = (0..plan.units)
            .map(|j| {
                std::array::from_fn(|k| {
                    let chunks = if k == 0 {
                        &plan.borrow.widths
                    } else {
                        &plan.t_chunks
                    };
                    let &w = chunks.get(j)?;
                    let shift: u32 = chunks[..j].iter().sum();
                    let offsets = if k == 0 {
                        [false, true].map(|second| plan.b_table_offset(j, second))
                    } else {
                        [chunks[..j].iter().map(|&c| 1usize << c).sum(); 2]
                    };
                    Some(UnitRead { w, shift, offsets })
                })
            })
            .collect();
        for (j, spec) in specs.iter().enumerate() {
            for (k, unit) in spec.iter().enumerate() {
                // A neutral unit on top: lt = 0, eq = 1 (held by A).
                if unit.is_none() && is_a {
                    crate::bitvec::set_run(&mut pvs[j], k * nn, nn);
                }
            }
        }
        // Element by element, so that each element's tables are read together.
        for i in 0..nn {
            // With `c < 2^(m−1)` the mask reads as `r − 2^m` (see `dealer_material`).
            let second = usize::from(plan.dual && gr.c[i] >> (m - 1) == 0);
            for k in 0..LANES {
                let lane = k * nn + i;
                for (j, spec) in specs.iter().enumerate() {
                    let Some(UnitRead { w, shift, offsets }) = spec[k] else {
                        continue;
                    };
                    let at = i * sbits + offsets[second];
                    let xv = (idx[lane] >> shift) & mask(w);
                    // The unit's table shifted up one, entry −1 (B's `[x < r]` at
                    // x = −1 is 1, A's pad 0) below it: `below` and `lt` side by side
                    // (65 bits for a six-bit chunk).
                    let t = u128::from(bits_at(&gr.tables, at, 1 << w)) << 1 | u128::from(!is_a);
                    let (below, lt) = ((t >> xv) & 1, (t >> (xv + 1)) & 1);
                    set(&mut gvs[j], lane, lt as u64);
                    set(&mut pvs[j], lane, (below ^ lt) as u64);
                }
            }
        }
    }
    Leaves {
        h,
        top: tv,
        units: gvs.into_iter().zip(pvs).collect(),
    }
}

/// A comparison unit's table for the dealer's chunk `q` (at most [`WIDEST_CHUNK`] bits) as a
/// word, entry `x` in bit `x`: `[x < q]`; or for the lowest unit of the borrow, whose
/// entry `x = 2·a + h` also carries the parity `h` of the evaluators' floor,
/// `[a < q/2] ∨ (a = q/2 ∧ h ⊕ parity)` (`q`'s own lowest bit is zero).
fn less_than(q: u64, parity: Option<u64>) -> u64 {
    match parity {
        None => mask(q as u32),
        Some(p) => mask(q as u32) | 1 << (q | (1 ^ p)),
    }
}

/// The dealer's draws (in the evaluators' order on each key) and its message to `B`.
fn dealer_material<W: Word>(
    p: &mut Rep3<W>,
    gr: &Part<W>,
    plan: &RequantPlan,
    r: &[u64],
) -> R<Vec<u8>> {
    let nn = gr.n();
    let m = plan.m;
    let levels = plan.levels();
    let sbits = plan.table_bits();
    let pads = p.draw_bits(gr.da, nn * sbits);
    let rtop_pad = p.draw_bits(gr.da, nn);
    let ta = draw_triples(p, gr.da, &levels, LANES * nn, true);
    let e_a = p.draw_bits(gr.da, 3 * nn);
    let arith_a: Vec<W> = p.draw_words(gr.da, ARITH * nn);
    let tb = draw_triples(p, gr.db, &levels, LANES * nn, false);
    let e_b = p.draw_bits(gr.db, 3 * nn);
    let e = xor(&e_a, &e_b);

    let mut tables = vec![0u64; words(nn * sbits)];
    let mut rtop = vec![0u64; words(nn)];
    let mut values: Vec<W> = vec![W::ZERO; ARITH * nn];
    // Where each borrow chunk's table starts, for the readings `r` and `r − 2^m`.
    let b_offsets: [Vec<usize>; 2] = [false, true].map(|second| {
        (0..plan.borrow.widths.len())
            .map(|j| plan.b_table_offset(j, second))
            .collect()
    });
    // A twin computes no values (see `Word::DATA`).
    if W::DATA {
        for (i, e_idx) in gr.range.clone().enumerate() {
            let r = r[i];
            let d = plan.divs[e_idx];
            let rt = (r >> (m - 1)) & 1;
            set(&mut rtop, i, rt);
            // Threshold tables: [x < chunk_j(r mod 2^(m−1))].
            let (mut shift, mut off) = (0u32, 0usize);
            for &w in &plan.t_chunks {
                let rj = (r >> shift) & mask(w);
                or_bits(&mut tables, i * sbits + off, less_than(rj, None), 1 << w);
                shift += w;
                off += 1usize << w;
            }
            // `y = c − r` when `c`'s top bit is set, else `y = c − (r − rt·2^m)`: `Q = r'·num`
            // for both readings `r'` of the mask, split at `D`.
            let readings = [r as i128, r as i128 - ((rt as i128) << m)];
            let split_q = |rv: i128| {
                let (h, l) = floor_divide(rv * d.num as i128, d.den);
                (l as u64, h)
            };
            let (ql1, qh1) = split_q(readings[0]);
            let (ql0, qh0) = split_q(readings[1]);
            let sets: &[(u64, i128)] = if plan.dual {
                &[(ql1, qh1), (ql0, qh0)]
            } else {
                &[(ql1, qh1)]
            };
            for (v, &(ql, qh)) in sets.iter().enumerate() {
                // Borrow tables on 2·Q_l: the lowest chunk also takes the parity.
                let parity = (qh & 1) as u64;
                let q2 = ql << 1;
                let mut shift = 0u32;
                for (j, &w) in plan.borrow.widths.iter().enumerate() {
                    let qj = (q2 >> shift) & mask(w);
                    if v == 1 && !plan.borrow.differs[j] {
                        debug_assert_eq!(((ql ^ ql1) << 1 >> shift) & mask(w), 0);
                        shift += w;
                        continue;
                    }
                    shift += w;
                    let table = less_than(qj, (j == 0).then_some(parity));
                    let at = i * sbits + b_offsets[v][j];
                    or_bits(&mut tables, at, table, 1 << w);
                }
            }
            let bitw = |v: u64| W::from_u128(u128::from(v));
            let (e1, e2, e3) = (get(&e, i), get(&e, nn + i), get(&e, 2 * nn + i));
            let (q1w, q0w) = (ring::<W>(qh1), ring::<W>(qh0));
            let vals = [
                bitw(e1),
                bitw(e2),
                bitw(e3),
                bitw(e1 & e2),
                q1w,
                bitw(e1).mul(q1w),
                q0w,
                bitw(e1).mul(q0w),
            ];
            for (k, v) in vals.into_iter().enumerate() {
                values[k * nn + i] = v.sub(arith_a[k * nn + i]);
            }
        }
    }
    let mut msg = Vec::with_capacity(plan.dealer_bytes(nn, W::BYTES));
    pack(&xor(&tables, &pads), nn * sbits, &mut msg);
    pack(&xor(&rtop, &rtop_pad), nn, &mut msg);
    pack_b_products(&ta, &tb, &levels, LANES * nn, &mut msg)?;
    put_words(&values, &mut msg);
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word tables are the entry-by-entry definitions.
    #[test]
    fn comparison_tables_as_words_match_their_entries() {
        for w in 1..=WIDEST_CHUNK {
            for q in 0..(1u64 << w) {
                let word = less_than(q, None);
                for x in 0..(1u64 << w) {
                    assert_eq!((word >> x) & 1, u64::from(x < q), "w {w}, q {q}, x {x}");
                }
                if q & 1 == 1 {
                    continue;
                }
                for parity in 0..2 {
                    let word = less_than(q, Some(parity));
                    for x in 0..(1u64 << w) {
                        let (a, half) = (x >> 1, q >> 1);
                        let lt = a < half || (a == half && ((x & 1) ^ parity) == 1);
                        assert_eq!((word >> x) & 1, u64::from(lt), "w {w}, q {q}, x {x}");
                    }
                }
            }
        }
    }
}
