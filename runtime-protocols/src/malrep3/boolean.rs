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

/// One party's record of its AND words: its components of both factors, its two keys'
/// draws, and the word it received (from party `me + 1`).
#[derive(Default)]
pub(super) struct AndLedger {
    pub xa: Vec<u64>,
    pub xb: Vec<u64>,
    pub ya: Vec<u64>,
    pub yb: Vec<u64>,
    /// `F(k_me)`, `F(k_{me+1})`.
    pub f_lo: Vec<u64>,
    pub f_hi: Vec<u64>,
    pub received: Vec<u64>,
}

impl AndLedger {
    pub fn len(&self) -> usize {
        self.xa.len()
    }
}

impl<W: Word> MalRep3<W> {
    /// Lane-wise AND of boolean sharings (1 round, one word per element per party).
    pub(super) fn and(&mut self, x: &[Rep<Xor>], y: &[Rep<Xor>]) -> R<Vec<Rep<Xor>>> {
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
        let l = &mut self.ands;
        l.xa.extend(x.iter().map(|s| s.a.0));
        l.xb.extend(x.iter().map(|s| s.b.0));
        l.ya.extend(y.iter().map(|s| s.a.0));
        l.yb.extend(y.iter().map(|s| s.b.0));
        l.f_lo.extend(lo.iter().map(|v| v.0));
        l.f_hi.extend(hi.iter().map(|v| v.0));
        l.received.extend(got.iter().map(|v| v.0));
        Ok(sent
            .into_iter()
            .zip(got)
            .map(|(a, b)| Rep { a, b })
            .collect())
    }
}
