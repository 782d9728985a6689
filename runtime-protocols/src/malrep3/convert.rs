//! Bits from the boolean side to the ring: random bits shared both ways (daBits) and the
//! conversion of any shared bit by opening it masked with one.
//!
//! A daBit is `e = e_0 ⊕ e_1 ⊕ e_2` with `e_j` drawn from the key of component `j`: its
//! boolean sharing is free. Its authenticated ring sharing takes two rounds and seven words
//! per bit per party: `t = e_0·e_1` and `α·e_j` first, then `α·t = (α·e_0)·e_1`,
//! `v = u·e_2` and `α·v = (α·e_2)·u` with `u = e_0 ⊕ e_1 = e_0 + e_1 − 2t`, and
//! `e = u + e_2 − 2v`. Every product is a pair of the MAC check, so a wrong daBit fails it
//! like any wrong product. (A daBit dealt by the third party of a group and proven over
//! F_p would cost two words; docs/core.md.)

use super::auth::{self, Auth};
use super::circuits::{bit, Plane};
use super::MalRep3;
use crate::bitvec::words;
use crate::cheat;
use crate::rep3::{Rep, Rep3, Xor};
use crate::word::Word;
use crate::ProtocolError;
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;

/// Random bits shared twice: a boolean plane and authenticated ring values.
pub(super) struct DaBits {
    /// Read by the conversion of the tests; the gate set needs the ring side only.
    #[cfg_attr(not(test), allow(dead_code))]
    pub bits: Plane,
    pub ring: Vec<Auth>,
}

impl<W: Word> MalRep3<W> {
    /// The ring sharing, component `j` only, of the bits of a plane known to its holders.
    fn ring_of_component(&self, j: usize, plane: Option<&[u64]>, n: usize) -> Vec<Rep<u128>> {
        let values: Option<Vec<u128>> =
            plane.map(|p| (0..n).map(|e| u128::from(bit(p, e) as u8)).collect());
        self.rep.known_to_comp(j, values.as_deref(), n)
    }

    /// `n` daBits (2 rounds).
    pub(super) fn dabits(&mut self, n: usize) -> R<DaBits> {
        self.check_if_full()?;
        let me = self.rep.me;
        let nw = words(n);
        let mut drawn: [Option<Vec<u64>>; 3] = [None, None, None];
        for j in [me, me + 1] {
            let w: Vec<Xor> = self.rep.draw(j, nw).unwrap_or_default();
            drawn[j % 3] = Some(w.into_iter().map(|x| x.0).collect());
        }
        let bits: Plane = (0..nw)
            .map(|i| Rep {
                a: Xor(drawn[me].as_ref().map_or(0, |v| v[i])),
                b: Xor(drawn[(me + 1) % 3].as_ref().map_or(0, |v| v[i])),
            })
            .collect();
        let e: Vec<Vec<Rep<u128>>> = (0..3)
            .map(|j| self.ring_of_component(j, drawn[j].as_deref(), n))
            .collect();
        let alpha = vec![self.key.alpha; n];
        // Round 1: t = e_0·e_1 and α·e_j.
        let mut local = Rep3::<u128>::mul_local(&e[0], &e[1]);
        for ej in &e {
            local.extend(Rep3::<u128>::mul_local(&alpha, ej));
        }
        let mut r1 = self.rep.reshare(local)?;
        let ae2 = r1.split_off(3 * n);
        let ae1 = r1.split_off(2 * n);
        let ae0 = r1.split_off(n);
        let t = r1;
        for (ej, aej) in e.iter().zip([&ae0, &ae1, &ae2]) {
            self.ledger.push(ej, aej);
        }
        let two = |v: Rep<u128>| auth::scale_rep(v, 2);
        let u: Vec<Rep<u128>> = (0..n)
            .map(|i| auth::sub_rep(auth::add_rep(e[0][i], e[1][i]), two(t[i])))
            .collect();
        // Round 2: α·t, v = u·e_2, α·v.
        let mut local = Rep3::<u128>::mul_local(&ae0, &e[1]);
        local.extend(Rep3::<u128>::mul_local(&u, &e[2]));
        local.extend(Rep3::<u128>::mul_local(&ae2, &u));
        if n > 0 && self.cheat.fires(cheat::Kind::Material) {
            local[0] = local[0].wrapping_add(1);
        }
        let mut r2 = self.rep.reshare(local)?;
        let av = r2.split_off(2 * n);
        let v = r2.split_off(n);
        let at = r2;
        self.ledger.push(&t, &at);
        self.ledger.push(&v, &av);
        let ring = (0..n)
            .into_par_iter()
            .map(|i| {
                let au = auth::sub_rep(auth::add_rep(ae0[i], ae1[i]), two(at[i]));
                Auth {
                    x: auth::sub_rep(auth::add_rep(u[i], e[2][i]), two(v[i])),
                    m: auth::sub_rep(auth::add_rep(au, ae2[i]), two(av[i])),
                }
            })
            .collect();
        Ok(DaBits { bits, ring })
    }

    /// The ring values of the bits of `plane` (`n` elements; 3 rounds): open `β ⊕ e` to
    /// everyone for a fresh daBit `e`, then `β = o + (1 − 2o)·e`.
    #[cfg(test)]
    pub(super) fn bits_to_ring(&mut self, plane: &Plane, n: usize) -> R<Vec<Auth>> {
        let d = self.dabits(n)?;
        let masked: Plane = plane
            .iter()
            .zip(&d.bits)
            .map(|(x, y)| Rep {
                a: Xor(x.a.0 ^ y.a.0),
                b: Xor(x.b.0 ^ y.b.0),
            })
            .collect();
        let o: Vec<u64> = self
            .open_all(cheat::Kind::Compare, &masked)?
            .into_iter()
            .map(|x| x.0)
            .collect();
        let (me, key) = (self.rep.me, self.key);
        Ok(d.ring
            .par_iter()
            .enumerate()
            .map(|(i, &e)| {
                let ob = bit(&o, i) as u128;
                key.add_const(me, auth::scale(e, 1u128.wrapping_sub(2 * ob)), ob)
            })
            .collect())
    }
}
