//! `clamp(round_half_even(x·num/d) + zp, lo, hi)` element-wise: the one nonlinear primitive
//! ([`crate::func`] makes rescale, requantize, clamp, max and argmax of it), over
//! the lanes of [`crate::lanes`], with the dealt masks of [`super::dealt`].
//!
//! Per element (group roles `D`, `A`, `B`), `v = (x − x_lo)·scale < 2^(M−1)`:
//!
//! 1. *deal* (1 round) a mask `r < 2^M` with its bits, the carries `c_s`, `c_M`, the top
//!    bit `r_{M−1}` and one daBit per lane; *authenticate* (1 round) what enters the
//!    result in the ring;
//! 2. *open* `o = v + r mod 2^M` to `A` and `B` (1 round, the dealer hashes). As
//!    `v < 2^(M−1)`, `v = o − r + 2^M·w` with `w = r_{M−1}·[o_{M−1} = 0]`;
//! 3. *compare* (`⌈log2 S⌉ + 2` rounds, all lanes at once): a lane `floor((v + δ)/2^s)`
//!    with `P = o + δ` is `⌊P/2^s⌋ − ⌊r/2^s⌋ + 2^(M−s)·w − [P mod 2^s < r mod 2^s]`,
//!    `⌊r/2^s⌋ = ⌊r_A/2^s⌋ + ⌊r_B/2^s⌋ + c_s − 2^(M−s)·c_M`, exactly, as integers. The
//!    borrow is the carry of `r mod 2^s + (2^s − 1 − P mod 2^s)` (a carry tree; `P` is
//!    component `g + 2`, known to `A` and `B`); round half to even subtracts one more at a
//!    tie (every position propagates) with an odd floor (`⌊P/2^s⌋_0 ⊕ r_s`). A clamp lane's
//!    result is a bit: `⌊P/2^K⌋_0 ⊕ r_K ⊕ borrow`;
//! 4. *to the ring* (1 round): `A` and `B` open `β ⊕ e` for the lane's daBit `e` and hold
//!    additive parts of `β = o_β + (1 − 2o_β)·e`, and of the lane's value;
//! 5. *reshare* (1 round) the rounded value and the clamp bits, both halves, and *select*
//!    (1 round): `lo + (g_lo − g_hi)·(q + zp − lo) + g_hi·(hi − lo)`.
//!
//! What a party sees: the dealer only hashes of openings and masked parts; `A` and `B` see
//! `o` (uniform, `r` is), `β ⊕ e`, and masked parts of each other's. Every computed message
//! is in a proof or a MAC check before the output.

use super::auth::{self, Auth};
use super::circuits::{Plane, Sliced};
use super::dealt::{to_planes, Order};
use super::pair::{group_of, role};
use super::MalRep3;
use crate::bitvec::words;
use crate::lanes::{self, lanes_of, Lane};
use crate::rep3::Rep;
use crate::semi2k::select::Plan;
use crate::word::Word;
use crate::{Bounds, ProtocolError, Requant};

type R<T> = Result<T, ProtocolError>;

fn too_wide(what: &str) -> ProtocolError {
    ProtocolError::Invalid(format!("mal-rep3: {what} does not fit the 128-bit ring"))
}

/// The most elements one selection takes at once
/// ([`crate::func::Selection::max_selection`]): a selection holds ≈ 3.5 KB per element
/// and party at its peak (the dealt masks, carries and daBits as 128-bit ring values, the
/// relations and the resharings), so ResNet-18's first requantization (802,816
/// elements) alone took its three parties to 8.4 GB. A larger one runs in pieces of this
/// size, each its own rounds: pieces of 2^18 ran ResNet-18 in 2,860 rounds at 9.3 GB RSS,
/// of 2^16 in 3,850 at 4.9 GB and faster (98 against 156 s: smaller blocks stay in
/// cache). 32 in the unit tests, so that they run in pieces too.
pub(super) const MAX_SELECTION: usize = if cfg!(test) { 1 << 5 } else { 1 << 16 };

/// A lane of an element.
#[derive(Clone, Copy)]
struct Slot {
    e: usize,
    lane: Lane,
    /// Its index among its element's lanes (which daBit it uses).
    k: usize,
    clamp: bool,
}

/// A bit of element `e` in a plane, per slot.
fn get(p: &Plane, e: usize, a: bool) -> u64 {
    let w = &p[e / 64];
    (if a { w.a.0 } else { w.b.0 }) >> (e % 64) & 1
}

fn set(p: &mut Plane, t: usize, a: u64, b: u64) {
    p[t / 64].a.0 |= a << (t % 64);
    p[t / 64].b.0 |= b << (t % 64);
}

/// The additive part of a replicated value for the evaluators of group `g`: `A` takes its
/// two components (`g + 1`, `g + 2`), `B` its second (`g`), the dealer nothing.
fn part(me: usize, g: usize, s: Rep<u128>) -> u128 {
    match role(me, g) {
        1 => s.a.wrapping_add(s.b),
        2 => s.b,
        _ => 0,
    }
}

/// An authenticated additive part: value and MAC.
#[derive(Clone, Copy, Default)]
struct Part {
    x: u128,
    m: u128,
}

impl Part {
    fn of(me: usize, g: usize, s: Auth) -> Part {
        Part {
            x: part(me, g, s.x),
            m: part(me, g, s.m),
        }
    }
    fn add(self, o: Part) -> Part {
        Part {
            x: self.x.wrapping_add(o.x),
            m: self.m.wrapping_add(o.m),
        }
    }
    fn scale(self, c: u128) -> Part {
        Part {
            x: self.x.wrapping_mul(c),
            m: self.m.wrapping_mul(c),
        }
    }
}

impl<W: Word> MalRep3<W> {
    /// The public `c` as an additive part of group `g`.
    fn public_part(&self, g: usize, c: u128) -> Part {
        let me = self.rep.me;
        Part {
            x: if role(me, g) == 1 { c } else { 0 },
            m: part(me, g, self.key.alpha).wrapping_mul(c),
        }
    }

    /// `q` on `x` (values in `b`) for a plan that communicates.
    pub(super) fn select(
        &mut self,
        x: &[Auth],
        q: &Requant,
        b: Bounds,
        plan: &Plan,
    ) -> R<Vec<Auth>> {
        let n = x.len();
        let me = self.rep.me;
        let (mut elements, vbits, _) =
            lanes::rounding(q, b, 100).map_err(|_| too_wide("a rescaled value"))?;
        let clamped = lanes::clamps(&elements, b, plan);
        let product = lanes::clamp_lanes(&mut elements, b, plan, vbits);
        let _ = clamped;
        let mut slots = Vec::new();
        for (e, el) in elements.iter().enumerate() {
            let rounding = el.rounding.len();
            for (k, lane) in lanes_of(el).enumerate() {
                slots.push(Slot {
                    e,
                    lane,
                    k,
                    clamp: k >= rounding,
                });
            }
        }
        let top = slots.iter().map(|t| t.lane.s).max().unwrap_or(0);
        let m = (vbits + 1).max(top + 1);
        if m > 120 {
            return Err(too_wide(&format!("a value of {vbits} bits")));
        }
        let per = elements
            .iter()
            .map(|el| lanes_of(el).count())
            .max()
            .unwrap_or(0);
        let groups: Vec<usize> = (0..n).map(|e| group_of(n, e)).collect();
        let key = self.key;
        let lo = auth::lift(b.lo);
        let v: Vec<Auth> = x
            .iter()
            .zip(&elements)
            .map(|(&x, el)| auth::scale(key.add_const(me, x, lo.wrapping_neg()), el.scale))
            .collect();

        // 1. The material, and the MACs of what enters the ring.
        let mut carries: Vec<u32> = slots
            .iter()
            .filter(|t| !t.clamp)
            .map(|t| t.lane.s)
            .collect();
        carries.sort_unstable();
        carries.dedup();
        let d = self.deal(&Order {
            n,
            m,
            carries: carries.clone(),
            dabits: per,
        })?;
        let kind_of_carry = |s: u32| carries.iter().position(|&c| c == s).unwrap_or(0);
        let (k_cm, k_top, k_da) = (carries.len(), carries.len() + 1, carries.len() + 2);
        let pow = |b: u32| if b >= 128 { 0 } else { 1u128 << b };
        let mut fresh: Vec<Rep<u128>> = Vec::new();
        for t in slots.iter().filter(|t| !t.clamp) {
            // ⌊r_A/2^s⌋ + ⌊r_B/2^s⌋ + c_s − 2^(M−s)·c_M (component-wise: the mask's third
            // component is zero).
            let s = t.lane.s;
            let (r, cs, cm) = (d.r[t.e], d.ring[kind_of_carry(s)][t.e], d.ring[k_cm][t.e]);
            let f = |r: u128, cs: u128, cm: u128| {
                (r >> s)
                    .wrapping_add(cs)
                    .wrapping_sub(cm.wrapping_mul(pow(m - s)))
            };
            fresh.push(Rep {
                a: f(r.a, cs.a, cm.a),
                b: f(r.b, cs.b, cm.b),
            });
        }
        let n_q = fresh.len();
        fresh.extend(d.ring[k_top].iter().copied());
        for t in &slots {
            fresh.push(d.ring[k_da + t.k][t.e]);
        }
        let mut authed = self.authenticate(fresh)?;
        let da_auth = authed.split_off(n_q + n);
        let top_auth = authed.split_off(n_q);
        let q_auth = authed;

        // 2. Open v + r mod 2^M to each group's evaluators.
        let masked: Vec<Rep<u128>> = v
            .iter()
            .zip(&d.r)
            .map(|(v, r)| auth::add_rep(v.x, *r))
            .collect();
        let o = self.open_pair(&masked, m, &groups)?;

        // 3. Every lane's borrow over S bits: the lane's operands shifted up by S − s, the
        // positions below filled so that they propagate and never carry.
        let big_s = top.max(1) as usize;
        let ns = slots.len();
        let nw = words(ns);
        // Per slot, both components of `r mod 2^s` shifted up by `S − s`, and bit `s`:
        // numbers sliced into planes by transposes, not bit by bit.
        let component = |f: fn(&Rep<u128>) -> u128| -> (Vec<u128>, Vec<u128>) {
            slots
                .iter()
                .map(|t| {
                    let (s, v) = (t.lane.s, f(&d.mask_bits[t.e]));
                    let low = v & ((1u128 << s) - 1);
                    let at_s = if s < m { v >> s & 1 } else { 0 };
                    (low << (big_s as u32 - s), at_s)
                })
                .unzip()
        };
        let (low_a, at_a) = component(|r| r.a);
        let (low_b, at_b) = component(|r| r.b);
        let r_sl = Sliced {
            n: ns,
            planes: to_planes(&low_a, &low_b, big_s as u32),
        };
        let r_at_s: Plane = to_planes(&at_a, &at_b, 1).pop().unwrap_or_default();
        let publics: Vec<Option<(i128, u128)>> = slots
            .iter()
            .map(|t| {
                o[t.e].map(|o| {
                    let p = o as i128 + t.lane.delta;
                    let s = t.lane.s;
                    (p.div_euclid(1i128 << s), p.rem_euclid(1i128 << s) as u128)
                })
            })
            .collect();
        let slot_groups: Vec<usize> = slots.iter().map(|t| groups[t.e]).collect();
        let not_p: Vec<Option<u128>> = slots
            .iter()
            .zip(&publics)
            .map(|(t, p)| {
                p.map(|(_, low)| {
                    let s = t.lane.s as usize;
                    let off = big_s - s;
                    let ones = |b: usize| if b == 0 { 0 } else { (1u128 << b) - 1 };
                    ((ones(s) ^ low) << off) | ones(off)
                })
            })
            .collect();
        let np = self.pair_bits(&not_p, big_s, &slot_groups);
        let parity_public: Vec<Option<u128>> = publics
            .iter()
            .map(|p| p.map(|(h, _)| (h & 1) as u128))
            .collect();
        let ph0 = self.pair_bits(&parity_public, 1, &slot_groups);
        let (borrow, all_p) = self.carry_and_propagate(&r_sl, &np, big_s, true)?;
        // The floor's parity at a tie, and the clamp bits: ⌊P/2^s⌋_0 ⊕ r_s.
        let odd = Sliced {
            n: ns,
            planes: vec![r_at_s],
        }
        .xor(&ph0)
        .planes
        .remove(0);
        let tie_odd = self.and_planes(&[(&all_p, &odd)])?.remove(0);
        let mut beta: Plane = vec![Rep::default(); nw];
        for (t, slot) in slots.iter().enumerate() {
            let pick = |p: &Plane| (get(p, t, true), get(p, t, false));
            let (ba, bb) = pick(&borrow);
            let (mut a, mut b) = (ba, bb);
            if slot.clamp {
                let (oa, ob) = pick(&odd);
                a ^= oa;
                b ^= ob;
            } else if slot.lane.parity {
                let (ta, tb) = pick(&tie_odd);
                a ^= ta;
                b ^= tb;
            }
            set(&mut beta, t, a, b);
        }

        // 4. To the ring: open β ⊕ e to the evaluators.
        let masked_bits: Vec<Rep<u128>> = slots
            .iter()
            .enumerate()
            .map(|(t, slot)| {
                let p = &d.da[slot.k];
                Rep {
                    a: u128::from(get(&beta, t, true) ^ get(p, slot.e, true)),
                    b: u128::from(get(&beta, t, false) ^ get(p, slot.e, false)),
                }
            })
            .collect();
        let ob = self.open_pair(&masked_bits, 1, &slot_groups)?;
        // Each lane's value as an additive part of its group's evaluators.
        let mut lane_parts = Vec::with_capacity(ns);
        let mut qi = 0;
        for (t, slot) in slots.iter().enumerate() {
            let g = slot_groups[t];
            let Some(obit) = ob[t] else {
                lane_parts.push(Part::default());
                if !slot.clamp {
                    qi += 1;
                }
                continue;
            };
            let e_part = Part::of(me, g, da_auth[t]);
            // β = o_β + (1 − 2o_β)·e.
            let beta_part = self
                .public_part(g, obit)
                .add(e_part.scale(1u128.wrapping_sub(2 * obit)));
            if slot.clamp {
                lane_parts.push(beta_part);
                continue;
            }
            let (ph, _) = publics[t].unwrap_or_default();
            let s = slot.lane.s;
            let o_top = o[slot.e].map_or(0, |o| (o >> (m - 1)) & 1);
            let w = if o_top == 0 {
                Part::of(me, g, top_auth[slot.e]).scale(pow(m - s))
            } else {
                Part::default()
            };
            let value = self
                .public_part(g, ph as u128)
                .add(Part::of(me, g, q_auth[qi]).scale(u128::MAX))
                .add(w)
                .add(beta_part.scale(u128::MAX));
            lane_parts.push(value);
            qi += 1;
        }

        // 5. The rounded value and the clamp bits back to replicated shares, then select.
        let mut q_parts: Vec<Option<Auth>> = vec![None; n];
        let mut lo_parts: Vec<Option<Auth>> = vec![None; n];
        let mut hi_parts: Vec<Option<Auth>> = vec![None; n];
        let as_auth = |p: Part| Auth {
            x: Rep { a: p.x, b: 0 },
            m: Rep { a: p.m, b: 0 },
        };
        let mut t = 0;
        for (e, el) in elements.iter().enumerate() {
            let g = groups[e];
            let evaluates = role(me, g) != 0;
            let mut qp = if el.rounding.is_empty() {
                Part::of(me, g, v[e])
            } else {
                Part::default()
            };
            for _ in 0..el.rounding.len() {
                qp = qp.add(lane_parts[t]);
                t += 1;
            }
            qp = qp.add(self.public_part(g, el.add as u128));
            let mut clamp = |gl: &Result<Lane, bool>, out: &mut Option<Auth>| {
                if gl.is_ok() {
                    if evaluates {
                        *out = Some(as_auth(lane_parts[t]));
                    }
                    t += 1;
                }
            };
            clamp(&el.g_lo, &mut lo_parts[e]);
            clamp(&el.g_hi, &mut hi_parts[e]);
            if evaluates {
                q_parts[e] = Some(as_auth(qp));
            }
        }
        let mut all = q_parts;
        all.extend(lo_parts.iter().copied());
        all.extend(hi_parts.iter().copied());
        let all_groups: Vec<usize> = (0..3).flat_map(|_| groups.iter().copied()).collect();
        let mut shared = self.reshare_pair(&all, &all_groups)?;
        let g_hi_s = shared.split_off(2 * n);
        let g_lo_s = shared.split_off(n);
        let q_s = shared;

        let (qlo, qhi) = (auth::lift(q.lo), auth::lift(q.hi));
        let selector = |s: &Result<Lane, bool>, shared: Auth| -> Auth {
            match s {
                Ok(_) => shared,
                Err(true) => key.constant(me, 1),
                Err(false) => Auth::default(),
            }
        };
        let mut a = Vec::with_capacity(n);
        let mut mv = Vec::with_capacity(n);
        let mut hi_sel = Vec::with_capacity(n);
        for (e, el) in elements.iter().enumerate() {
            let gl = selector(&el.g_lo, g_lo_s[e]);
            let gh = selector(&el.g_hi, g_hi_s[e]);
            a.push(auth::sub(gl, gh));
            mv.push(key.add_const(me, q_s[e], auth::lift(q.zp[e]).wrapping_sub(qlo)));
            hi_sel.push(gh);
        }
        let mid = if product {
            self.mul_auth(&a, &mv)?
        } else {
            // Public selectors: the middle term is q + zp − lo or nothing.
            elements
                .iter()
                .enumerate()
                .map(|(e, el)| match (&el.g_lo, &el.g_hi) {
                    (Err(true), Err(false)) => mv[e],
                    _ => Auth::default(),
                })
                .collect()
        };
        Ok((0..n)
            .map(|e| {
                let hi_part = auth::scale(hi_sel[e], qhi.wrapping_sub(qlo));
                key.add_const(me, auth::add(mid[e], hi_part), qlo)
            })
            .collect())
    }
}
