//! The comparison tree of the dealer-assisted tests ([`super::assist`], [`super::requant`]):
//! the units `(G, P) = (lt, eq)` of a comparison's chunks, least significant first, held as
//! XOR shares by the evaluators `A` and `B`, combined into the whole `lt` with the dealer's
//! correlated randomness.
//!
//! - A level of *pairs* (one round) combines `(G, P) = (G_h ⊕ P_h·G_l, P_h·P_l)` with Beaver
//!   ANDs; the last level needs no `P`.
//! - When three or four units are left (up to seven favouring rounds, [`Favor`]), one
//!   *last* round combines them at once:
//!   `lt = G_{k−1} ⊕ ⊕_{i<k−1} G_i·Π_{j>i} P_j` (the terms exclude each other, so XOR is
//!   OR). Every factor `x_v` is opened masked, `o_v = x_v ⊕ m_v`, and a monomial is
//!   `Π_{v∈T} x_v = ⊕_{S⊆T} (Π_{v∈T∖S} o_v)·M_S` with `M_S = Π_{v∈S} m_v`, which the dealer
//!   shares for every `S` of two or more factors of one monomial (15 sets for four units, 5
//!   for three). Against the two levels of pairs it replaces, it saves a round for ten
//!   more dealt bits per lane, and opens two bits fewer.
//!
//! The dealer `D` knows every mask; `A` draws its parts (and its parts of the products)
//! from the key it shares with `D`, `B` its mask parts from the key of `D` and `B`, and `D`
//! sends `B` its parts of the products. What an evaluator sees, the other's openings, is
//! masked by fresh masks it does not hold.

use super::assist::{Inbox, Post};
use super::Rep3;
use crate::bitvec::{and, bit_bytes, clear_tail, concat, pack, part, words, xor};
use crate::word::Word;
use crate::{Favor, PartyId, ProtocolError};

type R<T> = Result<T, ProtocolError>;

/// Correlated randomness drawn for another tree than the one it is used in (a bug, not
/// an input: both sides draw by the same levels).
fn mismatch() -> ProtocolError {
    ProtocolError::Invalid("rep3 comparison tree: randomness drawn for other levels".into())
}

/// One round of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    /// `pairs` pairs of units combine; the `last` level computes no `P`.
    Pairs { pairs: usize, last: bool },
    /// The last `units` (3 to 7, [`last_units`]) combine at once into `lt`.
    Last { units: usize },
}

impl Level {
    /// Bits of each vector a party opens in this level, over `lanes` lanes.
    fn len(self, lanes: usize) -> usize {
        match self {
            Level::Pairs { pairs, .. } => pairs * lanes,
            Level::Last { .. } => lanes,
        }
    }
}

/// The most units a last level combines: four where bytes count most (15 dealt products
/// per lane), seven where rounds do (177; see [`products`]).
fn last_units(favor: Favor) -> usize {
    match favor {
        Favor::Bytes => 4,
        Favor::Rounds => 7,
    }
}

/// The rounds that reduce `units` units to one.
pub(super) fn levels(units: usize, favor: Favor) -> Vec<Level> {
    let widest = last_units(favor);
    let mut units = units;
    let mut out = Vec::new();
    while units > widest {
        out.push(Level::Pairs {
            pairs: units / 2,
            last: false,
        });
        units = units.div_ceil(2);
    }
    match units {
        2 => out.push(Level::Pairs {
            pairs: 1,
            last: true,
        }),
        3.. => out.push(Level::Last { units }),
        _ => {}
    }
    out
}

/// Factors of the last level over `k` units: `P_1 … P_{k−1}` (factors `0 … k−2`), then
/// `G_0 … G_{k−2}` (factors `k−1 … 2k−3`).
fn factors(k: usize) -> usize {
    2 * (k - 1)
}

/// The monomials `G_i·Π_{j>i} P_j`, `i < k − 1`, as sets of factors.
fn monomials(k: usize) -> Vec<u32> {
    (0..k - 1)
        .map(|i| {
            let p: u32 = (i + 1..k).map(|j| 1u32 << (j - 1)).sum();
            p | 1 << (k - 1 + i)
        })
        .collect()
}

/// Every subset of `t` (`t` itself first, the empty set last).
fn subsets(t: u32) -> impl Iterator<Item = u32> {
    let mut next = Some(t);
    std::iter::from_fn(move || {
        let s = next?;
        next = (s != 0).then(|| (s - 1) & t);
        Some(s)
    })
}

/// The products the dealer shares for the last level over `k` units: every set of two or
/// more factors within one monomial, ascending.
fn products(k: usize) -> Vec<u32> {
    let mut s: Vec<u32> = monomials(k)
        .into_iter()
        .flat_map(subsets)
        .filter(|s| s.count_ones() >= 2)
        .collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// One party's correlated randomness for one level.
pub(super) enum Triples {
    /// Beaver triples: `a` is shared by the pair's two ANDs (`P_h·G_l` and `P_h·P_l`).
    Pairs {
        a: Vec<u64>,
        b1: Vec<u64>,
        b2: Vec<u64>,
        c1: Vec<u64>,
        c2: Vec<u64>,
    },
    /// The masks of the factors and the parts of their products ([`products`]).
    Last {
        masks: Vec<Vec<u64>>,
        prods: Vec<Vec<u64>>,
    },
}

/// Draw one party's parts for a tree over `lanes` lanes from key `key`; `with_c` for `A`
/// (and the dealer's copy of `A`'s parts), whose product parts are random. The dealer
/// calls it with the evaluators' keys, so both sides draw in the same order by
/// construction.
pub(super) fn draw_triples<W: Word>(
    p: &mut Rep3<W>,
    key: usize,
    levels: &[Level],
    lanes: usize,
    with_c: bool,
) -> Vec<Triples> {
    let mut draw = |n: usize, on: bool| {
        if on {
            p.draw_bits(key, n)
        } else {
            Vec::new()
        }
    };
    levels
        .iter()
        .map(|&level| match level {
            Level::Pairs { pairs, last } => {
                let len = pairs * lanes;
                let a = draw(len, true);
                let b1 = draw(len, true);
                let b2 = draw(len, !last);
                let c1 = draw(len, with_c);
                let c2 = draw(len, with_c && !last);
                Triples::Pairs { a, b1, b2, c1, c2 }
            }
            Level::Last { units } => {
                let masks = (0..factors(units)).map(|_| draw(lanes, true)).collect();
                let prods = if with_c {
                    products(units).iter().map(|_| draw(lanes, true)).collect()
                } else {
                    Vec::new()
                };
                Triples::Last { masks, prods }
            }
        })
        .collect()
}

/// Bytes the dealer sends `B` for a tree over `lanes` lanes.
pub(super) fn dealer_bytes(levels: &[Level], lanes: usize) -> usize {
    levels
        .iter()
        .map(|&level| match level {
            Level::Pairs { pairs, last } => bit_bytes(pairs * lanes) * if last { 1 } else { 2 },
            Level::Last { units } => products(units).len() * bit_bytes(lanes),
        })
        .sum()
}

/// `B`'s product parts, as the dealer computes them from both evaluators' draws (`x` is
/// `A`'s, with its product parts), packed per level.
pub(super) fn pack_b_products(
    x: &[Triples],
    y: &[Triples],
    levels: &[Level],
    lanes: usize,
    msg: &mut Vec<u8>,
) -> R<()> {
    for ((level, x), y) in levels.iter().zip(x).zip(y) {
        match (level, x, y) {
            (
                &Level::Pairs { pairs, last },
                Triples::Pairs { a, b1, b2, c1, c2 },
                Triples::Pairs {
                    a: ya,
                    b1: yb1,
                    b2: yb2,
                    ..
                },
            ) => {
                let len = pairs * lanes;
                let a = xor(a, ya);
                pack(&xor(&and(&a, &xor(b1, yb1)), c1), len, msg);
                if !last {
                    pack(&xor(&and(&a, &xor(b2, yb2)), c2), len, msg);
                }
            }
            (
                &Level::Last { units },
                Triples::Last { masks, prods },
                Triples::Last { masks: ymasks, .. },
            ) => {
                let m: Vec<Vec<u64>> = masks.iter().zip(ymasks).map(|(x, y)| xor(x, y)).collect();
                for (s, mine) in products(units).into_iter().zip(prods) {
                    let mut v = m[s.trailing_zeros() as usize].clone();
                    for (f, mf) in m.iter().enumerate() {
                        if s >> f & 1 == 1 {
                            v = and(&v, mf);
                        }
                    }
                    pack(&xor(&v, mine), lanes, msg);
                }
            }
            // Both parties' draws follow `levels`.
            _ => return Err(mismatch()),
        }
    }
    Ok(())
}

/// `B` reads its product parts from the dealer's message.
pub(super) fn receive_products(
    triples: &mut [Triples],
    levels: &[Level],
    lanes: usize,
    inbox: &mut Inbox,
    dealer: PartyId,
) -> R<()> {
    for (t, &level) in triples.iter_mut().zip(levels) {
        match (t, level) {
            (Triples::Pairs { c1, c2, .. }, Level::Pairs { pairs, last }) => {
                *c1 = inbox.bits(dealer, pairs * lanes);
                if !last {
                    *c2 = inbox.bits(dealer, pairs * lanes);
                }
            }
            (Triples::Last { prods, .. }, Level::Last { units }) => {
                *prods = products(units)
                    .iter()
                    .map(|_| inbox.bits(dealer, lanes))
                    .collect();
            }
            _ => return Err(mismatch()),
        }
    }
    Ok(())
}

/// Comparison units `(lt, eq)` over the lanes, least significant first.
pub(super) type Units = Vec<(Vec<u64>, Vec<u64>)>;

/// One evaluator's comparison tree in one group.
pub(super) struct Tree<'t> {
    pub is_a: bool,
    /// The other evaluator.
    pub other: PartyId,
    pub lanes: usize,
    pub triples: &'t [Triples],
    pub units: Units,
}

impl Tree<'_> {
    /// This evaluator's masked factors of `level`, to be sent to the other.
    fn opening(&self, level: Level, triples: &Triples) -> R<Vec<Vec<u64>>> {
        let u = &self.units;
        Ok(match (level, triples) {
            (Level::Pairs { pairs, last }, Triples::Pairs { a, b1, b2, .. }) => {
                let xs: Vec<&Vec<u64>> = (0..pairs).map(|k| &u[2 * k + 1].1).collect();
                let y1: Vec<&Vec<u64>> = (0..pairs).map(|k| &u[2 * k].0).collect();
                let mut out = vec![
                    xor(&concat(&xs, self.lanes), a),
                    xor(&concat(&y1, self.lanes), b1),
                ];
                if !last {
                    let y2: Vec<&Vec<u64>> = (0..pairs).map(|k| &u[2 * k].1).collect();
                    out.push(xor(&concat(&y2, self.lanes), b2));
                }
                out
            }
            (Level::Last { units }, Triples::Last { masks, .. }) => (0..factors(units))
                .map(|v| {
                    let x = if v < units - 1 {
                        &u[v + 1].1
                    } else {
                        &u[v + 1 - units].0
                    };
                    xor(x, &masks[v])
                })
                .collect(),
            _ => return Err(mismatch()),
        })
    }

    /// The units after `level`, from the opened factors `o`.
    fn combine(&self, level: Level, triples: &Triples, o: &[Vec<u64>]) -> R<Units> {
        let u = &self.units;
        Ok(match (level, triples) {
            (Level::Pairs { pairs, last }, Triples::Pairs { a, b1, b2, c1, c2 }) => {
                let ox = &o[0];
                // x·y = d·e ⊕ d·b ⊕ e·a ⊕ c, with d·e added by A only.
                let prod = |oy: &[u64], bb: &[u64], cc: &[u64]| -> Vec<u64> {
                    let mut z = xor(&xor(&and(ox, bb), &and(oy, a)), cc);
                    if self.is_a {
                        z = xor(&z, &and(ox, oy));
                    }
                    z
                };
                let g1 = prod(&o[1], b1, c1);
                let g2 = if last {
                    Vec::new()
                } else {
                    prod(&o[2], b2, c2)
                };
                let mut next = Vec::with_capacity(pairs + 1);
                for k in 0..pairs {
                    let gk = xor(&u[2 * k + 1].0, &part(&g1, k, self.lanes));
                    let pk = if last {
                        Vec::new()
                    } else {
                        part(&g2, k, self.lanes)
                    };
                    next.push((gk, pk));
                }
                if u.len() % 2 == 1 {
                    next.push(u[u.len() - 1].clone());
                }
                next
            }
            (Level::Last { units }, Triples::Last { masks, prods }) => {
                let sets = products(units);
                let mut ones = vec![u64::MAX; words(self.lanes)];
                clear_tail(&mut ones, self.lanes);
                // Products of opened factors, by set, computed once each.
                let mut coef: Vec<Option<Vec<u64>>> = vec![None; 1 << factors(units)];
                coef[0] = Some(ones.clone());
                let mut coef_of = |s: u32| -> Vec<u64> {
                    let mut todo = Vec::new();
                    let mut t = s;
                    while coef[t as usize].is_none() {
                        todo.push(t);
                        t &= t - 1;
                    }
                    for t in todo.into_iter().rev() {
                        let rest = coef[(t & (t - 1)) as usize].as_ref().map_or_else(
                            || ones.clone(),
                            |c| and(c, &o[t.trailing_zeros() as usize]),
                        );
                        coef[t as usize] = Some(rest);
                    }
                    coef[s as usize].clone().unwrap_or_default()
                };
                let mut lt = u[units - 1].0.clone();
                for t in monomials(units) {
                    for s in subsets(t) {
                        let share: Option<&Vec<u64>> = match s.count_ones() {
                            0 => self.is_a.then_some(&ones),
                            1 => Some(&masks[s.trailing_zeros() as usize]),
                            _ => sets.iter().position(|&x| x == s).map(|i| &prods[i]),
                        };
                        if let Some(share) = share {
                            lt = xor(&lt, &and(&coef_of(t & !s), share));
                        }
                    }
                }
                vec![(lt, Vec::new())]
            }
            _ => return Err(mismatch()),
        })
    }
}

/// Combine the units of every tree, one round per level (every party takes part in every
/// round, with or without a tree); on return `units[0].0` of each tree is its `lt`.
pub(super) fn combine_tree<W: Word>(
    p: &mut Rep3<W>,
    trees: &mut [Option<Tree>],
    levels: &[Level],
) -> R<()> {
    for (lv, &level) in levels.iter().enumerate() {
        let mut post = Post::new();
        let mut opened: Vec<Vec<Vec<u64>>> = Vec::with_capacity(trees.len());
        for t in trees.iter() {
            let Some(t) = t else {
                opened.push(Vec::new());
                continue;
            };
            let d = t.opening(level, &t.triples[lv])?;
            let len = level.len(t.lanes);
            let mut msg = Vec::new();
            for v in &d {
                pack(v, len, &mut msg);
            }
            post.expect[t.other] += msg.len();
            post.send(t.other, msg);
            opened.push(d);
        }
        let mut inbox = p.post(post)?;
        for (t, d) in trees.iter_mut().zip(opened) {
            let Some(t) = t else { continue };
            let len = level.len(t.lanes);
            let o: Vec<Vec<u64>> = d
                .iter()
                .map(|v| xor(v, &inbox.bits(t.other, len)))
                .collect();
            t.units = t.combine(level, &t.triples[lv], &o)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_end_in_one_round_over_three_or_four_units() {
        let count = |u| levels(u, Favor::Bytes).len();
        assert_eq!(
            (1..=9).map(count).collect::<Vec<_>>(),
            [0, 1, 1, 1, 2, 2, 2, 2, 3]
        );
        assert_eq!(levels(8, Favor::Bytes)[1], Level::Last { units: 4 });
        assert_eq!(levels(5, Favor::Bytes)[1], Level::Last { units: 3 });
    }

    #[test]
    fn round_lean_levels_end_in_one_round_over_up_to_seven_units() {
        let count = |u| levels(u, Favor::Rounds).len();
        assert_eq!(
            (1..=15).map(count).collect::<Vec<_>>(),
            [0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3]
        );
        assert_eq!(levels(7, Favor::Rounds), [Level::Last { units: 7 }]);
        assert_eq!(levels(14, Favor::Rounds)[1], Level::Last { units: 7 });
        assert_eq!(products(7).len(), 177);
    }

    #[test]
    fn the_dealer_shares_fifteen_products_for_four_units_and_five_for_three() {
        assert_eq!(products(4).len(), 15);
        assert_eq!(products(3).len(), 5);
        assert_eq!(subsets(0b101).collect::<Vec<_>>(), [0b101, 0b100, 0b001, 0]);
    }

    /// The last level's formula over plain bits: the masked evaluation of every monomial
    /// equals `lt` of the units, for every assignment of three and four units' bits and
    /// masks.
    #[test]
    fn the_last_level_computes_the_comparison_of_its_units() {
        for k in 3usize..=7 {
            let nf = factors(k);
            for units in 0u32..1 << (2 * k) {
                // Unit j: (G, P) from bits 2j, 2j+1; lt and eq exclude each other.
                let g = |j: usize| units >> (2 * j) & 1;
                let pbit = |j: usize| units >> (2 * j + 1) & 1;
                if (0..k).any(|j| g(j) & pbit(j) == 1) {
                    continue;
                }
                let mut want = 0;
                for j in (0..k).rev() {
                    if g(j) == 1 {
                        want = 1;
                        break;
                    }
                    if pbit(j) == 0 {
                        break;
                    }
                }
                let x = |v: usize| if v < k - 1 { pbit(v + 1) } else { g(v + 1 - k) };
                for masks in [0u32, 0b1011_0110, (1 << nf) - 1] {
                    let m = |v: usize| masks >> v & 1;
                    let o = |v: usize| x(v) ^ m(v);
                    let mut lt = g(k - 1);
                    for t in monomials(k) {
                        for s in subsets(t) {
                            let coef = (0..nf)
                                .filter(|&v| (t & !s) >> v & 1 == 1)
                                .all(|v| o(v) == 1);
                            let ms = (0..nf).filter(|&v| s >> v & 1 == 1).all(|v| m(v) == 1);
                            lt ^= u32::from(coef && ms);
                        }
                    }
                    assert_eq!(lt, want, "k {k}, units {units:b}, masks {masks:b}");
                }
            }
        }
    }
}
