//! `clamp(round_half_even(x·num/d) + zp, lo, hi)` element-wise for Shamir shares, and
//! table lookups. Rescale, clamp, max and argmax are special cases of the first (see
//! [`crate::func`], which `shamir` shares with `semi2k`).
//!
//! Every element becomes a secret `v = (x − x_lo)·M < 2^K` (`M = num` unless `d` is not
//! a power of two) and a few *lanes* `floor((v + δ)/2^s)` for public `δ`, `s ≤ K`:
//!
//! 1. *bits* (1 round): `K` shared random bits `b_j` per element ([`compare::random_bits`]);
//! 2. *open* (1 round): `c = v + r` with `r = Σ_{j<K} 2^j b_j + 2^K·R`, `R` a statistical
//!    mask from the subset streams (no round) whose terms have `40 + bits(v) − K` bits
//!    (at least 40): nothing wraps in F_p, and `c` hides `v` to within 2^-40. The products
//!    `b_2m·b_(2m+1)` are reshared in the same round;
//! 3. *compare* (`⌈log2 w⌉` rounds): `floor((v + δ)/2^s) = ⌊(c + δ)/2^s⌋ − ⌊r/2^s⌋ −
//!    [(c + δ) mod 2^s < r mod 2^s]`, where `⌊r/2^s⌋` is linear in the bits and `R`, and
//!    the borrow is a comparison of public bits with shared ones ([`compare::less_than`])
//!    over `w` units: the 2-bit chunks of the mask, whose one-hot vectors make each
//!    unit's `(lt, eq)` linear. Every lane of every element is one comparison of one tree;
//! 4. *select* (1 round, with a clamp): `lo + (g_lo − g_hi)·(q + zp − lo) + g_hi·(hi − lo)`.
//!
//! With three parties the bits are daBits ([`dabits`], 2 rounds) and step 3 runs over
//! their replicated boolean shares ([`boolean`]): one unit per bit, no chunk products,
//! then one more round opens each borrow XOR a daBit to bring it into the field.
//!
//! The lanes: for `d = 2^s`, `q = ⌊(w + 2^(s−1))/2^s⌋` less one at a tie with an odd
//! quotient; a tie is `(c + δ) mod 2^s = r mod 2^s` and the quotient's parity is
//! `⌊(c + δ)/2^s⌋_0 ⊕ b_s` there, so one comparison of `s + 1` leaves with that parity as
//! the lowest leaf gives both. For an odd `d`, `q = ⌊(w + (d − 1)/2)/d⌋` and
//! `⌊(y·num + o)/d⌋ = ⌊(y·M + O)/2^S⌋` exactly for `y ≤ span` when `2^S ≥ (span + 1)·d`,
//! `M = ⌈num·2^S/d⌉`, `O = ⌈o·2^S/d⌉` (the round-ups add less than `1/d`). For
//! an even `d` that is not a power of two, with `D = 2d` and `a = w + d/2`, round half to
//! even is `⌊a/D⌋ + ⌊(a − d − 1)/D⌋ + 1`: two lanes. The clamp tests `[y ≥ T]` (`y = x −
//! x_lo`, thresholds from [`Plan`]) are `[v ≥ T·num·M] = ⌊(v + 2^K − T·num·M)/2^K⌋`.

use super::boolean::{self, Bits};
use super::compare::{self, leaf};
use super::dabits;
use super::geometry::Geometry;
use super::Shamir;
use crate::bitvec;
use crate::cost::Rounds;
use crate::field::Fp;
use crate::lanes::{self, bits, lanes_of, Element, Lane};
use crate::semi2k::select::Plan;
use crate::{Bounds, Core, ProtocolError, Requant};
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;

/// A clamp selector bit of one element: shared, or public where the secret cannot move it.
type Selector = Result<Fp, bool>;

/// The most elements one selection takes at once
/// ([`crate::func::Selection::max_selection`]): at its peak a selection holds kilobytes
/// per element (the mask bits as field elements and boolean shares, the daBits' and
/// the tree's messages), so ResNet-18's first ReLU (802,816 elements) took the process
/// to 8.7 GB with its three parties. A larger one runs in pieces of this size, each its
/// own rounds: 5.7 GB and 40 rounds more on ResNet-18 (2^17: 4.9 GB and 247 more;
/// NOTES.md, issue 21 session 8), 3.6 GB since the daBits stopped copying their draws
/// and messages (session 11), and 3.0 GB (836 rounds against 629; 71 s against 77) in
/// pieces of 2^17 (session 14), which EfficientNet-B0 needs to stay under 4 GB. 32 in
/// the unit tests, so that they run in pieces too.
pub(super) const MAX_SELECTION: usize = if cfg!(test) { 1 << 5 } else { 1 << 17 };

/// The most one-hot entries one lookup takes at once
/// ([`crate::func::Selection::max_lookup_words`]; 2^10 in the unit tests, so that they
/// run in pieces): the generic lookup's one-hot vectors are field elements, and
/// EfficientNet-B0's first SiLU (401,408 elements of a 256-entry table) took the process
/// past 9 GB within a minute. 2^22 entries are ≈ 64 MB of one-hot shares per party.
pub(super) const MAX_LOOKUP_WORDS: usize = if cfg!(test) { 1 << 10 } else { 1 << 22 };

/// Bits of statistical masking per term of `R`.
pub(super) const STAT_BITS: u32 = 40;

/// Public parameters of one call.
pub(super) struct ShamirPlan {
    k: u32,
    /// Bits of each term of the statistical mask `R`.
    stat: u32,
    elements: Vec<Element>,
    /// Units of the widest comparison: 2-bit chunks (over the field) and one per bit
    /// (boolean, three parties).
    width: usize,
    bit_width: usize,
    comparisons: usize,
    product: bool,
}

fn too_wide(what: &str) -> ProtocolError {
    ProtocolError::Invalid(format!(
        "shamir: {what} does not fit the field with its statistical mask"
    ))
}

impl ShamirPlan {
    pub fn new(q: &Requant, b: Bounds, plan: &Plan, subsets: usize) -> R<ShamirPlan> {
        let (mut elements, vbits, mut k) =
            lanes::rounding(q, b, 100).map_err(|_| too_wide("a rescaled value"))?;
        if lanes::clamps(&elements, b, plan) {
            // A clamp test is the top bit of `v + 2^K − θ`: the mask covers `v`.
            k = k.max(vbits);
        }
        // The bits of `v` above the mask's are hidden by `R` alone, which grows to match;
        // with `R < C·2^stat`, `c < 2^vbits + 2^K + 2^K·R` must stay below p/2, so the mask
        // takes more bits where `R` would not fit.
        let c_bits = bits(subsets as u128);
        let room = 126i64 - 2 - i64::from(c_bits) - i64::from(STAT_BITS) - i64::from(vbits);
        if room < 0 {
            return Err(too_wide(&format!("a value of {vbits} bits")));
        }
        k = k.max(vbits.saturating_sub(room as u32));
        // `R` comes from 64-bit PRSS draws: where the bits of `v` above the mask's would
        // take it past that, the mask takes more bits instead.
        k = k.max(vbits.saturating_sub(64 - STAT_BITS));
        let stat = STAT_BITS + vbits.saturating_sub(k);
        if stat > 64 {
            return Err(too_wide(&format!("a value of {vbits} bits")));
        }
        let product = lanes::clamp_lanes(&mut elements, b, plan, k);
        let all = elements.iter().flat_map(lanes_of);
        let width = all.clone().map(|l| l.units()).max().unwrap_or(0);
        let bit_width = all
            .clone()
            .map(|l| usize::from(l.parity) + l.s as usize)
            .max()
            .unwrap_or(0);
        let comparisons = all.count();
        Ok(ShamirPlan {
            k,
            stat,
            elements,
            width,
            bit_width,
            comparisons,
            product,
        })
    }

    /// The rounds of one call on these elements.
    pub fn pattern(&self, g: &Geometry) -> Rounds {
        let len = self.elements.len();
        if self.comparisons == 0 {
            return Vec::new();
        }
        if g.n == 3 {
            let count = self.comparisons;
            let mut r = dabits::pattern(self.k as usize * len + count);
            r.push(g.open_round(len, g.t));
            r.extend(boolean::less_than_rounds(count, self.bit_width));
            r.push(boolean::open_round(bitvec::words(count)));
            if self.product {
                r.push(g.reshare_round(len));
            }
            return r;
        }
        let mut open = g.open_round(len, g.t);
        let chunks = self.k as usize / 2;
        if chunks > 0 {
            open.merge(&g.reshare_round(chunks * len));
        }
        let mut r = vec![g.open_round(self.k as usize * len, 2 * g.t), open];
        for p in compare::tree_products(self.width) {
            r.push(g.reshare_round(p * self.comparisons));
        }
        if self.product {
            r.push(g.reshare_round(len));
        }
        r
    }
}

/// `⌊(c + δ)/2^s⌋` and `(c + δ) mod 2^s` of every comparison, in order, with its element.
fn lane_publics<'a>(
    sp: &'a ShamirPlan,
    c: &'a [i128],
) -> impl Iterator<Item = (usize, Lane, i128, u128)> + 'a {
    sp.elements.iter().enumerate().flat_map(move |(e, el)| {
        lanes_of(el).map(move |lane| {
            let pc = c[e] + lane.delta;
            let high = pc.div_euclid(1i128 << lane.s);
            let low = pc.rem_euclid(1i128 << lane.s) as u128;
            (e, lane, high, low)
        })
    })
}

fn open_masked(p: &mut Shamir, masked: &[Fp], h: Vec<Fp>) -> R<(Vec<i128>, Vec<Fp>)> {
    let (c, both) = p.open_and_reshare(masked, p.geo.t, h)?;
    Ok((c.into_iter().map(|v| v.value() as i128).collect(), both))
}

/// The public parts and the borrows `[(c + δ) mod 2^s < r mod 2^s]` of every comparison,
/// over the field: 2-bit chunks of the mask as units, whose one-hot vectors need the
/// products `b_2m·b_(2m+1)`, reshared in the round that opens `c`.
fn borrows_field(
    p: &mut Shamir,
    sp: &ShamirPlan,
    masked: &[Fp],
    bits: &[Fp],
) -> R<(Vec<i128>, Vec<Fp>)> {
    let len = masked.len();
    let chunks = sp.k as usize / 2;
    let bit = |j: usize, e: usize| bits[j * len + e];
    let h: Vec<Fp> = (0..chunks * len)
        .into_par_iter()
        .map(|i| bit(2 * (i / len), i % len) * bit(2 * (i / len) + 1, i % len))
        .collect();
    let (c, both) = open_masked(p, masked, h)?;
    // `[chunk m of r = v]` for v in 0..4.
    let one_hot = |m: usize, e: usize| -> [Fp; 4] {
        let (b0, b1, b01) = (bit(2 * m, e), bit(2 * m + 1, e), both[m * len + e]);
        [Fp::ONE - b0 - b1 + b01, b0 - b01, b1 - b01, b01]
    };
    // Units of every comparison, unit-major: a chunk `A` of public bits against the
    // mask's chunk is `lt = Σ_{v > A} [r_m = v]`, `eq = [r_m = A]`.
    let (width, count) = (sp.width, sp.comparisons);
    let mut lt = vec![Fp::ZERO; width * count];
    let mut eq = vec![Fp::ONE; width * count];
    let mut publics = Vec::with_capacity(count);
    for (at, (e, lane, high, low)) in lane_publics(sp, &c).enumerate() {
        publics.push(high);
        let mut j0 = 0;
        if lane.parity {
            let b_s = bit(lane.s as usize, e);
            let par = if high & 1 == 0 { b_s } else { Fp::ONE - b_s };
            (lt[at], eq[at]) = leaf(false, par);
            j0 = 1;
        }
        for m in 0..(lane.s as usize).div_ceil(2) {
            let u = (m + j0) * count + at;
            if 2 * m + 1 < lane.s as usize {
                let a = ((low >> (2 * m)) & 3) as usize;
                let hot = one_hot(m, e);
                lt[u] = hot[a + 1..].iter().fold(Fp::ZERO, |x, &y| x + y);
                eq[u] = hot[a];
            } else {
                (lt[u], eq[u]) = leaf((low >> (2 * m)) & 1 == 1, bit(2 * m, e));
            }
        }
    }
    let borrows = compare::less_than(p, lt, eq, count, width)?;
    Ok((publics, borrows))
}

/// The public parts and the borrows of every comparison, with three parties: one unit
/// per bit of the mask, compared over replicated boolean shares ([`boolean`]), then each
/// borrow `β` brought into the field with a daBit `d` by opening `β ⊕ d`.
fn borrows_boolean(
    p: &mut Shamir,
    sp: &ShamirPlan,
    masked: &[Fp],
    bits: &[Fp],
    boolean: &Bits,
) -> R<(Vec<i128>, Vec<Fp>)> {
    let (me, len) = (p.me, masked.len());
    let (c, _) = open_masked(p, masked, Vec::new())?;
    let (width, count) = (sp.bit_width, sp.comparisons);
    let words = bitvec::words(count);
    let (mut lt, mut eq) = (Bits::zeros(width * words), Bits::zeros(width * words));
    let at_unit = |u: usize, at: usize| u * words * 64 + at;
    let none = (0, 0);
    let mut publics = Vec::with_capacity(count);
    for (at, (e, lane, high, low)) in lane_publics(sp, &c).enumerate() {
        publics.push(high);
        let mut u = 0;
        if lane.parity {
            // The quotient's parity `b_s ⊕ [high odd]` as the lowest leaf.
            let b_s = boolean.get(lane.s as usize * len + e);
            lt.put(me, at_unit(0, at), b_s, high & 1 == 1);
            eq.put(me, at_unit(0, at), b_s, high & 1 == 0);
            u = 1;
        }
        for m in 0..lane.s as usize {
            let b_m = boolean.get(m * len + e);
            if (low >> m) & 1 == 1 {
                eq.put(me, at_unit(u, at), b_m, false);
            } else {
                lt.put(me, at_unit(u, at), b_m, false);
                eq.put(me, at_unit(u, at), b_m, true);
            }
            u += 1;
        }
        // Units above the lane's: equal.
        for pad in u..width {
            eq.put(me, at_unit(pad, at), none, true);
        }
    }
    let borrow = boolean::less_than(p, lt, eq, count, width)?;
    let base = sp.k as usize * len;
    let mut d = Bits::zeros(words);
    for at in 0..count {
        d.put(me, at, boolean.get(base + at), false);
    }
    let opened = boolean::open(p, &borrow.xor(&d))?;
    let borrows = (0..count)
        .map(|at| {
            let d_fp = bits[base + at];
            if bitvec::get(&opened, at) == 1 {
                Fp::ONE - d_fp
            } else {
                d_fp
            }
        })
        .collect();
    Ok((publics, borrows))
}

/// The public outcome of a clamp test without a lane.
fn fixed(g: &Result<Lane, bool>) -> bool {
    matches!(g, Err(true))
}

/// The plan of one selection of `q` on values in `b`, or `None` where it takes
/// [`super::wide`]: a divisor that is not a power of two on values too wide for one
/// selection.
pub(super) fn plan(q: &Requant, b: Bounds, plan: &Plan, g: &Geometry) -> R<Option<ShamirPlan>> {
    match ShamirPlan::new(q, b, plan, g.subsets) {
        Ok(sp) => Ok(Some(sp)),
        Err(_) if q.den.iter().any(|&d| d > 1 && d & (d - 1) != 0) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Party `p`'s share of `q` applied to `x` (values in `b`); see the module doc.
pub(super) fn eval(p: &mut Shamir, x: &[Fp], q: &Requant, b: Bounds, sp: ShamirPlan) -> R<Vec<Fp>> {
    let len = x.len();
    let lo = Fp::from_i64(b.lo);
    let v: Vec<Fp> = x
        .par_iter()
        .zip(&sp.elements)
        .map(|(&x, e)| (x - lo) * Fp::new(e.scale))
        .collect();
    if sp.comparisons == 0 {
        let rounded: Vec<Fp> = sp
            .elements
            .iter()
            .zip(&v)
            .map(|(el, &v)| v + Fp::from_i128(el.add))
            .collect();
        let selectors: Vec<_> = sp
            .elements
            .iter()
            .map(|el| (Err(fixed(&el.g_lo)), Err(fixed(&el.g_hi))))
            .collect();
        return Ok(finish(&sp, q, &rounded, &selectors, None));
    }
    let k = sp.k as usize;
    let count = sp.comparisons;
    // Mask bits, bit-major (b[j * len + e]); with three parties daBits, and one more per
    // comparison that brings its boolean borrow into the field.
    let (bits, boolean) = if p.geo.n == 3 {
        let d = dabits::dabits(p, k * len + count)?;
        (d.fp, Some(d.bits))
    } else {
        (compare::random_bits(p, k * len)?, None)
    };
    let big_r = p.streams.bounded(len, sp.stat);
    let two = |j: u32| Fp::new(1u128 << j);
    let r: Vec<Fp> = (0..len)
        .into_par_iter()
        .map(|e| {
            let low = (0..k).fold(Fp::ZERO, |a, j| a + two(j as u32) * bits[j * len + e]);
            low + two(sp.k) * big_r[e]
        })
        .collect();
    let masked: Vec<Fp> = v.iter().zip(&r).map(|(&a, &b)| a + b).collect();
    let (publics, borrows) = match boolean {
        Some(b) => borrows_boolean(p, &sp, &masked, &bits, &b)?,
        None => borrows_field(p, &sp, &masked, &bits)?,
    };

    // floor((v + δ)/2^s) per comparison.
    let r_high = |e: usize, s: u32| -> Fp {
        let mut acc = Fp::ZERO;
        for j in s..sp.k {
            acc = acc + two(j - s) * bits[j as usize * len + e];
        }
        acc + two(sp.k - s) * big_r[e]
    };
    let mut floors = Vec::with_capacity(count);
    let mut at = 0;
    for (e, el) in sp.elements.iter().enumerate() {
        for lane in lanes_of(el) {
            let f = Fp::new(publics[at] as u128) - r_high(e, lane.s) - borrows[at];
            floors.push(f);
            at += 1;
        }
    }
    let mut selectors = Vec::new();
    let mut at = 0;
    let mut qs = Vec::with_capacity(len);
    for el in &sp.elements {
        let n_round = el.rounding.len();
        let q_e = if n_round == 0 {
            None
        } else {
            Some(
                floors[at..at + n_round]
                    .iter()
                    .fold(Fp::ZERO, |a, &f| a + f),
            )
        };
        at += n_round;
        let mut take = |g: &Result<Lane, bool>| match g {
            Ok(_) => {
                let f = floors[at];
                at += 1;
                Ok(f)
            }
            Err(fixed) => Err(*fixed),
        };
        let g_lo = take(&el.g_lo);
        let g_hi = take(&el.g_hi);
        qs.push(q_e);
        selectors.push((g_lo, g_hi));
    }
    let rounded: Vec<Fp> = sp
        .elements
        .iter()
        .zip(&qs)
        .zip(&v)
        .map(|((el, q_e), &v)| match q_e {
            Some(f) => *f + Fp::from_i128(el.add),
            None => {
                // d = 1: v = y·num, so q = v + x_lo·num.
                v + Fp::from_i128(el.add)
            }
        })
        .collect();
    if !sp.product {
        return Ok(finish(&sp, q, &rounded, &selectors, None));
    }
    let as_fp = |g: &Result<Fp, bool>| match g {
        Ok(f) => *f,
        Err(b) => Fp::new(u128::from(*b)),
    };
    let (mut a, mut m) = (Vec::with_capacity(len), Vec::with_capacity(len));
    for (i, (g, &qv)) in selectors.iter().zip(&rounded).enumerate() {
        a.push(as_fp(&g.0) - as_fp(&g.1));
        m.push(qv + Fp::from_i64(q.zp[i]) - Fp::from_i64(q.lo));
    }
    let prod = p.mul(&a, &m)?;
    Ok(finish(&sp, q, &rounded, &selectors, Some(&prod)))
}

/// The outputs from the rounded values, the selectors and the product
/// `(g_lo − g_hi)·(q + zp − lo)` when it was computed.
fn finish(
    sp: &ShamirPlan,
    q: &Requant,
    rounded: &[Fp],
    selectors: &[(Selector, Selector)],
    prod: Option<&[Fp]>,
) -> Vec<Fp> {
    let lo = Fp::from_i64(q.lo);
    let span = Fp::from_i64(q.hi) - lo;
    (0..sp.elements.len())
        .map(|i| {
            let zp = Fp::from_i64(q.zp[i]);
            let (g_lo, g_hi) = selectors[i];
            let hi_part = match g_hi {
                Ok(g) => g * span,
                Err(true) => span,
                Err(false) => Fp::ZERO,
            };
            let mid = match (prod, &g_lo, &g_hi) {
                (Some(p), _, _) => p[i],
                (None, Err(l), Err(h)) => {
                    if *l && !*h {
                        rounded[i] + zp - lo
                    } else {
                        Fp::ZERO
                    }
                }
                _ => Fp::ZERO,
            };
            lo + mid + hi_part
        })
        .collect()
}
