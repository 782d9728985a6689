//! Sign tests and selections with the third party as a dealer.
//!
//! The elements are split into three groups; in group `g`, party `g` is the *dealer* `D` and
//! parties `g + 1` and `g + 2` are the *evaluators* `A` and `B`, so every party carries a
//! third of the load in each role. For `[x ≥ 0]·f` (`x ∈ [lo, hi]`, `y = x − lo < 2^ℓ`,
//! `m = ℓ + 1 ≤ 64`):
//!
//! 1. *open* (1 round): `A` and `B` learn `c = y + r mod 2^m`, each sending the other one
//!    masked component; `r = r_A + r_B` with `r_A` drawn from the key of `D` and `A`, `r_B`
//!    from that of `D` and `B`, so only `D` knows `r`. In the same round `D` sends `B`
//!    everything that does not depend on data: for every 4-bit chunk of `r`, the table of
//!    `[a < r_j]` over all 16 `a`, masked entry by entry with pads `A` also draws (so a
//!    lookup at a public `a` leaves XOR shares with `A` and `B`); Beaver triples for the
//!    tree below; a random bit `e` as arithmetic shares; shares of `e·f`.
//! 2. *compare* (`⌈log2 ⌈ℓ/4⌉⌉` rounds): with `a = c + lo mod 2^m`, `[y < −lo]` is
//!    `a_ℓ ⊕ r_ℓ ⊕ [a mod 2^ℓ < r mod 2^ℓ]`. Each chunk gives `(lt, eq)` from two table
//!    entries (`eq(a) = [a−1 < r_j] ⊕ [a < r_j]`), and a tree of Beaver ANDs between `A`
//!    and `B` combines them, most significant first.
//! 3. *select* (1 round): `A` and `B` open `g ⊕ e` and hold additive shares of
//!    `g·f = (g ⊕ e)·f + (1 − 2(g ⊕ e))·e·f`.
//! 4. *reshare* (1 round): both send `D` a masked part, which makes replicated shares again.
//!
//! Only `D` knows `r`, `e` and the triples; `A` and `B` see `c`, `g ⊕ e` and openings masked
//! by the other evaluator's triple parts; `D` receives two parts masked with randomness of
//! `A` and `B`. Every value a party sees is uniform and independent of the data.

use super::tree::{
    self, combine_tree, draw_triples, pack_b_products, receive_products, Level, Tree, Triples,
};
use super::{Rep, Rep3};
pub(super) use crate::bitvec::{bit_bytes, concat, get, pack, part, set, words, xor};
use crate::bitvec::{clear_tail, unpack};
use crate::word::Word;
use crate::{Favor, PartyId, ProtocolError};
use std::ops::Range;

type R<T> = Result<T, ProtocolError>;

/// Bits of `r` per table.
pub(super) const CHUNK: u32 = 4;

/// The widest masked value of a dealer-assisted sign test.
pub(super) const MAX_BITS: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Dealer,
    A,
    B,
}

/// The role of party `me` in group `g`.
pub(crate) fn role(me: PartyId, g: usize) -> Role {
    match (me + 3 - g % 3) % 3 {
        0 => Role::Dealer,
        1 => Role::A,
        _ => Role::B,
    }
}

/// The elements of group `g` out of `n`, in thirds (`mal-rep3`'s groups; `rep3` splits by
/// its instruction's [`crate::wires::Deal`]).
pub(crate) fn group(n: usize, g: usize) -> Range<usize> {
    g * n / 3..(g + 1) * n / 3
}

/// Where one party sits in group `g`: its role, the components of the keys it shares
/// (`D`–`A`, `D`–`B`, `A`–`B`), the peers by role, and the group's elements.
#[derive(Clone, Debug)]
pub(super) struct Seat {
    pub role: Role,
    pub da: usize,
    pub db: usize,
    pub ab: usize,
    pub d: PartyId,
    pub pa: PartyId,
    pub pb: PartyId,
    pub range: Range<usize>,
}

impl Seat {
    /// Party `me`'s seat in group `g`, whose elements are `range`.
    pub fn new(me: PartyId, g: usize, range: Range<usize>) -> Seat {
        Seat {
            role: role(me, g),
            da: (g + 1) % 3,
            db: g % 3,
            ab: (g + 2) % 3,
            d: g % 3,
            pa: (g + 1) % 3,
            pb: (g + 2) % 3,
            range,
        }
    }

    pub fn n(&self) -> usize {
        self.range.len()
    }

    /// The other evaluator (for `A` and `B`).
    pub fn other(&self) -> PartyId {
        if self.role == Role::A {
            self.pb
        } else {
            self.pa
        }
    }
}

/// The last round of a group-wise computation: `A` and `B` hold additive parts `z[g]` of
/// `k` results per element of group `g`; both send `D` a part masked with draws of the key
/// `A`–`B`. `D` then holds components `g` (from `B`) and `g + 1` (from `A`), `A` holds
/// `g + 1` (what it sent) and `g + 2` (its draw), `B` holds `g + 2` and `g`. Returns this
/// party's components `(a, b)` per group.
///
/// Where the instruction's result is left pending ([`crate::wires::Wires::pending_out`]:
/// every reader opens it from `A`'s and `B`'s components) nothing is sent: `A` keeps its
/// part as component `g + 1`, `B` as component `g`, the component `g + 2` they share is
/// zero, and the dealer's two are stale (zero).
pub(super) fn reshare_parts<W: Word>(
    p: &mut Rep3<W>,
    seats: &[Seat],
    z: &[Vec<W>],
    k: usize,
) -> R<Vec<(Vec<W>, Vec<W>)>> {
    if p.wire.pending_out {
        return Ok(seats
            .iter()
            .zip(z)
            .map(|(s, z)| {
                let zeros = vec![W::ZERO; k * s.n()];
                match s.role {
                    Role::A => (z.clone(), zeros),
                    Role::B => (zeros, z.clone()),
                    Role::Dealer => (zeros.clone(), zeros),
                }
            })
            .collect());
    }
    let mut post = Post::new();
    let mut kept: Vec<(Vec<W>, Vec<W>)> = vec![(Vec::new(), Vec::new()); seats.len()];
    for (gi, s) in seats.iter().enumerate() {
        let len = k * s.n();
        if len == 0 {
            continue;
        }
        if s.role == Role::Dealer {
            post.expect[s.pa] += len * W::BYTES;
            post.expect[s.pb] += len * W::BYTES;
            continue;
        }
        let tt = p.draw_words(s.ab, len);
        let t2 = p.draw_words(s.ab, len);
        let send: Vec<W> = if s.role == Role::A {
            z[gi]
                .iter()
                .zip(&tt)
                .zip(&t2)
                .map(|((z, t), u)| z.sub(*t).sub(*u))
                .collect()
        } else {
            z[gi].iter().zip(&t2).map(|(z, u)| z.add(*u)).collect()
        };
        let mut msg = Vec::new();
        put_words(&send, &mut msg);
        post.send(s.d, msg);
        kept[gi] = (send, tt);
    }
    let mut inbox = p.post(post)?;
    Ok(seats
        .iter()
        .zip(kept)
        .map(|(s, (sent, drawn))| {
            let len = k * s.n();
            match s.role {
                _ if len == 0 => (Vec::new(), Vec::new()),
                Role::Dealer => (inbox.words(s.pb, len), inbox.words(s.pa, len)),
                Role::A => (sent, drawn),
                Role::B => (drawn, sent),
            }
        })
        .collect())
}

/// Public parameters of a sign test of values in `[lo, hi]` (with `lo < 0 ≤ hi`).
#[derive(Clone, Debug)]
pub(super) struct SignTest {
    /// `y = x − lo < 2^bits`.
    pub bits: u32,
    /// Widths of the chunks of `r mod 2^bits`, least significant first.
    pub chunks: Vec<u32>,
    /// How its tree ends ([`tree::levels`]).
    pub favor: Favor,
}

impl SignTest {
    /// `None` when the test needs no communication or is too wide for this method or for
    /// a ring of `ring_bits` (the opening `c mod 2^(ℓ+1)` is taken from ring shares).
    pub fn new(lo: i64, hi: i64, ring_bits: u32, favor: Favor) -> Option<SignTest> {
        if lo >= 0 || hi < 0 {
            return None;
        }
        let span = (hi as i128 - lo as i128) as u128;
        let bits = crate::bitvec::bits_of(span).max(1);
        if bits + 1 > MAX_BITS.min(ring_bits) {
            return None;
        }
        let chunks = (0..bits.div_ceil(CHUNK))
            .map(|j| CHUNK.min(bits - j * CHUNK))
            .collect();
        Some(SignTest {
            bits,
            chunks,
            favor,
        })
    }

    /// Table bits per element.
    pub fn table_bits(&self) -> usize {
        self.chunks.iter().map(|&w| 1usize << w).sum()
    }

    /// Bytes of one masked opening `c mod 2^m`.
    pub fn open_bytes(&self) -> usize {
        (self.bits as usize + 1).div_ceil(8)
    }

    /// The rounds of its comparison tree.
    pub fn levels(&self) -> Vec<Level> {
        tree::levels(self.chunks.len(), self.favor)
    }
}

// ---- one round of messages between the groups' roles ----------------------------------

/// Messages of one round, appended group by group in a fixed order.
pub(super) struct Post {
    pub out: [Vec<u8>; 3],
    pub expect: [usize; 3],
}

impl Post {
    pub fn new() -> Post {
        Post {
            out: Default::default(),
            expect: [0; 3],
        }
    }

    /// Appends `msg` to what goes to `to` (moved, not copied, where it is the first).
    pub fn send(&mut self, to: PartyId, msg: Vec<u8>) {
        let out = &mut self.out[to];
        if out.is_empty() {
            *out = msg;
        } else {
            out.extend(msg);
        }
    }
}

/// What each peer sent in a round, read in the order it was appended.
pub(super) struct Inbox {
    msgs: [Vec<u8>; 3],
    at: [usize; 3],
}

impl Inbox {
    pub fn take(&mut self, from: PartyId, n: usize) -> &[u8] {
        let s = self.at[from];
        self.at[from] += n;
        &self.msgs[from][s..s + n]
    }
    /// Two [`Inbox::take`]s whose bytes are read side by side (`from` may be the same).
    pub fn take_two(&mut self, a: (PartyId, usize), b: (PartyId, usize)) -> (&[u8], &[u8]) {
        let sa = self.at[a.0];
        self.at[a.0] += a.1;
        let sb = self.at[b.0];
        self.at[b.0] += b.1;
        (&self.msgs[a.0][sa..sa + a.1], &self.msgs[b.0][sb..sb + b.1])
    }
    pub fn bits(&mut self, from: PartyId, n: usize) -> Vec<u64> {
        unpack(self.take(from, bit_bytes(n)), n)
    }
    pub fn words<W: Word>(&mut self, from: PartyId, n: usize) -> Vec<W> {
        self.take(from, n * W::BYTES)
            .chunks_exact(W::BYTES)
            .map(W::read)
            .collect()
    }
}

pub(super) fn put_words<W: Word>(v: &[W], out: &mut Vec<u8>) {
    out.reserve(v.len() * W::BYTES);
    for w in v {
        w.write(out);
    }
}

impl<W: Word> Rep3<W> {
    /// One round: every party calls the transport (empty where it has no part).
    pub(super) fn post(&mut self, post: Post) -> R<Inbox> {
        let out: Vec<(PartyId, Vec<u8>)> = post
            .out
            .into_iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .collect();
        let expect: Vec<(PartyId, usize)> = post
            .expect
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(p, &n)| (p, n))
            .collect();
        let got = self.net.exchange_sized(out, &expect)?;
        let mut msgs: [Vec<u8>; 3] = Default::default();
        for (p, m) in got {
            msgs[p] = m;
        }
        Ok(Inbox { msgs, at: [0; 3] })
    }

    /// `n` random bits from the key of component `j`.
    pub(super) fn draw_bits(&mut self, j: usize, n: usize) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .draw::<super::Xor>(j, words(n))
            .unwrap_or_default()
            .into_iter()
            .map(|x| x.0)
            .collect();
        clear_tail(&mut v, n);
        v
    }

    pub(super) fn draw_words(&mut self, j: usize, n: usize) -> Vec<W> {
        self.draw::<W>(j, n).unwrap_or_default()
    }
}

/// What one party holds of one group while the test runs.
struct Group<W> {
    role: Role,
    /// Component indices of the keys `D`–`A`, `D`–`B` and `A`–`B`.
    da: usize,
    db: usize,
    range: Range<usize>,
    /// Peers by role.
    d: PartyId,
    pa: PartyId,
    pb: PartyId,
    /// `A` and `B`: the opened `c`.
    c: Vec<u64>,
    /// `r_A` or `r_B` (evaluators), `r` (dealer).
    mask: Vec<u64>,
    /// Table entries: `A` holds the pads, `B` the masked tables.
    tables: Vec<u64>,
    rbit: Vec<u64>,
    triples: Vec<Triples>,
    e_bits: Vec<u64>,
    e_arith: Vec<W>,
    /// Shares of `e·f` (per factor, then element), before the `d_{g+2}` term.
    ef: Vec<W>,
}

impl<W: Word> Group<W> {
    fn n(&self) -> usize {
        self.range.len()
    }
}

/// `[t_i ≥ 0]·f` for every factor `f` of `factors` (`k = factors.len() / t.len()` factors
/// per test, factor `j` of test `i` at `j·n + i`), as replicated shares, for `t ∈ [lo, hi]`.
/// Rounds: `3 + ⌈log2 ⌈ℓ/4⌉⌉`.
pub(super) fn select<W: Word>(
    p: &mut Rep3<W>,
    test: &SignTest,
    t: &[Rep<W>],
    lo: i64,
    factors: &[Rep<W>],
) -> R<Vec<Rep<W>>> {
    let n = t.len();
    let k = factors.len().checked_div(n).unwrap_or(0);
    let me = p.me;
    let bits = test.bits;
    let m = bits + 1;
    let mmask = if m >= 64 { u64::MAX } else { (1u64 << m) - 1 };
    let sbits = test.table_bits();
    let levels = test.levels();
    let ob = test.open_bytes();

    // y = t − lo ≥ 0, reduced mod 2^m.
    let low = |w: W| (w.to_u128() as u64) & mmask;
    let neg_lo = W::from_i64(lo).neg();
    let mut groups: Vec<Group<W>> = (0..3)
        .map(|g| Group {
            role: role(me, g),
            da: (g + 1) % 3,
            db: g % 3,
            range: p.group(n, g),
            d: g % 3,
            pa: (g + 1) % 3,
            pb: (g + 2) % 3,
            c: Vec::new(),
            mask: Vec::new(),
            tables: Vec::new(),
            rbit: Vec::new(),
            triples: Vec::new(),
            e_bits: Vec::new(),
            e_arith: Vec::new(),
            ef: Vec::new(),
        })
        .collect();

    // Round 1: openings, and the dealer's material.
    let mut post = Post::new();
    for gr in groups.iter_mut() {
        let nn = gr.n();
        if nn == 0 {
            continue;
        }
        let r = gr.range.clone();
        // Component `lo` of y is added by whoever holds component 0 of the constant; the
        // ring constant −lo is public, so fold it into the component `A` sends.
        match gr.role {
            Role::A => {
                let ra: Vec<u64> = p.draw_words(gr.da, nn).iter().map(|&w| low(w)).collect();
                // A holds components g+1 (a) and g+2 (b); it sends component g+1 + r_A.
                let mut msg = Vec::with_capacity(nn * ob);
                for (i, e) in r.clone().enumerate() {
                    let v = low(t[e].a.add(neg_lo)).wrapping_add(ra[i]) & mmask;
                    msg.extend_from_slice(&v.to_le_bytes()[..ob]);
                }
                post.send(gr.pb, msg);
                post.expect[gr.pb] += nn * ob;
                gr.mask = ra;
                draw_evaluator(p, gr, sbits, &levels, k);
            }
            Role::B => {
                let rb: Vec<u64> = p.draw_words(gr.db, nn).iter().map(|&w| low(w)).collect();
                let mut msg = Vec::with_capacity(nn * ob);
                for (i, e) in r.clone().enumerate() {
                    let v = low(t[e].b).wrapping_add(rb[i]) & mmask;
                    msg.extend_from_slice(&v.to_le_bytes()[..ob]);
                }
                post.send(gr.pa, msg);
                post.expect[gr.pa] += nn * ob;
                // The dealer's material.
                post.expect[gr.d] += dealer_bytes(test, nn, k, W::BYTES);
                gr.mask = rb;
                draw_evaluator(p, gr, sbits, &levels, k);
            }
            Role::Dealer => {
                let ra: Vec<u64> = p.draw_words(gr.da, nn).iter().map(|&w| low(w)).collect();
                let rb: Vec<u64> = p.draw_words(gr.db, nn).iter().map(|&w| low(w)).collect();
                let rr: Vec<u64> = ra
                    .iter()
                    .zip(&rb)
                    .map(|(x, y)| x.wrapping_add(*y) & mmask)
                    .collect();
                let msg = dealer_material(p, gr, test, &rr, factors, n, k, &levels)?;
                post.send(gr.pb, msg);
            }
        }
    }
    let mut inbox = p.post(post)?;

    // Leaves: (G, P) = (lt, eq) per chunk, as XOR shares of A and B.
    let mut units: Vec<Vec<(Vec<u64>, Vec<u64>)>> = vec![Vec::new(); 3];
    let mut top: Vec<Vec<u64>> = vec![Vec::new(); 3];
    for (gi, gr) in groups.iter_mut().enumerate() {
        let nn = gr.n();
        if nn == 0 || gr.role == Role::Dealer {
            continue;
        }
        let other = if gr.role == Role::A { gr.pb } else { gr.pa };
        let got = inbox.take(other, nn * ob).to_vec();
        let mine: Vec<u64> = match gr.role {
            Role::A => gr
                .range
                .clone()
                .map(|e| low(t[e].a.add(neg_lo)).wrapping_add(low(t[e].b)))
                .collect(),
            _ => gr
                .range
                .clone()
                .map(|e| low(t[e].a).wrapping_add(low(t[e].b)))
                .collect(),
        };
        gr.c = (0..nn)
            .map(|i| {
                let mut b = [0u8; 8];
                b[..ob].copy_from_slice(&got[i * ob..(i + 1) * ob]);
                let theirs = u64::from_le_bytes(b);
                mine[i].wrapping_add(gr.mask[i]).wrapping_add(theirs) & mmask
            })
            .collect();
        if gr.role == Role::B {
            gr.tables = inbox.bits(gr.d, nn * sbits);
            gr.rbit = inbox.bits(gr.d, nn);
            receive_products(&mut gr.triples, &levels, nn, &mut inbox, gr.d)?;
            gr.e_arith = inbox.words(gr.d, nn);
            gr.ef = inbox.words(gr.d, k * nn);
        }
        // a = c − T mod 2^m with T = −lo, i.e. c + lo; y ≥ T ⟺ x ≥ 0.
        let lo_m = (lo as u64) & mmask;
        let a: Vec<u64> = gr.c.iter().map(|&c| c.wrapping_add(lo_m) & mmask).collect();
        let is_b = gr.role == Role::B;
        let (mut off, mut shift) = (0usize, 0u32);
        for &w in &test.chunks {
            let mut gv = vec![0u64; words(nn)];
            let mut pv = vec![0u64; words(nn)];
            // A twin computes no values (see `Word::DATA`).
            if W::DATA {
                for (i, &ai) in a.iter().enumerate() {
                    let x = (ai >> shift) & ((1u64 << w) - 1);
                    // The chunk's table shifted up one, entry −1 below it (see
                    // `requant.rs`): `below` and `lt` side by side.
                    let t = crate::bitvec::bits_at(&gr.tables, i * sbits + off, 1 << w) << 1
                        | u64::from(is_b);
                    let (below, lt) = ((t >> x) & 1, (t >> (x + 1)) & 1);
                    set(&mut gv, i, lt);
                    set(&mut pv, i, below ^ lt);
                }
            }
            units[gi].push((gv, pv));
            off += 1usize << w;
            shift += w;
        }
        // [x ≥ 0] = 1 ⊕ a_ℓ ⊕ r_ℓ ⊕ lt: A adds the public part.
        let mut tv = gr.rbit.clone();
        if gr.role == Role::A {
            for (i, &ai) in a.iter().enumerate() {
                let pubbit = 1 ^ ((ai >> bits) & 1);
                tv[i / 64] ^= pubbit << (i % 64);
            }
        }
        top[gi] = tv;
    }

    // The tree, one Beaver round per level.
    let mut trees: Vec<Option<Tree>> = groups
        .iter()
        .zip(units)
        .map(|(gr, u)| {
            (gr.n() > 0 && gr.role != Role::Dealer).then(|| Tree {
                is_a: gr.role == Role::A,
                other: if gr.role == Role::A { gr.pb } else { gr.pa },
                lanes: gr.n(),
                triples: &gr.triples,
                units: u,
            })
        })
        .collect();
    combine_tree(p, &mut trees, &levels)?;
    let lts: Vec<Vec<u64>> = trees
        .into_iter()
        .map(|t| t.map(|mut t| t.units.swap_remove(0).0).unwrap_or_default())
        .collect();

    // Select: open g ⊕ e, then additive shares of g·f.
    let mut post = Post::new();
    let mut gbits: Vec<Vec<u64>> = vec![Vec::new(); 3];
    for (gi, gr) in groups.iter().enumerate() {
        let nn = gr.n();
        if nn == 0 || gr.role == Role::Dealer {
            continue;
        }
        let lt = &lts[gi];
        let g = xor(&xor(&top[gi], lt), &gr.e_bits);
        let other = if gr.role == Role::A { gr.pb } else { gr.pa };
        let mut msg = Vec::new();
        pack(&g, nn, &mut msg);
        post.expect[other] += msg.len();
        post.send(other, msg);
        gbits[gi] = g;
    }
    let mut inbox = p.post(post)?;
    // Additive parts of g·f, then the reshare through `D`.
    let mut zs: Vec<Vec<W>> = vec![Vec::new(); 3];
    for (gi, gr) in groups.iter().enumerate() {
        let nn = gr.n();
        if nn == 0 || gr.role == Role::Dealer {
            continue;
        }
        let other = if gr.role == Role::A { gr.pb } else { gr.pa };
        let opened = xor(&gbits[gi], &inbox.bits(other, nn));
        let mut z = Vec::with_capacity(k * nn);
        for j in 0..k {
            for (i, e) in gr.range.clone().enumerate() {
                let f = factors[j * n + e];
                let gp = get(&opened, i);
                let one_minus = if gp == 1 { W::ONE.neg() } else { W::ONE };
                // d_{g+2} is A's component b and B's component a.
                let (mine, d2) = if gr.role == Role::A {
                    (f.a.add(f.b), f.b)
                } else {
                    (f.b, f.a)
                };
                let ef = gr.e_arith[i].mul(d2).add(gr.ef[j * nn + i]);
                let part = if gp == 1 { mine } else { W::ZERO };
                z.push(part.add(one_minus.mul(ef)));
            }
        }
        zs[gi] = z;
    }
    let seats: Vec<Seat> = (0..3).map(|g| Seat::new(me, g, p.group(n, g))).collect();
    let parts = reshare_parts(p, &seats, &zs, k)?;
    let mut out = vec![Rep::<W>::default(); k * n];
    for (gr, (a, b)) in groups.iter().zip(parts) {
        let nn = gr.n();
        for j in 0..k {
            for (i, e) in gr.range.clone().enumerate() {
                out[j * n + e] = Rep {
                    a: a[j * nn + i],
                    b: b[j * nn + i],
                };
            }
        }
    }
    Ok(out)
}

/// Bytes `D` sends `B` in round 1 for a group of `n` elements, `k` factors and ring words
/// of `word` bytes.
pub(super) fn dealer_bytes(test: &SignTest, n: usize, k: usize, word: usize) -> usize {
    bit_bytes(n * test.table_bits())
        + bit_bytes(n)
        + tree::dealer_bytes(&test.levels(), n)
        + (1 + k) * n * word
}

/// An evaluator's draws, in the dealer's order (see [`dealer_material`]).
fn draw_evaluator<W: Word>(
    p: &mut Rep3<W>,
    gr: &mut Group<W>,
    sbits: usize,
    levels: &[Level],
    k: usize,
) {
    let nn = gr.n();
    if gr.role == Role::A {
        gr.tables = p.draw_bits(gr.da, nn * sbits);
        gr.rbit = p.draw_bits(gr.da, nn);
        gr.triples = draw_triples(p, gr.da, levels, nn, true);
        gr.e_bits = p.draw_bits(gr.da, nn);
        gr.e_arith = p.draw_words(gr.da, nn);
        gr.ef = p.draw_words(gr.da, k * nn);
    } else {
        gr.triples = draw_triples(p, gr.db, levels, nn, false);
        gr.e_bits = p.draw_bits(gr.db, nn);
    }
}

/// The dealer's draws (A's parts from key `D`–`A`, B's from `D`–`B`, in the evaluators'
/// order) and its message to `B`.
#[allow(clippy::too_many_arguments)]
fn dealer_material<W: Word>(
    p: &mut Rep3<W>,
    gr: &Group<W>,
    test: &SignTest,
    r: &[u64],
    factors: &[Rep<W>],
    n: usize,
    k: usize,
    levels: &[Level],
) -> R<Vec<u8>> {
    let nn = gr.n();
    let sbits = test.table_bits();
    let bits = test.bits;
    // Tables: entry x of chunk j is [x < r_j], masked with A's pads.
    let pads = p.draw_bits(gr.da, nn * sbits);
    let mut tables = vec![0u64; words(nn * sbits)];
    // A twin computes no values (see `Word::DATA`).
    if W::DATA {
        for (i, &ri) in r.iter().enumerate() {
            let mut off = 0usize;
            let mut shift = 0u32;
            for &w in &test.chunks {
                let rj = (ri >> shift) & ((1u64 << w) - 1);
                // The table's entries `[x < r_j]` are its low `r_j` bits.
                crate::bitvec::or_bits(
                    &mut tables,
                    i * sbits + off,
                    crate::bitvec::low_mask(rj as u32),
                    1 << w,
                );
                off += 1usize << w;
                shift += w;
            }
        }
    }
    let tables = xor(&tables, &pads);
    let rpad = p.draw_bits(gr.da, nn);
    let mut rb = vec![0u64; words(nn)];
    for (i, &ri) in r.iter().enumerate() {
        set(&mut rb, i, (ri >> bits) & 1);
    }
    let rbit = xor(&rb, &rpad);
    let mut msg = Vec::new();
    pack(&tables, nn * sbits, &mut msg);
    pack(&rbit, nn, &mut msg);
    // Triples: A's parts, then B's a and b; B gets c = a·b ⊕ c_A.
    let a_parts = draw_triples(p, gr.da, levels, nn, true);
    let e_a = p.draw_bits(gr.da, nn);
    let e_arith_a: Vec<W> = p.draw_words(gr.da, nn);
    let rho: Vec<W> = p.draw_words(gr.da, k * nn);
    let b_parts = draw_triples(p, gr.db, levels, nn, false);
    pack_b_products(&a_parts, &b_parts, levels, nn, &mut msg)?;
    let e_b = p.draw_bits(gr.db, nn);
    let e = xor(&e_a, &e_b);
    let e_arith_b: Vec<W> = (0..nn)
        .map(|i| W::from_u128(u128::from(get(&e, i))).sub(e_arith_a[i]))
        .collect();
    put_words(&e_arith_b, &mut msg);
    // e·(d_g + d_{g+1}) − ρ: the dealer's components of each factor.
    let mut ef = Vec::with_capacity(k * nn);
    for j in 0..k {
        for (i, e_idx) in gr.range.clone().enumerate() {
            let f = factors[j * n + e_idx];
            let ei = W::from_u128(u128::from(get(&e, i)));
            ef.push(ei.mul(f.a.add(f.b)).sub(rho[j * nn + i]));
        }
    }
    put_words(&ef, &mut msg);
    Ok(msg)
}
