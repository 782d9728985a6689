//! `table[x − offset]` element-wise, with a one-hot vector the third party of each group
//! deals ([`super::dealt`]'s roles): a mask `r = (r_A + r_B) mod 2^ℓ` from the keys it shares
//! with `A` and with `B`, the ring bits `h_u = [r = u]` for every `u < 2^ℓ` and the carry
//! `c = [r_A + r_B ≥ 2^ℓ]` dealt like daBits. It proves over F_p, per element, that each
//! dealt value is a bit (`h² − h = 0`: a cross term `2·a_A·a_B`), that `Σ h_u = 1` and that
//! `Σ u·h_u = r_A + r_B − 2^ℓ·c`: together, `h` is the one-hot vector of `r`.
//!
//! Then `o = (x − offset + r) mod 2^ℓ` is opened to `A` and `B` (the dealer hashes), and
//! `table[x − offset] = Σ_u table[(o − u) mod 2^ℓ]·h_u` is linear in the authenticated `h`
//! with coefficients `A` and `B` know: their additive parts are reshared with their MACs.
//! Four rounds; `2^ℓ` dealt and authenticated words per element, so a large lookup runs in
//! pieces ([`MAX_LOOKUP_WORDS`]).

use super::auth::{self, Auth};
use super::dealt::{fp, SPREAD};
use super::pair::{group_of, role};
use super::MalRep3;
use crate::field::Fp;
use crate::net::NetError;
use crate::rep3::assist::group;
use crate::rep3::Rep;
use crate::word::Word;
use crate::ProtocolError;

type R<T> = Result<T, ProtocolError>;

/// A group's `r_A`, `r_B` and the dealt values' `A` and `B` words (kind-major).
type Sides = (Vec<u128>, Vec<u128>, Vec<Vec<i128>>, Vec<Vec<i128>>);

/// Bits of the padded table length.
fn table_bits(len: usize) -> u32 {
    len.max(1).next_power_of_two().trailing_zeros()
}

/// The most dealt words (table entries and carry, per element) one lookup takes at once.
/// Each is a 128-bit ring sharing, then an authenticated value, a ledger pair and proof
/// relations (≈ 300 bytes per party while the piece runs), so EfficientNet-B0's SiLU
/// tables (257 words per element, 401,408 elements in its first) took `qmpc cost` past
/// 10 GB in one piece, and pieces of 2^22 words took its three parties past 4 GB. A
/// larger lookup runs in pieces, each its own four rounds, each after a check where its
/// pairs and relations would take the ledger past [`super::check::CHECK_EVERY`].
const MAX_LOOKUP_WORDS: usize = if cfg!(test) { 1 << 10 } else { 1 << 20 };

impl<W: Word> MalRep3<W> {
    /// [`MalRep3::lookup_table`] in pieces of at most [`MAX_LOOKUP_WORDS`] dealt words.
    pub(super) fn lookup_pieces(&mut self, x: &[Auth], table: &[i64], offset: i64) -> R<Vec<Auth>> {
        let words = (1usize << table_bits(table.len())) + 1;
        let piece = (MAX_LOOKUP_WORDS / words).max(1);
        let mut out = Vec::with_capacity(x.len());
        for part in x.chunks(piece) {
            out.extend(self.lookup_table(part, table, offset)?);
        }
        Ok(out)
    }

    pub(super) fn lookup_table(&mut self, x: &[Auth], table: &[i64], offset: i64) -> R<Vec<Auth>> {
        let (me, n) = (self.rep.me, x.len());
        let l = table_bits(table.len());
        // Per element: a relation and a ledger pair per dealt word, two more relations
        // and the reshared output's pair.
        let words = ((1usize << l) + 1) * n;
        self.check_before(2 * words + 3 * n)?;
        if n == 0 || l == 0 {
            // One entry: x must be `offset`.
            let v = table.first().copied().unwrap_or(0);
            return Ok(vec![self.key.constant(me, auth::lift(v)); n]);
        }
        let size = 1usize << l;
        let kinds = size + 1;
        let groups: Vec<usize> = (0..n).map(|e| group_of(n, e)).collect();
        // Draws and dealing, group by group.
        let mut r = vec![Rep::<u128>::default(); n];
        // Kind-major: `ring[k·n + e]`, the one-hot words first, then the carries.
        let mut ring = vec![Rep::<u128>::default(); kinds * n];
        let mut to_prev = Vec::new();
        let mut sides: Vec<Sides> = Vec::new();
        for g in 0..3 {
            let ng = group(n, g).len();
            let (ka, kb) = (g + 1, g);
            let mask = (1u128 << l) - 1;
            let ra: Vec<u128> = self
                .rep
                .draw::<u128>(ka, ng)
                .map(|v| v.into_iter().map(|x| x & mask).collect())
                .unwrap_or_default();
            let spread = (1u128 << SPREAD) - 1;
            let aa: Vec<Vec<i128>> = (0..kinds)
                .filter_map(|_| self.rep.draw::<u128>(ka, ng))
                .map(|v| v.into_iter().map(|x| (x & spread) as i128).collect())
                .collect();
            let rb: Vec<u128> = self
                .rep
                .draw::<u128>(kb, ng)
                .map(|v| v.into_iter().map(|x| x & mask).collect())
                .unwrap_or_default();
            let mut ab: Vec<Vec<i128>> = Vec::new();
            if g == me {
                // h_u = [r = u], then c; `B`'s words.
                ab = vec![vec![0i128; ng]; kinds];
                for i in 0..ng {
                    let sum = ra[i] + rb[i];
                    let u = (sum & mask) as usize;
                    for (k, row) in ab.iter_mut().enumerate() {
                        let x = if k < size {
                            i128::from(k == u)
                        } else {
                            i128::from(sum >> l == 1)
                        };
                        row[i] = x - aa[k][i];
                    }
                }
                if ng > 0 && self.cheat.fires(crate::cheat::Kind::Material) {
                    ab[0][0] += 1;
                }
                for row in &ab {
                    for v in row {
                        to_prev.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            sides.push((ra, rb, aa, ab));
        }
        let gb = (me + 1) % 3;
        let ngb = group(n, gb).len();
        let due = 16 * kinds * ngb;
        let (_, got) = self.swap(to_prev, Vec::new(), 0, due)?;
        if got.len() != due {
            return Err(ProtocolError::Net(NetError::Garbage {
                party: gb,
                what: "a dealt one-hot vector of the wrong length".into(),
            }));
        }
        let limit = (1i128 << SPREAD) + 2;
        sides[gb].3 = (0..kinds)
            .map(|k| {
                (0..ngb)
                    .map(|i| {
                        let at = 16 * (k * ngb + i);
                        i128::from_le_bytes(got[at..at + 16].try_into().unwrap_or_default())
                    })
                    .collect()
            })
            .collect();
        if !self.twin && sides[gb].3.iter().flatten().any(|v| v.abs() >= limit) {
            return Err(ProtocolError::Cheat {
                check: "dealt material check",
                what: format!("party {gb} dealt a ring part out of range"),
            });
        }
        // Relations (prover: the dealer; V1 = B knows u and its z; V2 = A w and its z).
        for (g, (ra, rb, aa, ab)) in sides.iter().enumerate() {
            let ng = group(n, g).len();
            let rl = role(me, g);
            let side = match rl {
                0 => &mut self.ints.own,
                1 => &mut self.ints.prev,
                _ => &mut self.ints.next,
            };
            let f = side.begin(kinds * ng + 2 * ng);
            let bit_z = |a: &[Vec<i128>]| -> Vec<Fp> {
                a.iter().flatten().map(|&v| fp(v) - fp(v) * fp(v)).collect()
            };
            if rl != 1 {
                side.u(f, ab.iter().flatten().map(|&v| fp(2 * v)).collect());
            }
            if rl != 2 {
                side.w(f, aa.iter().flatten().map(|&v| fp(v)).collect());
            }
            let linear = |a: &[Vec<i128>], r: &[u128], first: bool| -> Vec<Fp> {
                let one = (0..ng).map(|i| {
                    let s: i128 = (0..size).map(|u| a[u][i]).sum();
                    fp(s - i128::from(first))
                });
                let index = (0..ng).map(|i| {
                    let s: i128 = (0..size).map(|u| u as i128 * a[u][i]).sum();
                    fp(s - r[i] as i128 + (a[size][i] << l))
                });
                one.chain(index).collect()
            };
            match rl {
                1 => {
                    let mut z = bit_z(aa);
                    z.extend(linear(aa, ra, true));
                    side.z(z);
                }
                2 => {
                    let mut z = bit_z(ab);
                    z.extend(linear(ab, rb, false));
                    side.z(z);
                }
                _ => {}
            }
            // This party's components of the mask and of the dealt values.
            for (slot, comp) in [(0, me), (1, me + 1)] {
                let a_side = match (comp % 3 + 3 - g) % 3 {
                    1 => true,
                    0 => false,
                    _ => continue,
                };
                let (rv, av) = if a_side { (ra, aa) } else { (rb, ab) };
                for (i, e) in group(n, g).enumerate() {
                    let put = |rep: &mut Rep<u128>, v: u128| {
                        if slot == 0 {
                            rep.a = v
                        } else {
                            rep.b = v
                        }
                    };
                    if let Some(&v) = rv.get(i) {
                        put(&mut r[e], v);
                    }
                    for (k, row) in av.iter().enumerate() {
                        put(&mut ring[k * n + e], row[i] as u128);
                    }
                }
            }
        }
        drop(sides);
        ring.truncate(size * n);
        let hot = self.authenticate(ring)?;
        let key = self.key;
        let off = auth::lift(offset).wrapping_neg();
        let masked: Vec<Rep<u128>> = x
            .iter()
            .zip(&r)
            .map(|(&x, r)| auth::add_rep(key.add_const(me, x, off).x, *r))
            .collect();
        let o = self.open_pair(&masked, l, &groups)?;
        let entry = |v: usize| table.get(v).map_or(0, |&t| auth::lift(t));
        let parts: Vec<Option<Auth>> = (0..n)
            .map(|e| {
                let o = o[e]? as usize;
                let rl = role(me, groups[e]);
                let (mut vx, mut vm) = (0u128, 0u128);
                for u in 0..size {
                    let c = entry((o + size - u) % size);
                    let h = hot[u * n + e];
                    let (hx, hm) = match rl {
                        1 => (h.x.a.wrapping_add(h.x.b), h.m.a.wrapping_add(h.m.b)),
                        _ => (h.x.b, h.m.b),
                    };
                    vx = vx.wrapping_add(c.wrapping_mul(hx));
                    vm = vm.wrapping_add(c.wrapping_mul(hm));
                }
                Some(Auth {
                    x: Rep { a: vx, b: 0 },
                    m: Rep { a: vm, b: 0 },
                })
            })
            .collect();
        self.reshare_pair(&parts, &groups)
    }
}
