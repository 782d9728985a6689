//! The selection `clamp(round_half_even(x·num/d) + zp, lo, hi)` written once over the
//! gate set ([`GateSet`]): the default every protocol's own construction is held to
//! (bit-exact, no more rounds or bytes). It is `shamir`'s construction with the domain as
//! a parameter (`lanes.rs` has the lanes; `shamir/select.rs` the derivation):
//!
//! 1. *mask* (the core's preprocessing): `n` masks `r = Σ_{j<m} 2^j b_j + 2^m h` with
//!    their bits as boolean and domain shares;
//! 2. *open* (1 round): `c = v + r` for `v = (x − x_lo)·scale < 2^vbits`. In a ring
//!    `c` wraps: `v < 2^(k−1)`, so `v + r ≥ 2^k` exactly when `r`'s top bit is set and
//!    `c`'s is not, `w = r_top·(1 − c_top)`, linear in the shared `r_top`. In a field `c`
//!    is the integer `v + r`, and `h` has `stat` bits more than `v` above the mask bits;
//! 3. *compare* (one `and` round per tree level): every lane `⌊(v + δ)/2^s⌋ =
//!    ⌊(c + δ)/2^s⌋ − ⌊r/2^s⌋ − β + w·2^(k−s)` with the borrow `β = [(c + δ) mod 2^s <
//!    r mod 2^s]` (or the tie with an odd quotient, a lowest leaf of the quotient's
//!    parity). All lanes of all elements are one comparison tree of boolean shares,
//!    one unit per mask bit;
//! 4. *convert* (1 round): the borrows into the domain (`b2a`);
//! 5. *select* (1 round, where a clamp depends on the secret): `lo + (g_lo − g_hi)·(q +
//!    zp − lo) + g_hi·(hi − lo)`.

use super::gates::{digits, fits_i64, pow2, scale, GateSet};
use super::Domain;
use crate::lanes::{self, lanes_of, Element, Lane};
use crate::planes::{BitPlane, Plane, PAD};
use crate::semi2k::select::Plan;
use crate::{Bounds, Core, ProtocolError, Requant};

type R<T> = Result<T, ProtocolError>;

/// The widest value or mask the default handles: its public arithmetic is in `i128`.
const MAX_BITS: u32 = 120;

fn too_wide(what: String) -> ProtocolError {
    ProtocolError::Invalid(format!("the generic selection: {what}"))
}

/// A sharing of the public constants `c`: their residues mod 2^128 in a ring of at most
/// 128 bits, the integers themselves in a field.
pub(crate) fn lift<P: Core>(p: &P, c: &[i128]) -> P::Shares {
    if fits_i64(c) {
        return p.public(&c.iter().map(|&v| v as i64).collect::<Vec<_>>());
    }
    let d = |k: usize| -> Vec<i64> { c.iter().map(|&v| digits(v)[k]).collect() };
    let shift = vec![1i64 << 62; c.len()];
    let top = p.add(&p.mul_public(&p.public(&d(2)), &shift), &p.public(&d(1)));
    p.add(&p.mul_public(&top, &shift), &p.public(&d(0)))
}

/// The public parts of one lane: `⌊(c + δ)/2^s⌋` and `(c + δ) mod 2^s`.
fn lane_public(c: u128, lane: &Lane) -> R<(i128, u128)> {
    let s = lane.s;
    let low = (c & ((1u128 << s) - 1)) as i128;
    let sum = low
        .checked_add(lane.delta)
        .ok_or_else(|| too_wide("a lane offset".into()))?;
    let high = ((c >> s) as i128)
        .checked_add(sum.div_euclid(1i128 << s))
        .ok_or_else(|| too_wide("a lane's quotient".into()))?;
    Ok((high, sum.rem_euclid(1i128 << s) as u128))
}

/// `q` on `x` (values in `b`) for a plan that communicates (`plan` from [`Plan::new`]).
pub(crate) fn select<P: GateSet>(
    p: &mut P,
    x: &P::Shares,
    q: &Requant,
    b: Bounds,
    plan: &Plan,
) -> R<P::Shares> {
    let n = x.len();
    let (mut elements, vbits, mut m) =
        lanes::rounding(q, b, 100).map_err(|_| too_wide("a rescaled value".into()))?;
    if lanes::clamps(&elements, b, plan) {
        // A clamp test is the top bit of `v + 2^m − θ`: the mask covers `v`.
        m = m.max(vbits);
    }
    if vbits.max(m) > MAX_BITS {
        return Err(too_wide(format!("values of {vbits} bits")));
    }
    let domain = p.domain();
    let high = match domain {
        Domain::Ring { bits } => {
            if vbits >= bits || m > bits {
                return Err(too_wide(format!(
                    "values of {vbits} bits do not fit a masked opening in Z_2^{bits}"
                )));
            }
            0
        }
        Domain::Field { bits, stat } => {
            let high = stat + vbits.saturating_sub(m);
            // `c = v + r < 2^vbits + 2^(m + high + 1)` must open as itself.
            if vbits.max(m + high + 1) + 1 > bits {
                return Err(too_wide(format!(
                    "values of {vbits} bits do not fit the field with {stat} bits of masking"
                )));
            }
            high
        }
    };
    let product = lanes::clamp_lanes(&mut elements, b, plan, m);
    if elements.iter().any(|e| e.scale > i128::MAX as u128) {
        return Err(too_wide("a multiplier".into()));
    }
    let lo = lift(p, &vec![i128::from(b.lo); n]);
    let scales: Vec<i128> = elements.iter().map(|e| e.scale as i128).collect();
    let v = scale(p, &p.sub(x, &lo), &scales);
    let lanes: Vec<(usize, Lane)> = elements
        .iter()
        .enumerate()
        .flat_map(|(e, el)| lanes_of(el).map(move |l| (e, l)))
        .collect();
    let floors = if lanes.is_empty() {
        None
    } else {
        Some(floors(p, &v, &lanes, m, high, domain)?)
    };
    finish(p, &v, floors.as_ref(), &elements, q, product)
}

/// `⌊(v + δ)/2^s⌋` of every lane, in lane order (steps 1 to 4 of the module doc).
fn floors<P: GateSet>(
    p: &mut P,
    v: &P::Shares,
    lanes: &[(usize, Lane)],
    m: u32,
    high: u32,
    domain: Domain,
) -> R<P::Shares> {
    let n = v.len();
    let masks = p.masks(n, m, high)?;
    let arith = |j: u32| masks.arith.slice(j as usize * n..(j as usize + 1) * n);
    let c = p.open_all(&p.add(v, &masks.value(p, m)))?;
    let publics = lanes
        .iter()
        .map(|(e, lane)| lane_public(c.get(*e).copied().unwrap_or(0), lane))
        .collect::<R<Vec<_>>>()?;
    let borrows = borrows(p, &masks.bits, lanes, &publics, n)?;
    let borrows = p.b2a(&borrows)?;

    // ⌊(c + δ)/2^s⌋ − ⌊r/2^s⌋ − β (+ w·2^(k−s) in a ring).
    let owner: Vec<usize> = lanes.iter().map(|(e, _)| *e).collect();
    let mut out = p.sub(
        &lift(p, &publics.iter().map(|x| x.0).collect::<Vec<_>>()),
        &borrows,
    );
    let s_min = lanes.iter().map(|(_, l)| l.s).min().unwrap_or(0);
    for j in s_min..m {
        let coef: Vec<i128> = lanes
            .iter()
            .map(|(_, l)| if j >= l.s { pow2(j - l.s) } else { 0 })
            .collect();
        let bit = arith(j).gather(&owner);
        out = p.sub(&out, &scale(p, &bit, &coef));
    }
    let coef: Vec<i128> = lanes.iter().map(|(_, l)| pow2(m - l.s)).collect();
    out = p.sub(&out, &scale(p, &masks.high.gather(&owner), &coef));
    if let Domain::Ring { bits } = domain {
        let coef: Vec<i128> = lanes
            .iter()
            .map(|(e, l)| {
                let c_top = c.get(*e).map_or(0, |c| (c >> (bits - 1)) & 1);
                if c_top == 1 {
                    0
                } else {
                    pow2(bits - l.s)
                }
            })
            .collect();
        out = p.add(&out, &scale(p, &masks.top.gather(&owner), &coef));
    }
    Ok(out)
}

/// The borrow of every lane: `[(c + δ) mod 2^s < r mod 2^s]`, or equal with an odd
/// quotient where the lane has a parity. One comparison tree; leaves least significant
/// first (the parity, then bit 0 up), unit-major.
fn borrows<P: GateSet>(
    p: &mut P,
    bits: &P::Bits,
    lanes: &[(usize, Lane)],
    publics: &[(i128, u128)],
    n: usize,
) -> R<P::Bits> {
    let count = lanes.len();
    let units = |l: &Lane| usize::from(l.parity) + l.s as usize;
    let width = lanes.iter().map(|(_, l)| units(l)).max().unwrap_or(0);
    let mut lt_idx = vec![PAD; width * count];
    let mut eq_idx = vec![PAD; width * count];
    let mut lt_pub = vec![0u64; width * count];
    let mut eq_pub = vec![1u64; width * count];
    for (at, ((e, lane), &(high, low))) in lanes.iter().zip(publics).enumerate() {
        let mut u = 0;
        if lane.parity {
            // `par = b_s ⊕ [high odd]`: `lt = par`, `eq = ¬par`.
            let odd = (high & 1) as u64;
            let b_s = lane.s as usize * n + e;
            (lt_idx[at], eq_idx[at]) = (b_s, b_s);
            (lt_pub[at], eq_pub[at]) = (odd, 1 ^ odd);
            u = 1;
        }
        for j in 0..lane.s as usize {
            let slot = (u + j) * count + at;
            let b_j = j * n + e;
            eq_idx[slot] = b_j;
            if (low >> j) & 1 == 1 {
                // A public 1 against `b_j`: never less, equal where `b_j` is set.
                eq_pub[slot] = 0;
            } else {
                lt_idx[slot] = b_j;
            }
        }
    }
    let lt = p.xor_public(&bits.gather(&lt_idx), &BitPlane::from_bits(&lt_pub));
    let eq = p.xor_public(&bits.gather(&eq_idx), &BitPlane::from_bits(&eq_pub));
    less_than(p, lt, eq, width, count)
}

/// `[A < B]` of `count` comparisons over `width` units of `(lt, eq)`, unit-major and least
/// significant first: one `and` round per level, `lt = lt_h ⊕ eq_h·lt_l` (the two cases
/// exclude each other) and `eq = eq_h·eq_l`, which the last level skips.
fn less_than<P: GateSet>(
    p: &mut P,
    lt: P::Bits,
    eq: P::Bits,
    width: usize,
    count: usize,
) -> R<P::Bits> {
    let unit = |x: &P::Bits, u: usize| x.slice(u * count..(u + 1) * count);
    let mut units: Vec<(P::Bits, P::Bits)> =
        (0..width).map(|u| (unit(&lt, u), unit(&eq, u))).collect();
    for (pairs, last) in crate::shamir::compare::levels(width) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for k in 0..pairs {
            let (lo, hi) = (&units[2 * k], &units[2 * k + 1]);
            a.push(&hi.1);
            b.push(&lo.0);
            if !last {
                a.push(&hi.1);
                b.push(&lo.1);
            }
        }
        let prod = p.and(&P::Bits::concat(&a), &P::Bits::concat(&b))?;
        let step = if last { 1 } else { 2 };
        let mut next = Vec::with_capacity(pairs + 1);
        for k in 0..pairs {
            let at = k * step;
            let lt = p.either(&units[2 * k + 1].0, &unit(&prod, at));
            let eq = if last {
                P::Bits::zeros(0)
            } else {
                unit(&prod, at + 1)
            };
            next.push((lt, eq));
        }
        if units.len() % 2 == 1 {
            if let Some(odd) = units.pop() {
                next.push(odd);
            }
        }
        units = next;
    }
    Ok(units
        .into_iter()
        .next()
        .map_or_else(|| P::Bits::zeros(count), |u| u.0))
}

/// The outputs from the floors (step 5): each element's rounded value `q` (the sum of its
/// rounding lanes, or `v` with no lane) and its clamp selectors, shared or public.
fn finish<P: GateSet>(
    p: &mut P,
    v: &P::Shares,
    floors: Option<&P::Shares>,
    elements: &[Element],
    q: &Requant,
    product: bool,
) -> R<P::Shares> {
    let n = elements.len();
    let (mut first, mut second, mut own) = (vec![PAD; n], vec![PAD; n], vec![PAD; n]);
    let (mut g_lo, mut g_hi) = (vec![PAD; n], vec![PAD; n]);
    let (mut fixed_lo, mut fixed_hi) = (vec![0i128; n], vec![0i128; n]);
    let mut at = 0;
    for (e, el) in elements.iter().enumerate() {
        match el.rounding.len() {
            0 => own[e] = e,
            k => {
                first[e] = at;
                if k > 1 {
                    second[e] = at + 1;
                }
                at += k;
            }
        }
        for (g, idx, fixed) in [
            (&el.g_lo, &mut g_lo, &mut fixed_lo),
            (&el.g_hi, &mut g_hi, &mut fixed_hi),
        ] {
            match g {
                Ok(_) => {
                    idx[e] = at;
                    at += 1;
                }
                Err(f) => fixed[e] = i128::from(*f),
            }
        }
    }
    let pick = |idx: &[usize]| match floors {
        Some(f) => f.gather(idx),
        None => P::Shares::zeros(idx.len()),
    };
    let adds: Vec<i128> = elements.iter().map(|el| el.add).collect();
    let rounded = p.add(
        &p.add(&pick(&first), &pick(&second)),
        &p.add(&v.gather(&own), &lift(p, &adds)),
    );
    let (lo, span) = (i128::from(q.lo), i128::from(q.hi) - i128::from(q.lo));
    let offsets: Vec<i128> = q.zp.iter().map(|&z| i128::from(z) - lo).collect();
    let mid = p.add(&rounded, &lift(p, &offsets));
    let g_lo = p.add(&pick(&g_lo), &lift(p, &fixed_lo));
    let g_hi = p.add(&pick(&g_hi), &lift(p, &fixed_hi));
    let selected = if product {
        p.mul(&p.sub(&g_lo, &g_hi), &mid)?
    } else {
        let a: Vec<i128> = fixed_lo.iter().zip(&fixed_hi).map(|(l, h)| l - h).collect();
        scale(p, &mid, &a)
    };
    let top = scale(p, &g_hi, &vec![span; n]);
    Ok(p.add(&p.add(&selected, &top), &lift(p, &vec![lo; n])))
}
