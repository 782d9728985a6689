//! Authenticated replicated shares over Z_2^128: a value `x` of the program's ring Z_2^k is
//! the low `k` bits of a `rep3` sharing `[x]`, and `[α·x]` rides along, where `α` is a
//! random key nobody knows (each component from a pairwise key). Everything linear is
//! local on both halves; a product is one `rep3` resharing of both halves (the MAC half as
//! `(α·x)·y`), which a cheating party can only shift by errors it chooses without knowing
//! `α`, and the [`super::check`] catches such a pair with probability `1 − 2^−(s−log s)`.

use crate::rep3::Rep;
use crate::word::Word;

/// One party's shares of an authenticated value: its two components of `x` and of `α·x`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    pub x: Rep<u128>,
    pub m: Rep<u128>,
}

/// Component-wise sum.
pub fn add_rep(a: Rep<u128>, b: Rep<u128>) -> Rep<u128> {
    Rep {
        a: a.a.wrapping_add(b.a),
        b: a.b.wrapping_add(b.b),
    }
}

/// Component-wise difference.
pub fn sub_rep(a: Rep<u128>, b: Rep<u128>) -> Rep<u128> {
    Rep {
        a: a.a.wrapping_sub(b.a),
        b: a.b.wrapping_sub(b.b),
    }
}

/// Both components times a public constant.
pub fn scale_rep(a: Rep<u128>, c: u128) -> Rep<u128> {
    Rep {
        a: a.a.wrapping_mul(c),
        b: a.b.wrapping_mul(c),
    }
}

/// A value of the program's ring, sign-extended into Z_2^128.
pub fn lift(v: i64) -> u128 {
    v as i128 as u128
}

/// The program ring's value of the low `W::BITS` bits.
pub fn lower<W: Word>(v: u128) -> i64 {
    W::from_u128(v).to_i64()
}

/// The key material of the local operations: this party's shares of `α`.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub alpha: Rep<u128>,
}

impl Key {
    /// Shares of the public `c`: `c` in component 0, `c·α` for the MAC.
    pub fn constant(&self, me: usize, c: u128) -> Auth {
        let x = match me {
            0 => Rep { a: c, b: 0 },
            2 => Rep { a: 0, b: c },
            _ => Rep::default(),
        };
        Auth {
            x,
            m: scale_rep(self.alpha, c),
        }
    }

    pub fn add_const(&self, me: usize, s: Auth, c: u128) -> Auth {
        add(s, self.constant(me, c))
    }
}

pub fn add(a: Auth, b: Auth) -> Auth {
    Auth {
        x: add_rep(a.x, b.x),
        m: add_rep(a.m, b.m),
    }
}

pub fn sub(a: Auth, b: Auth) -> Auth {
    Auth {
        x: sub_rep(a.x, b.x),
        m: sub_rep(a.m, b.m),
    }
}

pub fn scale(a: Auth, c: u128) -> Auth {
    Auth {
        x: scale_rep(a.x, c),
        m: scale_rep(a.m, c),
    }
}

/// The value halves.
pub fn values(a: &[Auth]) -> Vec<Rep<u128>> {
    a.iter().map(|s| s.x).collect()
}

/// The MAC halves.
pub fn macs(a: &[Auth]) -> Vec<Rep<u128>> {
    a.iter().map(|s| s.m).collect()
}

/// Pairs the halves back up.
pub fn join(x: Vec<Rep<u128>>, m: Vec<Rep<u128>>) -> Vec<Auth> {
    x.into_iter().zip(m).map(|(x, m)| Auth { x, m }).collect()
}
