//! Boolean sharings: lane-wise AND, a log-depth comparator, and bit injection into the ring.

use super::{Rep, Rep3, Xor};
use crate::word::Word;
use crate::ProtocolError;
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;
/// Boolean shares of one bit per element, in lane 0.
pub(super) type Bits = Vec<Rep<Xor>>;

/// Shift every lane of both components right by `s`.
fn shr(x: &[Rep<Xor>], s: u32) -> Vec<Rep<Xor>> {
    x.iter()
        .map(|v| Rep {
            a: Xor(v.a.0 >> s),
            b: Xor(v.b.0 >> s),
        })
        .collect()
}

fn xor(x: &[Rep<Xor>], y: &[Rep<Xor>]) -> Vec<Rep<Xor>> {
    x.iter()
        .zip(y)
        .map(|(u, v)| Rep {
            a: Xor(u.a.0 ^ v.a.0),
            b: Xor(u.b.0 ^ v.b.0),
        })
        .collect()
}

fn mask(x: &[Rep<Xor>], m: u64) -> Vec<Rep<Xor>> {
    x.iter()
        .map(|v| Rep {
            a: Xor(v.a.0 & m),
            b: Xor(v.b.0 & m),
        })
        .collect()
}

/// Levels of the comparator tree over `w` data lanes and the extra lane.
pub(super) fn compare_levels(w: u32) -> u32 {
    (w + 1).next_power_of_two().trailing_zeros()
}

impl<W: Word> Rep3<W> {
    /// XOR a public constant into component 0.
    pub(super) fn xor_public(&self, x: &[Rep<Xor>], c: u64) -> Vec<Rep<Xor>> {
        let me = self.me;
        x.iter()
            .map(|v| match me {
                0 => Rep {
                    a: Xor(v.a.0 ^ c),
                    b: v.b,
                },
                2 => Rep {
                    a: v.a,
                    b: Xor(v.b.0 ^ c),
                },
                _ => *v,
            })
            .collect()
    }

    /// Lane-wise AND: one round, 8 bytes per element and party.
    pub(super) fn and(&mut self, x: &[Rep<Xor>], y: &[Rep<Xor>]) -> R<Vec<Rep<Xor>>> {
        let z: Vec<Xor> = x
            .par_iter()
            .zip(y.par_iter())
            .map(|(u, v)| Xor((u.a.0 & v.a.0) ^ (u.a.0 & v.b.0) ^ (u.b.0 & v.a.0)))
            .collect();
        self.reshare(z)
    }

    /// Compares `X` and `Y` lane by lane on lanes `1..=w` as unsigned integers, and returns
    /// per element, in lane 0: `lt = [X < Y]` and `tie = [X = Y] ∧ (X_0 ⊕ Y_0)` (lane 0 of
    /// the inputs is an extra bit to AND with equality, for free).
    ///
    /// A tree of (generate, propagate) pairs: `G = ¬x ∧ y`, `P = ¬(x ⊕ y)`, combined as
    /// `(G_h ⊕ P_h·G_l, P_h·P_l)`. Rounds: `1 + ⌈log2(w + 1)⌉`; bytes per element and
    /// party: `8 · (1 + 2⌈log2(w + 1)⌉)`. Needs `w ≤ 63`.
    pub(super) fn compare(&mut self, x: &[Rep<Xor>], y: &[Rep<Xor>], w: u32) -> R<(Bits, Bits)> {
        debug_assert!(w <= 63);
        let levels = compare_levels(w);
        let width = 1u32 << levels;
        let lanes = if width >= 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        let data = lanes & !1;
        let n = x.len();
        let not_x = self.xor_public(x, u64::MAX);
        let mut g = mask(&self.and(&not_x, y)?, data);
        let mut p = self.xor_public(&xor(x, y), data);
        for l in 0..levels {
            let s = 1u32 << l;
            let ph = shr(&p, s);
            let mut lhs = ph.clone();
            lhs.extend_from_slice(&ph);
            let mut rhs = g.clone();
            rhs.extend_from_slice(&p);
            let prod = self.and(&lhs, &rhs)?;
            g = xor(&shr(&g, s), &prod[..n]);
            p = prod[n..].to_vec();
        }
        Ok((mask(&g, 1), mask(&p, 1)))
    }

    /// Arithmetic shares of lane 0 of boolean shares (bit injection). Two rounds: party 0,
    /// which holds components 0 and 1, shares `u = t_0 ⊕ t_1`; then `t = u + t_2 − 2·u·t_2`
    /// with one multiplication (`t_2` is known to parties 1 and 2).
    pub(super) fn bit_to_arith(&mut self, t: &[Rep<Xor>]) -> R<Vec<Rep<W>>> {
        let n = t.len();
        let me = self.me;
        let u_val: Option<Vec<W>> = (me == 0).then(|| {
            t.iter()
                .map(|v| W::from_u128(((v.a.0 ^ v.b.0) & 1) as u128))
                .collect()
        });
        let u = self.share_from(0, u_val.as_deref(), n)?;
        let t2_val: Option<Vec<W>> = match me {
            1 => Some(
                t.iter()
                    .map(|v| W::from_u128((v.b.0 & 1) as u128))
                    .collect(),
            ),
            2 => Some(
                t.iter()
                    .map(|v| W::from_u128((v.a.0 & 1) as u128))
                    .collect(),
            ),
            _ => None,
        };
        let t2 = self.known_to_comp(2, t2_val.as_deref(), n);
        let prod = self.mul_shares(&u, &t2)?;
        let two = W::from_i64(2);
        Ok(u.iter()
            .zip(&t2)
            .zip(&prod)
            .map(|((u, t), p)| Rep {
                a: u.a.add(t.a).sub(two.mul(p.a)),
                b: u.b.add(t.b).sub(two.mul(p.b)),
            })
            .collect())
    }
}
