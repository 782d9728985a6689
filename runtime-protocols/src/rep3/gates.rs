//! The gate set ([`GateSet`]) of `rep3`, dealer-free: random boolean bits cost nothing
//! (each component from its pair's key), `and` is `rep3`'s AND (one round), `b2a` its bit
//! injection (two rounds), and a mask is `k` such bits with their injections (so `r` is
//! uniform in Z_2^k and its high part and top bit are sums of injected bits). The tests
//! hold `rep3`'s own selection and lookup (the third party as dealer) to the generic ones.

use super::{planes, reps, Rep3, Xor};
use crate::func::gates::{pow2, scale, GateSet, Masks};
use crate::planes::{BitPlane, Pair, Plane};
use crate::word::Word;
use crate::{Core, ProtocolError};

type R<T> = Result<T, ProtocolError>;

impl<W: Word> GateSet for Rep3<W> {
    /// One bit per element in lane 0 of each component (the other lanes are ignored).
    type Bits = Pair<Xor>;

    fn domain(&self) -> crate::func::Domain {
        crate::func::Domain::Ring { bits: W::BITS }
    }

    fn masks(&mut self, n: usize, m: u32, _: u32) -> R<Masks<Pair<W>, Pair<Xor>>> {
        let k = W::BITS as usize;
        let me = self.me;
        let lane = |v: Vec<Xor>| v.into_iter().map(|x| Xor(x.0 & 1)).collect::<Vec<_>>();
        let a = lane(self.draw::<Xor>(me, k * n).unwrap_or_default());
        let b = lane(self.draw::<Xor>(me + 1, k * n).unwrap_or_default());
        let bits = Pair { a, b };
        let arith = self.b2a(&bits)?;
        let bit = |j: usize| arith.slice(j * n..(j + 1) * n);
        let mut high = Pair::zeros(n);
        for j in m as usize..k {
            high = self.add(&high, &scale(self, &bit(j), &vec![pow2(j as u32 - m); n]));
        }
        let m = m as usize;
        Ok(Masks {
            bits: bits.slice(0..m * n),
            arith: arith.slice(0..m * n),
            high,
            top: bit(k - 1),
            above: None,
        })
    }
    /// One round: each party sends the component its predecessor lacks.
    fn open_all(&mut self, x: &Pair<W>) -> R<Vec<u128>> {
        let (prev, next) = (self.prev(), self.next());
        let got = self.round(vec![(prev, x.b.clone())], &[(next, x.len())])?;
        let theirs = got.into_iter().next().unwrap_or_default();
        Ok((0..x.len())
            .map(|i| x.a[i].add(x.b[i]).add(theirs[i]).to_u128())
            .collect())
    }
    fn and(&mut self, a: &Pair<Xor>, b: &Pair<Xor>) -> R<Pair<Xor>> {
        Ok(planes(Rep3::and(self, &reps(a), &reps(b))?))
    }
    fn either(&self, a: &Pair<Xor>, b: &Pair<Xor>) -> Pair<Xor> {
        let xor = |x: &[Xor], y: &[Xor]| x.iter().zip(y).map(|(u, v)| Xor(u.0 ^ v.0)).collect();
        Pair {
            a: xor(&a.a, &b.a),
            b: xor(&a.b, &b.b),
        }
    }
    /// The public bits go into component 0 (party 0's `a`, party 2's `b`).
    fn xor_public(&self, a: &Pair<Xor>, c: &BitPlane) -> Pair<Xor> {
        let flip = |x: &[Xor]| {
            x.iter()
                .enumerate()
                .map(|(i, v)| Xor(v.0 ^ c.get(i)))
                .collect()
        };
        match self.me {
            0 => Pair {
                a: flip(&a.a),
                b: a.b.clone(),
            },
            2 => Pair {
                a: a.a.clone(),
                b: flip(&a.b),
            },
            _ => a.clone(),
        }
    }
    fn b2a(&mut self, a: &Pair<Xor>) -> R<Pair<W>> {
        Ok(planes(self.bit_to_arith(&reps(a))?))
    }
}
