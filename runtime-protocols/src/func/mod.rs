//! The functionalities written once: rescale, requantize, clamp, max and argmax as calls
//! of the one selection primitive ([`Selection::select_with`]) and local steps of the
//! [`crate::Core`]; the selection itself ([`compare`]) and the lookup ([`lookup`]) written
//! once over the gate set ([`gates::GateSet`]). Those are the defaults; a protocol
//! overrides any of them with a cheaper construction, and its tests hold the override to
//! the default (bit-exact, the rounds and bytes compared). Every [`Selection`] is a
//! [`Protocol`] by the blanket impl below — every protocol, and the data-free twins (the
//! semi2k and spdz2k dealers, shamir's cost counter) — so the parties, the dealer (which
//! must supply material for exactly the calls the parties make) and the costs all follow
//! the same calls, and a new functionality is one function here. `rep3` and `clear`
//! override every functionality (docs/core.md, "Overrides that stay").

pub(crate) mod compare;
pub(crate) mod gates;
pub(crate) mod lookup;
#[cfg(test)]
mod plain;

use crate::planes::Plane;
use crate::semi2k::select::Plan;
use crate::{Bounds, MatDims, Protocol, ProtocolError, Requant, TruncMode};

type R<T> = Result<T, ProtocolError>;

/// The domain a core computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Z_2^`bits`.
    Ring { bits: u32 },
    /// F_p with `p > 2^bits`: an integer below `2^bits` opens as itself. Masks hide
    /// statistically, with `stat` bits.
    Field { bits: u32, stat: u32 },
}

/// A core with the gate set and the selection primitive, the one nonlinear step the
/// functionalities are built from.
pub(crate) trait Selection: gates::GateSet + Sized {
    /// Whether a requantization that rounds and clamps is two selections (round, then
    /// clamp) rather than one (`fss`, `shamir`, `mal-rep3`).
    fn splits_rounding(&self) -> bool {
        false
    }
    /// The most elements one selection takes at once (`None`: all): a protocol whose
    /// selection holds kilobytes per element (`shamir`'s mask bits and their messages)
    /// runs a huge one as several in turn, each its own rounds, so that its memory stays
    /// bounded ([`select`]).
    fn max_selection(&self) -> Option<usize> {
        None
    }
    /// The most one-hot entries (elements × the table's padded size) one generic lookup
    /// takes at once (`None`: all): `shamir`'s one-hot vectors are field elements, 4 KB
    /// per element of an int8 table, so a larger lookup runs as several in turn, each
    /// its own rounds ([`lookup::in_pieces`]).
    fn max_lookup_words(&self) -> Option<usize> {
        None
    }
    /// `q` on `x` (values in `b`) for a plan that communicates; where
    /// [`Selection::splits_rounding`], one that rounds or compares, not both. By default
    /// the generic selection over the gate set ([`compare::select`]); every protocol
    /// overrides it with a cheaper construction, held to the default by its tests.
    fn select_with(
        &mut self,
        x: &Self::Shares,
        q: &Requant,
        b: Bounds,
        plan: &Plan,
    ) -> R<Self::Shares> {
        compare::select(self, x, q, b, plan)
    }

    // The functionalities. The defaults are this module's functions; a protocol with a
    // faster construction overrides them (`rep3`), and its tests hold the override to the
    // default (bit-exact, no more rounds or bytes).

    /// `round_half_even(x · num / den)`; every mode is exact here.
    fn rescale(
        &mut self,
        x: &Self::Shares,
        num: &[i64],
        den: &[i64],
        b: Bounds,
        _mode: TruncMode,
    ) -> R<Self::Shares> {
        rescale(self, x, num, den, b)
    }
    fn requantize(
        &mut self,
        x: &Self::Shares,
        q: &Requant,
        b: Bounds,
        _mode: TruncMode,
    ) -> R<Self::Shares> {
        requantize(self, x, q, b)
    }
    /// See [`Protocol::product_requantize`].
    #[allow(clippy::too_many_arguments)]
    fn product_requantize(
        &mut self,
        a: &Self::Shares,
        b: &Self::Shares,
        dims: MatDims,
        bias: &Self::Shares,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> R<Self::Shares> {
        crate::product_requantize_unfused(self, a, b, dims, bias, q, bounds, mode)
    }
    fn clamp(&mut self, x: &Self::Shares, lo: i64, hi: i64, b: Bounds) -> R<Self::Shares> {
        clamp(self, x, lo, hi, b)
    }
    fn max(&mut self, a: &Self::Shares, b: &Self::Shares, bounds: Bounds) -> R<Self::Shares> {
        max(self, a, b, bounds)
    }
    fn argmax(
        &mut self,
        x: &Self::Shares,
        row_len: usize,
        select_last: bool,
        b: Bounds,
    ) -> R<Self::Shares> {
        argmax(self, x, row_len, select_last, b)
    }
    /// `table[x − offset]`: by default the generic lookup over the gate set
    /// ([`lookup::lookup`]), in pieces of [`Selection::max_lookup_words`].
    fn lookup(&mut self, x: &Self::Shares, table: &[i64], offset: i64) -> R<Self::Shares> {
        lookup::in_pieces(self, x, table, offset)
    }
}

/// Every [`Selection`] is a [`Protocol`]: the VM's calls go to the functionalities above
/// (the defaults of this module, or the protocol's overrides).
impl<P: Selection> Protocol for P {
    fn rescale(
        &mut self,
        x: &P::Shares,
        num: &[i64],
        den: &[i64],
        b: Bounds,
        mode: TruncMode,
    ) -> R<P::Shares> {
        Selection::rescale(self, x, num, den, b, mode)
    }
    fn requantize(
        &mut self,
        x: &P::Shares,
        q: &Requant,
        b: Bounds,
        mode: TruncMode,
    ) -> R<P::Shares> {
        Selection::requantize(self, x, q, b, mode)
    }
    fn product_requantize(
        &mut self,
        a: &P::Shares,
        b: &P::Shares,
        dims: MatDims,
        bias: &P::Shares,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> R<P::Shares> {
        Selection::product_requantize(self, a, b, dims, bias, q, bounds, mode)
    }
    fn clamp(&mut self, x: &P::Shares, lo: i64, hi: i64, b: Bounds) -> R<P::Shares> {
        Selection::clamp(self, x, lo, hi, b)
    }
    fn max(&mut self, a: &P::Shares, b: &P::Shares, bounds: Bounds) -> R<P::Shares> {
        Selection::max(self, a, b, bounds)
    }
    fn argmax(
        &mut self,
        x: &P::Shares,
        row_len: usize,
        select_last: bool,
        b: Bounds,
    ) -> R<P::Shares> {
        Selection::argmax(self, x, row_len, select_last, b)
    }
    fn lookup(&mut self, x: &P::Shares, table: &[i64], offset: i64) -> R<P::Shares> {
        Selection::lookup(self, x, table, offset)
    }
}

/// `f` on consecutive pieces of `x` of `piece` elements (the last may be shorter), the
/// results concatenated: how a protocol bounds the memory of a huge selection or lookup,
/// each piece its own rounds, the party and its cost counter cutting alike.
pub(crate) fn in_pieces<S: Plane>(
    x: &S,
    piece: usize,
    mut f: impl FnMut(std::ops::Range<usize>, &S) -> R<S>,
) -> R<S> {
    let n = x.len();
    let parts = (0..n)
        .step_by(piece.max(1))
        .map(|start| {
            let r = start..(start + piece).min(n);
            f(r.clone(), &x.slice(r))
        })
        .collect::<R<Vec<_>>>()?;
    Ok(S::concat(&parts.iter().collect::<Vec<_>>()))
}

/// `clamp(round_half_even(x·num/den) + zp, lo, hi)` with `num ≥ 0`.
pub(crate) fn select<P: Selection>(
    p: &mut P,
    x: &P::Shares,
    q: &Requant,
    b: Bounds,
) -> R<P::Shares> {
    if x.is_empty() {
        return Ok(x.clone());
    }
    if let Some(max) = p.max_selection().filter(|&m| m > 0 && x.len() > m) {
        return in_pieces(x, max, |r, x| {
            let piece = Requant {
                num: q.num[r.clone()].to_vec(),
                den: q.den[r.clone()].to_vec(),
                zp: q.zp[r].to_vec(),
                ..*q
            };
            select(p, x, &piece, b)
        });
    }
    let plan = Plan::new(q, b, p.domain())?;
    if p.splits_rounding() && plan.rounds() && plan.has_thresholds() {
        // fss: a DCF key rounds or clamps on one opening, not both. shamir: a clamp
        // compares on the rounded value's few bits, not the product's many. Round (with
        // the zero point) under a clamp that never binds, then clamp.
        let mid = q.mid_bounds(b, TruncMode::Exact);
        let round = Requant {
            lo: mid.lo,
            hi: mid.hi,
            ..q.clone()
        };
        let v = select(p, x, &round, b)?;
        return select(p, &v, &unit(x.len(), q.lo, q.hi), mid);
    }
    if !plan.is_local() {
        return p.select_with(x, q, b, &plan);
    }
    // Every selector is public and every `den` is 1: a linear function of `x`.
    let (mut scale, mut add) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    for i in 0..x.len() {
        let (mid, hi) = plan.public_selectors(i);
        if mid {
            scale.push(q.num[i]);
            add.push(q.zp[i]);
        } else {
            scale.push(0);
            add.push(if hi { q.hi } else { q.lo });
        }
    }
    let scaled = p.mul_public(x, &scale);
    Ok(p.add_public(&scaled, &add))
}

pub(crate) fn rescale<P: Selection>(
    p: &mut P,
    x: &P::Shares,
    num: &[i64],
    den: &[i64],
    b: Bounds,
) -> R<P::Shares> {
    let Some(s) = rescale_selection(num, den, b) else {
        return Ok(p.mul_public(x, num));
    };
    let x = match &s.signs {
        Some(signs) => p.mul_public(x, signs),
        None => x.clone(),
    };
    select(p, &x, &s.q, s.bounds)
}

/// A rescale as one selection: `q` (a clamp that never binds) on `x · signs` in `bounds`.
pub(crate) struct RescaleSelection {
    /// −1 where `num < 0` (round-half-even is odd-symmetric: rescale −x by −num).
    pub signs: Option<Vec<i64>>,
    pub bounds: Bounds,
    pub q: Requant,
}

/// The selection of `round_half_even(x · num / den)` on values in `b`; `None` where every
/// `den` is 1 (a local product).
pub(crate) fn rescale_selection(num: &[i64], den: &[i64], b: Bounds) -> Option<RescaleSelection> {
    if den.iter().all(|&d| d == 1) {
        return None;
    }
    let (signs, b) = if num.iter().any(|&v| v < 0) {
        let signs: Vec<i64> = num.iter().map(|&v| if v < 0 { -1 } else { 1 }).collect();
        let w = b.lo.saturating_abs().max(b.hi.saturating_abs());
        (Some(signs), Bounds { lo: -w, hi: w })
    } else {
        (None, b)
    };
    let mut q = Requant {
        num: num.iter().map(|v| v.saturating_abs()).collect(),
        den: den.to_vec(),
        zp: vec![0; num.len()],
        lo: 0,
        hi: 0,
    };
    let mid = q.mid_bounds(b, TruncMode::Exact);
    (q.lo, q.hi) = (mid.lo, mid.hi);
    Some(RescaleSelection {
        signs,
        bounds: b,
        q,
    })
}

pub(crate) fn requantize<P: Selection>(
    p: &mut P,
    x: &P::Shares,
    q: &Requant,
    b: Bounds,
) -> R<P::Shares> {
    if q.num.iter().any(|&v| v < 0) {
        return crate::requantize_unfused(p, x, q, b, TruncMode::Exact);
    }
    select(p, x, q, b)
}

fn unit(n: usize, lo: i64, hi: i64) -> Requant {
    Requant {
        num: vec![1; n],
        den: vec![1; n],
        zp: vec![0; n],
        lo,
        hi,
    }
}

pub(crate) fn clamp<P: Selection>(
    p: &mut P,
    x: &P::Shares,
    lo: i64,
    hi: i64,
    b: Bounds,
) -> R<P::Shares> {
    select(p, x, &unit(x.len(), lo, hi), b)
}

/// `b + max(a − b, 0)`.
pub(crate) fn max<P: Selection>(
    p: &mut P,
    a: &P::Shares,
    b: &P::Shares,
    bounds: Bounds,
) -> R<P::Shares> {
    let span = bounds
        .hi
        .checked_sub(bounds.lo)
        .ok_or_else(|| too_wide(bounds))?;
    let diff = p.sub(a, b);
    let pos = select(
        p,
        &diff,
        &unit(a.len(), 0, span),
        Bounds {
            lo: -span,
            hi: span,
        },
    )?;
    Ok(p.add(&pos, b))
}

fn too_wide(b: Bounds) -> ProtocolError {
    ProtocolError::Invalid(format!("bounds [{}, {}] are too wide", b.lo, b.hi))
}

/// The index of each row's maximum: the maximum of the keys `(v − lo)·2^t + tag` (`tag`
/// the index, or `row_len − 1 −` it when ties go to the first), then the key's low `t`
/// bits, taken off with an exact floor division.
pub(crate) fn argmax<P: Selection>(
    p: &mut P,
    x: &P::Shares,
    row_len: usize,
    select_last: bool,
    b: Bounds,
) -> R<P::Shares> {
    let rows = x.len() / row_len.max(1);
    if row_len <= 1 {
        return Ok(p.public(&vec![0; rows]));
    }
    let t = usize::BITS - (row_len - 1).leading_zeros();
    let scale = 1i64 << t;
    let last = row_len as i64 - 1;
    let span = b.hi.checked_sub(b.lo).ok_or_else(|| too_wide(b))?;
    let key_hi = span
        .checked_mul(scale)
        .and_then(|v| v.checked_add(last))
        .filter(|&v| v < 1 << 61)
        .ok_or_else(|| too_wide(b))?;
    let offsets: Vec<i64> = (0..x.len())
        .map(|e| {
            let i = (e % row_len) as i64;
            let tag = if select_last { i } else { last - i };
            tag - b.lo * scale
        })
        .collect();
    let scaled = p.mul_public(x, &vec![scale; x.len()]);
    let mut keys = p.add_public(&scaled, &offsets);
    let kb = Bounds { lo: 0, hi: key_hi };
    let mut len = row_len;
    while len > 1 {
        let half = len / 2;
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for r in 0..rows {
            for j in 0..half {
                left.push(r * len + 2 * j);
                right.push(r * len + 2 * j + 1);
            }
        }
        let best = max(p, &keys.gather(&left), &keys.gather(&right), kb)?;
        let next = half + len % 2;
        // `best` then `keys` in one index space: each row's maxima, then its odd one out.
        let mut pick = Vec::with_capacity(rows * next);
        for r in 0..rows {
            pick.extend(r * half..(r + 1) * half);
            if len % 2 == 1 {
                pick.push(best.len() + r * len + len - 1);
            }
        }
        let out = P::Shares::concat(&[&best, &keys]).gather(&pick);
        keys = out;
        len = next;
    }
    // ⌊k / 2^t⌋ = round_half_even((2k − 2^t + 1) / 2^(t+1)): never a tie.
    let twice = p.mul_public(&keys, &vec![2; rows]);
    let shifted = p.add_public(&twice, &vec![1 - scale; rows]);
    let high = rescale(
        p,
        &shifted,
        &vec![1; rows],
        &vec![2 * scale; rows],
        Bounds {
            lo: 1 - scale,
            hi: 2 * key_hi + 1 - scale,
        },
    )?;
    let high_part = p.mul_public(&high, &vec![scale; rows]);
    let tag = p.sub(&keys, &high_part);
    if select_last {
        Ok(tag)
    } else {
        let neg = p.mul_public(&tag, &vec![-1; rows]);
        Ok(p.add_public(&neg, &vec![last; rows]))
    }
}
