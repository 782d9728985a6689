//! `clamp(round_half_even(x·num/d) + zp, lo, hi)` for authenticated shares: `semi2k`'s
//! plan ([`crate::semi2k::select`], whose module doc derives it) with every bit the dealer
//! gives and every bit the parties compute held as an authenticated value whose meaning is
//! its low bit. XOR is then addition, an AND a Beaver product whose openings reveal one
//! bit each, and the dealer's bits `e` are at once the masks of the opened selectors and
//! their exact 0/1 values in the ring (daBits for free). Same rounds and online bytes as
//! `semi2k`; every opening goes to the check ledger.

use super::auth::{Auth, Ctx};
use super::Spdz2k;
use crate::bitvec::{get, low_mask as mask};
use crate::cheat;
use crate::cost::Rounds;
use crate::semi2k::prep::{random_words, Block};
use crate::semi2k::select::{all_to_all, Lane, Plan};
use crate::stream::Stream;
use crate::word::Word;
use crate::{Bounds, ProtocolError, Requant};

type R<T> = Result<T, ProtocolError>;

/// Ring values per element at the head of the material (`semi2k`'s words: `r`, `e_1..3`,
/// `e_1·e_2`, then `Q_h` and `e_1·Q_h` of both readings), `r` with random bits above its
/// `m`; then `e_1..3` again with random bits above the lowest, the masks of the openings.
const WORDS: usize = 9;
const MASKED_E: usize = 3;

/// Authenticated values of one call's material on `n` elements: the words, the masked
/// `e`s, the tables, the top bits of `r`, then the tree's triples (`semi2k`'s XOR copy of
/// `e` is not needed).
pub(super) fn count(plan: &Plan, n: usize) -> usize {
    let l = plan.layout(n);
    l.words
        + MASKED_E * n
        + l.segments
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != 2)
            .map(|(_, &b)| b)
            .sum::<usize>()
}

/// The messages of one call on `n` elements among `parties`: `semi2k`'s rounds, each
/// opened value 16 bytes.
pub(super) fn pattern(plan: &Plan, n: usize, parties: usize) -> Rounds {
    let lanes = plan.lanes.len() * n;
    let mut values = vec![n];
    for (pairs, last) in plan.levels() {
        values.push(pairs * lanes * if last { 2 } else { 3 });
    }
    if plan.opened_count() > 0 {
        values.push(plan.opened_count() * n);
    }
    values
        .into_iter()
        .map(|v| all_to_all(parties, 16 * v))
        .collect()
}

/// The dealer's values for `q` on `n` elements, in [`count`]'s order. Everything that is
/// opened is masked by values uniform in Z_2^128 that agree with `semi2k`'s in the bits the
/// parties read.
pub(super) fn deal(plan: &Plan, q: &Requant, rng: &mut Stream) -> Vec<u128> {
    let n = q.num.len();
    let block: Block<u128> = plan.deal(q, rng);
    let l = plan.layout(n);
    let mut high = |bits: u32| random_words::<u128>(rng, 1)[0] << bits;
    let mut out = block.words;
    for v in &mut out[..n] {
        *v = v.wrapping_add(high(plan.m));
    }
    for k in 1..=MASKED_E {
        for i in 0..n {
            let e = out[k * n + i];
            out.push(e.wrapping_add(high(1)));
        }
    }
    let segs = &block.segs;
    let bits = |k: usize| (0..l.segments[k]).map(move |i| u128::from(get(&segs[k], i)));
    out.extend(bits(0));
    out.extend(bits(1));
    // Per level: a, b_1, c_1, b_2, c_2 as Beaver triples uniform in Z_2^128 whose low bits
    // are the AND triples: c = a·b exactly, so c ≡ a_0·b_0 mod 2.
    for (level, lens) in segs[3..].chunks(5).zip(l.segments[3..].chunks(5)) {
        let masked = |k: usize, high: &mut dyn FnMut(u32) -> u128| -> Vec<u128> {
            (0..lens[k])
                .map(|i| u128::from(get(&level[k], i)).wrapping_add(high(1)))
                .collect()
        };
        let a = masked(0, &mut high);
        for b_at in [1, 3] {
            let b = masked(b_at, &mut high);
            let c: Vec<u128> = a.iter().zip(&b).map(|(a, b)| a.wrapping_mul(*b)).collect();
            out.extend(if b_at == 1 { a.clone() } else { Vec::new() });
            out.extend(b);
            out.extend(c);
        }
    }
    out
}

/// The most elements one selection takes at once
/// ([`crate::func::Selection::max_selection`]): its material holds every table bit as a
/// 128-bit value with its MAC, some 600 authenticated values (19 KB) per element of a
/// convolution's requantization, and the dealer and both parties hold several copies of a
/// block on its way, so ResNet-18's first one (802,816 elements) passed 22 GB in one
/// piece. Each piece is its own rounds: ResNet-18 in pieces of 2^17 took 364 rounds and
/// over 9 GB, of 2^15 870 rounds and 8.2–9.1 GB RSS (250–280 s), of 2^13 2,820 rounds and
/// 3.4 GB (139 s: smaller blocks are faster on one machine, not over a slow network). The
/// cure is fewer bytes per bit (NOTES.md, issue 21 sessions 9 and 13). 32 in the unit
/// tests, so that they run in pieces too.
pub(super) const MAX_SELECTION: usize = if cfg!(test) { 1 << 5 } else { 1 << 13 };

/// The most one-hot entries (elements × the table's padded size) one lookup takes at
/// once ([`crate::func::Selection::max_lookup_words`]): each entry is an authenticated
/// 128-bit value (32 bytes per party, in several copies on its way from the dealer), so
/// an EfficientNet-B0 SiLU of 401,408 elements into 256 entries was 3.3 GB per party
/// and copy in one piece. 2^21 entries are 64 MB; each piece is its own round.
pub(super) const MAX_LOOKUP_WORDS: usize = if cfg!(test) { 1 << 12 } else { 1 << 21 };

/// `f` on the pieces of a lookup of `x` into a table of `table_len` entries, cut as the
/// generic lookup cuts ([`crate::func::lookup::in_pieces`]): the parties and the
/// counting dealer alike.
pub(super) fn lookup_in_pieces<S: crate::planes::Plane>(
    x: &S,
    table_len: usize,
    f: impl FnMut(std::ops::Range<usize>, &S) -> R<S>,
) -> R<S> {
    let bits = crate::func::lookup::index_bits(table_len).min(usize::BITS - 1);
    crate::func::in_pieces(x, (MAX_LOOKUP_WORDS >> bits).max(1), f)
}

/// Per chunk unit: shares of `lt` and `eq` over all lanes.
type Unit = (Vec<Auth>, Vec<Auth>);

/// This party's share of `q` applied to `x` (values in `b`).
pub(super) fn eval<W: Word>(
    p: &mut Spdz2k<W>,
    x: &[Auth],
    q: &Requant,
    b: Bounds,
    plan: &Plan,
) -> R<Vec<Auth>> {
    let n = x.len();
    let mat = p.take_auth(count(plan, n))?;
    let ctx = p.ctx();
    let m = plan.m;
    let mm = mask(m);
    let word = |k: usize, i: usize| mat[k * n + i];
    let masked_e = |k: usize, i: usize| mat[(WORDS + k) * n + i];
    let tb = plan.table_bits();
    let head = (WORDS + MASKED_E) * n;
    let tables = &mat[head..head + n * tb];
    let rtop = &mat[head + n * tb..head + n * tb + n];
    let triples = &mat[head + n * tb + n..];

    // Round 1: c = y + r mod 2^m.
    let neg_lo = super::auth::lift(b.lo).wrapping_neg();
    let ys: Vec<Auth> = (0..n)
        .map(|i| ctx.add_const(x[i], neg_lo).add(word(0, i)))
        .collect();
    let c: Vec<u64> = p
        .open_one(cheat::Kind::Compare, &ys)?
        .into_iter()
        .map(|v| v as u64 & mm)
        .collect();
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
    let lanes = plan.lanes.len() * n;
    let one = ctx.constant(1);
    let mut units: Vec<Unit> = (0..plan.units)
        .map(|_| (vec![Auth::ZERO; lanes], vec![Auth::ZERO; lanes]))
        .collect();
    let mut fixed_part = vec![Auth::ZERO; lanes];
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
                    let public = 1 ^ (a >> (m - 1));
                    fixed_part[at] = ctx.add_const(rtop[i], u128::from(public));
                    (a & mask(m - 1), &plan.t_chunks)
                }
            };
            let mut shift = 0u32;
            for (j, unit) in units.iter_mut().enumerate() {
                let Some(&w) = chunks.get(j) else {
                    // A neutral unit on top: lt = 0, eq = 1.
                    unit.1[at] = one;
                    continue;
                };
                let v = ((index >> shift) & mask(w)) as usize;
                let base = i * tb + offsets[usize::from(second)][j];
                let lt = tables[base + v];
                let below = if v == 0 { one } else { tables[base + v - 1] };
                unit.0[at] = lt;
                unit.1[at] = below.add(lt);
                shift += w;
            }
        }
    }
    let lt = tree(p, units, lanes, triples, &plan.levels())?;
    let results: Vec<Auth> = lt.iter().zip(&fixed_part).map(|(a, f)| a.add(*f)).collect();

    // Shares (low bit) of g_mid = g_lo ⊕ g_hi, β and g_hi per element, or public bits.
    let lane_bit = |l: Lane, i: usize, public: u64| match plan.lanes.iter().position(|&x| x == l) {
        Some(k) => results[k * n + i],
        None => ctx.constant(u128::from(public)),
    };
    let mut sel: [Vec<Auth>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..n {
        let (t_lo, t_hi) = plan.thresholds[i];
        let g_lo = lane_bit(Lane::Lo, i, Plan::fixed(t_lo));
        let g_hi = lane_bit(Lane::Hi, i, Plan::fixed(t_hi));
        sel[0].push(g_lo.add(g_hi));
        sel[1].push(lane_bit(Lane::Borrow, i, 0));
        sel[2].push(g_hi);
    }
    // Open the secret ones masked by e (1 bit each); the public ones are known to all.
    let opened = plan.opened();
    let mut masked = Vec::new();
    for (k, &o) in opened.iter().enumerate() {
        if o {
            masked.extend((0..n).map(|i| sel[k][i].add(masked_e(k, i))));
        }
    }
    let mut h = vec![[0u64; 3]; n];
    if !masked.is_empty() {
        let all: Vec<u64> = p
            .open_one(cheat::Kind::Compare, &masked)?
            .iter()
            .map(|v| (v & 1) as u64)
            .collect();
        let mut at = 0;
        for (k, &o) in opened.iter().enumerate() {
            if o {
                for (i, hi) in h.iter_mut().enumerate() {
                    hi[k] = all[at * n + i];
                }
                at += 1;
            }
        }
    }
    for (i, hi) in h.iter_mut().enumerate() {
        let (t_lo, t_hi) = plan.thresholds[i];
        let public = [Plan::fixed(t_lo) ^ Plan::fixed(t_hi), 0, Plan::fixed(t_hi)];
        for (k, &o) in opened.iter().enumerate() {
            if !o {
                hi[k] = public[k];
            }
        }
    }

    // Shares of the result: `g = h ⊕ e = h + (1 − 2h)·e` is linear in the dealer's e.
    let bit = |v: u64| u128::from(v);
    let sign = |v: u64| if v == 1 { u128::MAX } else { 1 };
    let ring = |v: i128| v as u128;
    let span = ring(q.hi as i128 - q.lo as i128);
    Ok((0..n)
        .map(|i| {
            let [mh, bh, hh] = h[i];
            let mid = ctx.add_const(word(1, i).scale(sign(mh)), bit(mh));
            let qk = if top(i) == 1 { 5 } else { 7 };
            let mid_qh = word(qk, i)
                .scale(bit(mh))
                .add(word(qk + 1, i).scale(sign(mh)));
            let mid_beta = ctx.add_const(
                word(2, i)
                    .scale(bit(mh).wrapping_mul(sign(bh)))
                    .add(word(1, i).scale(bit(bh).wrapping_mul(sign(mh))))
                    .add(word(4, i).scale(sign(mh).wrapping_mul(sign(bh)))),
                bit(mh & bh),
            );
            let hi_bit = ctx.add_const(word(3, i).scale(sign(hh)), bit(hh));
            let v = ring(hs[i] + q.zp[i] as i128 - q.lo as i128);
            ctx.add_const(
                mid.scale(v)
                    .sub(mid_qh)
                    .sub(mid_beta)
                    .add(hi_bit.scale(span)),
                super::auth::lift(q.lo),
            )
        })
        .collect())
}

/// Combine the units pairwise, one round of Beaver ANDs per level (`lt = lt_hi ⊕
/// eq_hi·lt_lo`, `eq = eq_hi·eq_lo`, both sharing the triple's `a`); the openings are one
/// bit each. Returns the shares of `lt` of the whole comparison.
fn tree<W: Word>(
    p: &mut Spdz2k<W>,
    mut units: Vec<Unit>,
    lanes: usize,
    triples: &[Auth],
    levels: &[(usize, bool)],
) -> R<Vec<Auth>> {
    let ctx: Ctx = p.ctx();
    let mut at = 0;
    for &(pairs, last) in levels {
        let bits = pairs * lanes;
        let mut take = |len: usize| {
            let s = &triples[at..at + len];
            at += len;
            s
        };
        let (a, b1, c1) = (take(bits), take(bits), take(bits));
        let second = if last { 0 } else { bits };
        let (b2, c2) = (take(second), take(second));
        let cat = |unit: usize, eq: bool| -> Vec<Auth> {
            (0..pairs)
                .flat_map(|j| {
                    let u = &units[2 * j + unit];
                    if eq { &u.1 } else { &u.0 }.iter().copied()
                })
                .collect()
        };
        let eq_hi = cat(1, true);
        let lt_lo = cat(0, false);
        let eq_lo = if last { Vec::new() } else { cat(0, true) };
        let d: Vec<Auth> = eq_hi.iter().zip(a).map(|(x, a)| x.sub(*a)).collect();
        let f1: Vec<Auth> = lt_lo.iter().zip(b1).map(|(x, b)| x.sub(*b)).collect();
        let f2: Vec<Auth> = if last {
            Vec::new()
        } else {
            eq_lo.iter().zip(b2).map(|(x, b)| x.sub(*b)).collect()
        };
        let mut groups: Vec<&[Auth]> = vec![&d, &f1];
        if !last {
            groups.push(&f2);
        }
        let o = p.open(cheat::Kind::Compare, &groups)?;
        // The full Beaver identity: the product is exact in Z_2^128, so its low bit is
        // the AND of the low bits.
        let and = |k: usize, f: &[u128], b: &[Auth], c: &[Auth]| -> Auth {
            let (dv, fv) = (o[0][k], f[k]);
            ctx.add_const(
                c[k].add(b[k].scale(dv)).add(a[k].scale(fv)),
                dv.wrapping_mul(fv),
            )
        };
        units = (0..pairs)
            .map(|j| {
                let lt = (0..lanes)
                    .map(|l| units[2 * j + 1].0[l].add(and(j * lanes + l, &o[1], b1, c1)))
                    .collect();
                let eq = if last {
                    Vec::new()
                } else {
                    (0..lanes)
                        .map(|l| and(j * lanes + l, &o[2], b2, c2))
                        .collect()
                };
                (lt, eq)
            })
            .collect();
    }
    Ok(units.swap_remove(0).0)
}
