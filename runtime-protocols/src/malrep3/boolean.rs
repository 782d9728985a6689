//! Boolean sharings: `rep3`'s XOR shares (64 lanes per word) and its AND, one bit per lane
//! per party, with every AND a party sends recorded for the proof ([`super::prove`]).
//!
//! Party `i` sends party `i − 1` the word `x_i y_i ⊕ x_i y_{i+1} ⊕ x_{i+1} y_i ⊕ F(k_{i+1}) ⊕
//! F(k_i)` (`k_j` the key of component `j`). Party `i − 1` knows `x_i, y_i, F(k_i)` and the
//! word; party `i + 1` knows `x_{i+1}, y_{i+1}, F(k_{i+1})`; so the two of them can check
//! it with the prover's help, each holding one factor of each cross term.

use super::MalRep3;
use crate::cheat;
use crate::rep3::{Rep, Xor};
use crate::word::Word;
use crate::ProtocolError;
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;

impl<W: Word> MalRep3<W> {
    /// Lane-wise AND of boolean sharings (1 round, one word per element per party).
    pub(super) fn and(&mut self, x: &[Rep<Xor>], y: &[Rep<Xor>]) -> R<Vec<Rep<Xor>>> {
        self.check_if_full()?;
        let n = x.len();
        let me = self.rep.me;
        let lo: Vec<Xor> = self.rep.draw(me, n).unwrap_or_default();
        let hi: Vec<Xor> = self.rep.draw(me + 1, n).unwrap_or_default();
        let mut sent: Vec<Xor> = x
            .par_iter()
            .zip(y.par_iter())
            .zip(lo.par_iter().zip(hi.par_iter()))
            .map(|((x, y), (l, h))| {
                Xor((x.a.0 & y.a.0) ^ (x.a.0 & y.b.0) ^ (x.b.0 & y.a.0) ^ l.0 ^ h.0)
            })
            .collect();
        if n > 0 && self.cheat.fires(cheat::Kind::Compare) {
            sent[0].0 ^= 1;
        }
        let (prev, next) = (self.rep.prev(), self.rep.next());
        let got = self.rep.round(vec![(prev, sent.clone())], &[(next, n)])?;
        let got = got.into_iter().next().unwrap_or_default();
        // Relations (module doc of `prove`): this party's words, `next`'s (as V1: its
        // components are this party's second ones), `prev`'s (as V2: its second
        // components are this party's first ones).
        let word = |v: &[Rep<Xor>], a: bool| -> Vec<u64> {
            v.iter().map(|s| if a { s.a.0 } else { s.b.0 }).collect()
        };
        let (xa, xb, ya, yb) = (word(x, true), word(x, false), word(y, true), word(y, false));
        let rel = &mut self.bits;
        let f = rel.own.begin(n);
        rel.own.u(f, xa.clone());
        rel.own.w(f, yb.clone());
        rel.own.u(f, ya.clone());
        rel.own.w(f, xb.clone());
        let f = rel.next.begin(n);
        rel.next.z((0..n)
            .map(|j| got[j].0 ^ hi[j].0 ^ (xb[j] & yb[j]))
            .collect());
        rel.next.u(f, xb);
        rel.next.u(f, yb);
        let f = rel.prev.begin(n);
        rel.prev.w(f, ya);
        rel.prev.w(f, xa);
        rel.prev.z(lo.iter().map(|v| v.0).collect());
        Ok(sent
            .into_iter()
            .zip(got)
            .map(|(a, b)| Rep { a, b })
            .collect())
    }
}
