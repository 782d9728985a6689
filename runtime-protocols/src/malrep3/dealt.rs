//! Material the third party of a group deals and proves: masks with their bits (edaBits)
//! and bits shared in the ring as well (daBits), for the comparisons of [`super::select`].
//!
//! The elements are split into three groups; in group `g` party `g` is the dealer `D`,
//! `A = g + 1` and `B = g + 2` (`rep3`'s roles). Components: `g + 1` is `D`'s and `A`'s
//! (key `k_{g+1}`), `g` is `D`'s and `B`'s (key `k_g`), `g + 2` is `A`'s and `B`'s.
//!
//! - *Mask* `r = (r_A + r_B) mod 2^M`: `r_A` from `k_{g+1}`, `r_B` from `k_g`, so the ring
//!   sharing `(r_A, r_B, 0)` is free and only `D` knows `r`. Its bits are
//!   `a_j ⊕ b_j ⊕ c_j` with the carries `c_j` of `r_A + r_B`, which `D` shares: `A`'s part
//!   from `k_{g+1}`, `B`'s sent. `D` proves each carry, `c_{j+1} = a_j b_j ⊕ c_j (a_j ⊕ b_j)`
//!   (a bit relation: `A` knows `a`, `B` knows `b`, each its part of `c`).
//! - *Dealt bits* `X = X_A ⊕ X_B` (`A` and `B` each know a part: a carry, the mask's top
//!   bit, or a random bit from their keys with `D`) as ring values: `a_A` uniform below
//!   2^100 from `k_{g+1}`, `a_B = X − a_A` to `B`, who refuses `|a_B| ≥ 2^100 + 2`. `D` proves
//!   `a_A + a_B = X_A + X_B − 2 X_A X_B` over the integers by a proof over F_p: every term is
//!   far below `p = 2^127 − 1` and the range check leaves no multiple of `p` to hide.
//!
//! One round (`D` to `B`: `M` carry bits and one word per dealt bit of each element), and
//! the relations go to the proofs ([`super::prove`]) run before any output.

use super::circuits::{slice, Plane};
use super::MalRep3;
use crate::bitvec::words;
use crate::cheat;
use crate::field::Fp;
use crate::net::NetError;
use crate::rep3::assist::group;
use crate::rep3::{Rep, Xor};
use crate::word::Word;
use crate::ProtocolError;

type R<T> = Result<T, ProtocolError>;

/// Bits of `a_A`: a dealt bit's ring parts hide it up to 2^−99.
pub(super) const SPREAD: u32 = 100;

/// What to deal for `n` elements.
pub(super) struct Order {
    pub n: usize,
    /// Mask bits.
    pub m: u32,
    /// Positions `s` whose carry `c_s` is dealt as a ring value.
    pub carries: Vec<u32>,
    /// Random bits per element shared both ways.
    pub dabits: usize,
}

/// One party's shares of the material.
pub(super) struct Dealt {
    /// The mask's ring sharing `(r_A, r_B, 0)`: its value is `r + 2^M·c_M`.
    pub r: Vec<Rep<u128>>,
    /// The mask's bits `0..M` as one number per element (both XOR-shared components):
    /// a selection's lanes shift them and slice them into planes.
    pub mask_bits: Vec<Rep<u128>>,
    /// Ring sharings (not authenticated) of `c_s` for each of [`Order::carries`], then
    /// `c_M`, then the mask's top bit `r_{M−1}`, then the daBits: kind-major.
    pub ring: Vec<Vec<Rep<u128>>>,
    /// The daBits' boolean planes.
    pub da: Vec<Plane>,
}

fn low(v: u128, m: u32) -> u128 {
    if m >= 128 {
        v
    } else {
        v & ((1u128 << m) - 1)
    }
}

fn bit(v: u128, j: u32) -> u64 {
    (v >> j & 1) as u64
}

/// Values of a group's elements as the planes of bits `0..w` (group-local words).
fn planes(v: &[u128], w: u32) -> Vec<Vec<u64>> {
    let lo: Vec<u64> = v.iter().map(|&x| x as u64).collect();
    let hi: Vec<u64> = v.iter().map(|&x| (x >> 64) as u64).collect();
    let mut out = slice(&lo, (w as usize).min(64));
    if w > 64 {
        out.extend(slice(&hi, w as usize - 64));
    }
    out
}

/// XOR-shared values (components `a`, `b`) as the shared planes of bits `0..w`.
pub(super) fn to_planes(a: &[u128], b: &[u128], w: u32) -> Vec<Plane> {
    let (pa, pb) = (planes(a, w), planes(b, w));
    pa.into_iter()
        .zip(pb)
        .map(|(x, y)| {
            x.into_iter()
                .zip(y)
                .map(|(a, b)| Rep {
                    a: Xor(a),
                    b: Xor(b),
                })
                .collect()
        })
        .collect()
}

fn cat(planes: &[Vec<u64>], range: std::ops::Range<usize>) -> Vec<u64> {
    planes[range].iter().flatten().copied().collect()
}

/// A signed integer in F_p (`Fp::from_i128`).
pub(super) fn fp(v: i128) -> Fp {
    Fp::from_i128(v)
}

/// What the three roles know of one group's material.
#[derive(Default)]
struct Group {
    /// `r_A`, carries' `A` parts (bit `j` = part of `c_j`), `a_A` per kind.
    ra: Vec<u128>,
    ca: Vec<u128>,
    aa: Vec<Vec<i128>>,
    /// `r_B`, carries' `B` parts, `a_B` per kind.
    rb: Vec<u128>,
    cb: Vec<u128>,
    ab: Vec<Vec<i128>>,
    /// The daBits' parts.
    ea: Vec<Vec<u64>>,
    eb: Vec<Vec<u64>>,
}

impl<W: Word> MalRep3<W> {
    fn draw_u128(&mut self, j: usize, n: usize, bits: u32) -> Option<Vec<u128>> {
        self.rep
            .draw::<u128>(j, n)
            .map(|v| v.into_iter().map(|x| low(x, bits)).collect())
    }

    fn draw_bits(&mut self, j: usize, n: usize) -> Option<Vec<u64>> {
        self.rep
            .draw::<Xor>(j, n)
            .map(|v| v.into_iter().map(|x| x.0 & 1).collect())
    }

    /// Deal and receive the material of `o` (1 round) and record its relations.
    pub(super) fn deal(&mut self, o: &Order) -> R<Dealt> {
        self.check_if_full()?;
        let (me, n, m) = (self.rep.me, o.n, o.m);
        let kinds = o.carries.len() + 2 + o.dabits;
        let mut groups: Vec<Group> = (0..3).map(|_| Group::default()).collect();
        let mut to_prev = Vec::new();
        // Draws, group by group in the same order at every party: each key's two
        // holders draw the same values.
        for (g, grp) in groups.iter_mut().enumerate() {
            let ng = group(n, g).len();
            let (ka, kb) = (g + 1, g);
            let ra = self.draw_u128(ka, ng, m);
            let ca = self.draw_u128(ka, ng, m + 1);
            let aa: Option<Vec<Vec<i128>>> = (0..kinds)
                .map(|_| self.draw_u128(ka, ng, SPREAD))
                .map(|v| v.map(|v| v.into_iter().map(|x| x as i128).collect()))
                .collect();
            let ea: Option<Vec<Vec<u64>>> = (0..o.dabits).map(|_| self.draw_bits(ka, ng)).collect();
            let rb = self.draw_u128(kb, ng, m);
            let eb: Option<Vec<Vec<u64>>> = (0..o.dabits).map(|_| self.draw_bits(kb, ng)).collect();
            // c_0 = 0: `A`'s part of it is 0 too.
            grp.ca = ca.unwrap_or_default().into_iter().map(|c| c & !1).collect();
            grp.ra = ra.unwrap_or_default();
            grp.aa = aa.unwrap_or_default();
            grp.ea = ea.unwrap_or_default();
            grp.rb = rb.unwrap_or_default();
            grp.eb = eb.unwrap_or_default();
            if g == me {
                // The dealer: carries, `B`'s parts, the dealt bits' `B` words.
                let mut msg = Vec::new();
                let mut cb = Vec::with_capacity(ng);
                for i in 0..ng {
                    let (a, b) = (grp.ra[i], grp.rb[i]);
                    let mut c = 0u128;
                    for j in 0..m {
                        let (x, y, cj) = (bit(a, j), bit(b, j), bit(c, j));
                        let next = (x & y) | (cj & (x ^ y));
                        c |= u128::from(next) << (j + 1);
                    }
                    cb.push(c ^ grp.ca[i]);
                }
                grp.cb = cb;
                for w in planes(&grp.cb, m + 1).iter() {
                    for x in w {
                        msg.extend_from_slice(&x.to_le_bytes());
                    }
                }
                let xs = self.dealt_values(o, grp);
                grp.ab = (0..kinds)
                    .map(|k| (0..ng).map(|i| xs[k][i] - grp.aa[k][i]).collect())
                    .collect();
                if ng > 0 && self.cheat.fires(cheat::Kind::Material) {
                    grp.ab[0][0] += 1;
                }
                for k in 0..kinds {
                    for &v in &grp.ab[k] {
                        msg.extend_from_slice(&v.to_le_bytes());
                    }
                }
                to_prev = msg;
            }
        }
        // `B` of group `me + 1` (dealer `next`) receives.
        let gb = (me + 1) % 3;
        let ngb = group(n, gb).len();
        let due = (m as usize + 1) * words(ngb) * 8 + kinds * ngb * 16;
        let (_, got) = self.swap(to_prev, Vec::new(), 0, due)?;
        {
            let grp = &mut groups[gb];
            let garbage = |what: String| {
                ProtocolError::Net(NetError::Garbage {
                    party: (me + 1) % 3,
                    what,
                })
            };
            if got.len() != due {
                return Err(garbage(format!(
                    "dealt material of {} bytes, not {due}",
                    got.len()
                )));
            }
            let nw = words(ngb);
            let word =
                |i: usize| u64::from_le_bytes(got[8 * i..8 * i + 8].try_into().unwrap_or_default());
            let mut cb = vec![0u128; ngb];
            for j in 0..=m as usize {
                for (i, c) in cb.iter_mut().enumerate() {
                    *c |= u128::from(word(j * nw + i / 64) >> (i % 64) & 1) << j;
                }
            }
            grp.cb = cb;
            let base = (m as usize + 1) * nw * 8;
            let limit = (1i128 << SPREAD) + 2;
            grp.ab = (0..kinds)
                .map(|k| {
                    (0..ngb)
                        .map(|i| {
                            let at = base + 16 * (k * ngb + i);
                            i128::from_le_bytes(got[at..at + 16].try_into().unwrap_or_default())
                        })
                        .collect()
                })
                .collect();
            if !self.twin && grp.ab.iter().flatten().any(|v| v.abs() >= limit) {
                return Err(ProtocolError::Cheat {
                    check: "dealt material check",
                    what: format!("party {} dealt a ring part out of range", (me + 1) % 3),
                });
            }
        }
        self.record_dealt(o, &groups);
        Ok(self.assemble(o, &groups))
    }

    /// Each dealt bit's `A` part (`a_side`) or `B` part, kind-major.
    fn dealt_parts(&self, o: &Order, grp: &Group, a_side: bool) -> Vec<Vec<u64>> {
        let m = o.m;
        let (r, c, e) = if a_side {
            (&grp.ra, &grp.ca, &grp.ea)
        } else {
            (&grp.rb, &grp.cb, &grp.eb)
        };
        let ng = r.len();
        let mut out = Vec::new();
        for &s in &o.carries {
            out.push((0..ng).map(|i| bit(c[i], s)).collect());
        }
        out.push((0..ng).map(|i| bit(c[i], m)).collect());
        out.push(
            (0..ng)
                .map(|i| bit(r[i], m - 1) ^ bit(c[i], m - 1))
                .collect(),
        );
        out.extend(e.iter().cloned());
        out
    }

    /// The dealer's dealt bits, kind-major.
    fn dealt_values(&self, o: &Order, grp: &Group) -> Vec<Vec<i128>> {
        let a = self.dealt_parts(o, grp, true);
        let b = self.dealt_parts(o, grp, false);
        a.iter()
            .zip(&b)
            .map(|(x, y)| x.iter().zip(y).map(|(&u, &v)| i128::from(u ^ v)).collect())
            .collect()
    }

    /// The carry and dealt-bit relations of every group this party deals or checks.
    fn record_dealt(&mut self, o: &Order, groups: &[Group]) {
        let me = self.rep.me;
        let m = o.m as usize;
        for (g, grp) in groups.iter().enumerate() {
            let role = (me + 3 - g) % 3; // 0: D, 1: A, 2: B
            let ng = group(o.n, g).len();
            let nw = words(ng);
            // Bit planes 0..=M of each part, group-local.
            let pa = planes(&grp.ra, o.m);
            let pb = planes(&grp.rb, o.m);
            let pca = planes(&grp.ca, o.m + 1);
            let pcb = planes(&grp.cb, o.m + 1);
            let z_of = |c: &[Vec<u64>], x: &[Vec<u64>]| -> Vec<u64> {
                (0..m)
                    .flat_map(|j| (0..nw).map(move |w| (j, w)))
                    .map(|(j, w)| c[j + 1][w] ^ (c[j][w] & x[j][w]))
                    .collect()
            };
            // Carries (bits): u = B's, w = A's; V1 = B, V2 = A.
            let bits = match role {
                0 => &mut self.bits.own,
                1 => &mut self.bits.prev,
                _ => &mut self.bits.next,
            };
            let f = bits.begin(m * nw);
            if role != 1 {
                bits.u(f, cat(&pb, 0..m));
                bits.u(f, cat(&pb, 0..m));
                bits.u(f, cat(&pcb, 0..m));
            }
            if role != 2 {
                bits.w(f, cat(&pa, 0..m));
                bits.w(f, cat(&pca, 0..m));
                bits.w(f, cat(&pa, 0..m));
            }
            match role {
                1 => bits.z(z_of(&pca, &pa)),
                2 => bits.z(z_of(&pcb, &pb)),
                _ => {}
            }
            // Dealt bits (integers over F_p): u = −2·X_B, w = X_A, z = (a − X) per side.
            let ints = match role {
                0 => &mut self.ints.own,
                1 => &mut self.ints.prev,
                _ => &mut self.ints.next,
            };
            let kinds = grp.aa.len().max(grp.ab.len());
            let f = ints.begin(kinds * ng);
            if role != 1 {
                let xb = self.dealt_parts(o, grp, false);
                let u: Vec<Fp> = xb
                    .iter()
                    .flatten()
                    .map(|&x| fp(-2 * i128::from(x)))
                    .collect();
                let ints = match role {
                    0 => &mut self.ints.own,
                    _ => &mut self.ints.next,
                };
                ints.u(f, u);
                if role == 2 {
                    let z = grp
                        .ab
                        .iter()
                        .zip(&xb)
                        .flat_map(|(a, x)| a.iter().zip(x).map(|(&a, &x)| fp(a - i128::from(x))))
                        .collect();
                    ints.z(z);
                }
            }
            if role != 2 {
                let xa = self.dealt_parts(o, grp, true);
                let w: Vec<Fp> = xa.iter().flatten().map(|&x| fp(i128::from(x))).collect();
                let ints = match role {
                    0 => &mut self.ints.own,
                    _ => &mut self.ints.prev,
                };
                ints.w(f, w);
                if role == 1 {
                    let z = grp
                        .aa
                        .iter()
                        .zip(&xa)
                        .flat_map(|(a, x)| a.iter().zip(x).map(|(&a, &x)| fp(a - i128::from(x))))
                        .collect();
                    ints.z(z);
                }
            }
        }
    }

    /// This party's shares of the material, in element order.
    fn assemble(&self, o: &Order, groups: &[Group]) -> Dealt {
        let me = self.rep.me;
        let (n, m) = (o.n, o.m);
        let kinds = o.carries.len() + 2 + o.dabits;
        let mut r = vec![Rep::default(); n];
        let mut ring = vec![vec![Rep::default(); n]; kinds];
        // Component values of the mask's bits and the daBits, per slot.
        let (mut bit_a, mut bit_b) = (vec![0u128; n], vec![0u128; n]);
        let (mut da_a, mut da_b) = (vec![vec![0u64; n]; o.dabits], vec![vec![0u64; n]; o.dabits]);
        for (g, grp) in groups.iter().enumerate() {
            let range = group(n, g);
            // Component g + 1 = A's side, component g = B's side, component g + 2 = 0.
            let side = |comp: usize| -> Option<bool> {
                match (comp + 3 - g) % 3 {
                    1 => Some(true),
                    0 => Some(false),
                    _ => None,
                }
            };
            for (slot, comp) in [(0, me), (1, me + 1)] {
                let Some(a_side) = side(comp % 3) else {
                    continue;
                };
                let (rv, cv, av, ev) = if a_side {
                    (&grp.ra, &grp.ca, &grp.aa, &grp.ea)
                } else {
                    (&grp.rb, &grp.cb, &grp.ab, &grp.eb)
                };
                for (i, e) in range.clone().enumerate() {
                    let (Some(&rv), Some(&cv)) = (rv.get(i), cv.get(i)) else {
                        continue;
                    };
                    let rbits = low(rv ^ cv, m);
                    let set = |rep: &mut Rep<u128>, v: u128| {
                        if slot == 0 {
                            rep.a = v
                        } else {
                            rep.b = v
                        }
                    };
                    set(&mut r[e], rv);
                    if slot == 0 {
                        bit_a[e] = rbits;
                    } else {
                        bit_b[e] = rbits;
                    }
                    for (kind, values) in ring.iter_mut().zip(av) {
                        if let Some(&v) = values.get(i) {
                            set(&mut kind[e], v as u128);
                        }
                    }
                    for k in 0..o.dabits {
                        if let Some(v) = ev.get(k).and_then(|v| v.get(i)) {
                            if slot == 0 {
                                da_a[k][e] = *v;
                            } else {
                                da_b[k][e] = *v;
                            }
                        }
                    }
                }
            }
        }
        let mask_bits = bit_a
            .into_iter()
            .zip(bit_b)
            .map(|(a, b)| Rep { a, b })
            .collect();
        let da = (0..o.dabits)
            .map(|k| {
                let a: Vec<u128> = da_a[k].iter().map(|&x| u128::from(x)).collect();
                let b: Vec<u128> = da_b[k].iter().map(|&x| u128::from(x)).collect();
                to_planes(&a, &b, 1).pop().unwrap_or_default()
            })
            .collect();
        Dealt {
            r,
            mask_bits,
            ring,
            da,
        }
    }
}
