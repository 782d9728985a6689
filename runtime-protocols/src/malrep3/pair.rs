//! The two evaluators of a group ([`super::dealt`]: `D = g`, `A = g + 1`, `B = g + 2` for
//! the elements of group `g`): openings to `A` and `B` only (the dealer knows the masks),
//! values they both know entered as component `g + 2`, their additive parts turned back
//! into replicated shares.

use super::auth::Auth;
use super::circuits::Sliced;
use super::dealt::to_planes;
use super::open::digest;
use super::MalRep3;
use crate::cheat;
use crate::net::NetError;
use crate::rep3::assist::group;
use crate::rep3::Rep;
use crate::word::Word;
use crate::ProtocolError;

type R<T> = Result<T, ProtocolError>;

/// The group of element `e` of `n`.
pub(super) fn group_of(n: usize, e: usize) -> usize {
    (0..3).find(|&g| group(n, g).contains(&e)).unwrap_or(0)
}

/// This party's role in group `g`: 0 dealer, 1 `A`, 2 `B`.
pub(super) fn role(me: usize, g: usize) -> usize {
    (me + 3 - g) % 3
}

fn mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn put(out: &mut Vec<u8>, v: u128, bytes: usize) {
    out.extend_from_slice(&v.to_le_bytes()[..bytes]);
}

fn take(b: &[u8], i: usize, bytes: usize) -> u128 {
    let mut w = [0u8; 16];
    w[..bytes].copy_from_slice(&b[i * bytes..(i + 1) * bytes]);
    u128::from_le_bytes(w)
}

impl<W: Word> MalRep3<W> {
    /// Open `x mod 2^bits` to the evaluators of each element's group (1 round): `A` gets
    /// component `g` from `B`, `B` gets component `g + 1` from `A`, and the dealer, which
    /// holds both, sends each a hash. `Some` where this party evaluates.
    pub(super) fn open_pair(
        &mut self,
        x: &[Rep<u128>],
        bits: u32,
        groups: &[usize],
    ) -> R<Vec<Option<u128>>> {
        let me = self.rep.me;
        let n = x.len();
        let members = |g: usize| -> Vec<usize> { (0..n).filter(|&e| groups[e] == g).collect() };
        let (of_me, of_prev, of_next) = (members(me), members((me + 2) % 3), members((me + 1) % 3));
        let count = self.openings + 1;
        self.openings = count;
        let (bytes, m) = ((bits as usize).div_ceil(8), mask(bits));
        let comps = |elems: &[usize], a: bool| -> Vec<u8> {
            let mut out = Vec::new();
            for &e in elems {
                put(&mut out, (if a { x[e].a } else { x[e].b }) & m, bytes);
            }
            out
        };
        // To `next`: a hash of this group's first components (as dealer) and, as `A` of
        // group `prev`, its first components. To `prev`: the hash of the second ones and,
        // as `B` of group `next`, its second components.
        let mut to_next = digest(count, &comps(&of_me, true)).to_vec();
        let mut mine_a = comps(&of_prev, true);
        if !mine_a.is_empty() && self.cheat.fires(cheat::Kind::Compare) {
            mine_a[0] ^= 1;
        }
        to_next.extend(mine_a);
        let mut to_prev = digest(count, &comps(&of_me, false)).to_vec();
        to_prev.extend(comps(&of_next, false));
        let (np, nn) = (of_prev.len(), of_next.len());
        let (from_prev, from_next) =
            self.swap(to_prev, to_next, 32 + bytes * nn, 32 + bytes * np)?;
        let garbage = |party: usize| {
            ProtocolError::Net(NetError::Garbage {
                party,
                what: "an opening of the wrong length".into(),
            })
        };
        if from_prev.len() != 32 + bytes * nn {
            return Err(garbage(self.rep.prev()));
        }
        if from_next.len() != 32 + bytes * np {
            return Err(garbage(self.rep.next()));
        }
        let mut out = vec![None; n];
        // As `A` of group `prev`: component `prev` from `next` (`B`), hash from `prev` (`D`).
        let (hash, got) = (&from_prev[..32], &from_next[32..]);
        if !self.twin && hash != digest(count, got) {
            return Err(ProtocolError::Cheat {
                check: "opening check",
                what: format!(
                    "party {} sent a component that party {}, which holds it too, does not confirm",
                    self.rep.next(),
                    self.rep.prev()
                ),
            });
        }
        for (i, &e) in of_prev.iter().enumerate() {
            out[e] = Some(
                x[e].a
                    .wrapping_add(x[e].b)
                    .wrapping_add(take(got, i, bytes))
                    & m,
            );
        }
        // As `B` of group `next`: component `next + 1` from `prev` (`A`), hash from `next`.
        let (hash, got) = (&from_next[..32], &from_prev[32..]);
        if !self.twin && hash != digest(count, got) {
            return Err(ProtocolError::Cheat {
                check: "opening check",
                what: format!(
                    "party {} sent a component that party {}, which holds it too, does not confirm",
                    self.rep.prev(),
                    self.rep.next()
                ),
            });
        }
        for (i, &e) in of_next.iter().enumerate() {
            out[e] = Some(
                x[e].a
                    .wrapping_add(x[e].b)
                    .wrapping_add(take(got, i, bytes))
                    & m,
            );
        }
        Ok(out)
    }

    /// Bits of values the evaluators of each element know (`Some` there), as component
    /// `g + 2` of a boolean sharing, `w` bits.
    pub(super) fn pair_bits(&self, values: &[Option<u128>], w: usize, groups: &[usize]) -> Sliced {
        let (me, n) = (self.rep.me, values.len());
        // Component g + 2 is `B`'s first and `A`'s second: numbers, then sliced.
        let (a, b): (Vec<u128>, Vec<u128>) = values
            .iter()
            .zip(groups)
            .map(|(v, &g)| match (*v, role(me, g)) {
                (Some(v), 2) => (v, 0),
                (Some(v), 1) => (0, v),
                _ => (0, 0),
            })
            .unzip();
        Sliced {
            n,
            planes: to_planes(&a, &b, w as u32),
        }
    }

    /// Additive parts of `A` (`Some` at `A`) and `B` (`Some` at `B`) of authenticated values
    /// back to replicated shares (1 round): `A` sends the dealer `s_A − ρ`, `B` sends
    /// `s_B + ρ'` (`ρ`, `ρ'` from `A`'s and `B`'s key), and component `g + 2` is `ρ − ρ'`.
    /// Both halves travel, so a wrong part fails the MAC check; the pairs go to its ledger.
    pub(super) fn reshare_pair(
        &mut self,
        parts: &[Option<Auth>],
        groups: &[usize],
    ) -> R<Vec<Auth>> {
        let (me, n) = (self.rep.me, parts.len());
        self.check_if_full()?;
        let members = |g: usize| -> Vec<usize> { (0..n).filter(|&e| groups[e] == g).collect() };
        let mut out = vec![Auth::default(); n];
        let (mut to_prev, mut to_next) = (Vec::new(), Vec::new());
        for g in 0..3 {
            let elems = members(g);
            // `ρ`, `ρ'` (value and MAC halves) from the key of component g + 2.
            let Some(rho) = self.rep.draw::<u128>(g + 2, 4 * elems.len()) else {
                continue;
            };
            let r = role(me, g);
            for (i, &e) in elems.iter().enumerate() {
                let (vx, vm) = (rho[4 * i], rho[4 * i + 1]);
                let (wx, wm) = (rho[4 * i + 2], rho[4 * i + 3]);
                // The part's value and MAC are `x.a`, `m.a`.
                let s = parts[e].unwrap_or_default();
                let (sx, sm) = (s.x.a, s.m.a);
                let (cx, cm) = (vx.wrapping_sub(wx), vm.wrapping_sub(wm));
                if r == 1 {
                    // `A` holds components g + 1 (its first) and g + 2.
                    let (dx, dm) = (sx.wrapping_sub(vx), sm.wrapping_sub(vm));
                    to_prev.push((dx, dm));
                    out[e] = Auth {
                        x: Rep { a: dx, b: cx },
                        m: Rep { a: dm, b: cm },
                    };
                } else {
                    // `B` holds components g + 2 (its first) and g.
                    let (dx, dm) = (sx.wrapping_add(wx), sm.wrapping_add(wm));
                    to_next.push((dx, dm));
                    out[e] = Auth {
                        x: Rep { a: cx, b: dx },
                        m: Rep { a: cm, b: dm },
                    };
                }
            }
        }
        // `A` of group prev sends to prev (its dealer); `B` of group next to next.
        let enc = |v: &[(u128, u128)]| -> Vec<u8> {
            v.iter()
                .flat_map(|(x, m)| x.to_le_bytes().into_iter().chain(m.to_le_bytes()))
                .collect()
        };
        let mut bytes_prev = enc(&to_prev);
        if !bytes_prev.is_empty() && self.cheat.fires(cheat::Kind::Compare) {
            bytes_prev[0] ^= 1;
        }
        let mine = members(me);
        // As dealer of group me: from `next` (its A) and from `prev` (its B).
        let due = 32 * mine.len();
        let (from_prev, from_next) = self.swap(bytes_prev, enc(&to_next), due, due)?;
        if from_prev.len() != due || from_next.len() != due {
            return Err(ProtocolError::Net(NetError::Garbage {
                party: self.rep.next(),
                what: "a resharing of the wrong length".into(),
            }));
        }
        let word = |b: &[u8], i: usize| {
            u128::from_le_bytes(b[16 * i..16 * i + 16].try_into().unwrap_or_default())
        };
        for (i, &e) in mine.iter().enumerate() {
            // Dealer: component g (its first) from `B` = prev, component g + 1 from `A` = next.
            out[e] = Auth {
                x: Rep {
                    a: word(&from_prev, 2 * i),
                    b: word(&from_next, 2 * i),
                },
                m: Rep {
                    a: word(&from_prev, 2 * i + 1),
                    b: word(&from_next, 2 * i + 1),
                },
            };
        }
        let (x, m): (Vec<Rep<u128>>, Vec<Rep<u128>>) = out.iter().map(|s| (s.x, s.m)).unzip();
        self.ledger.push(&x, &m);
        Ok(out)
    }
}
