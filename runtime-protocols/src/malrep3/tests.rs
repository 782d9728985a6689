//! `mal-rep3` against `clear`, and its checks against cheating parties, three parties over
//! loopback TCP.

use super::*;
use crate::net::Mesh;
use crate::planes::Plane;
use crate::testutil::values;
use crate::{Clear, Core, Protocol};

/// Runs `f` on `mal-rep3` in three parties; returns each party's result.
fn run3<W: Word, T: Send>(f: impl Fn(&mut MalRep3<W>) -> T + Sync) -> Vec<T> {
    crate::testutil::on_mesh(3, "mal-rep3", |_, mesh: Mesh| {
        f(&mut MalRep3::<W>::setup(Box::new(mesh)).unwrap())
    })
}

fn dims() -> MatDims {
    MatDims {
        batch: 2,
        m: 5,
        k: 5,
        n: 1,
        a_batched: true,
        b_batched: true,
    }
}

/// Products, a matrix product and linear steps of party 0's and party 2's inputs.
fn script<P: Protocol>(p: &mut P, a: &[i64], b: &[i64]) -> R<Option<Vec<i64>>> {
    // `clear` is one party that owns every input.
    let (me, all) = (p.party(), p.parties() == 1);
    let sa = p.input(0, (all || me == 0).then_some(a), a.len())?;
    let sb = p.input(
        if all { 0 } else { 2 },
        (all || me == 2).then_some(b),
        b.len(),
    )?;
    let prod = p.mul(&sa, &sb)?;
    let mm = p.matmul(&sa, &sb.slice(0..10), dims())?;
    let sq = p.mul(&prod, &sb)?;
    let lin = p.add_public(&p.mul_public(&p.sub(&sa, &sb), b), a);
    let out = P::Shares::concat(&[&prod, &mm, &sq, &lin, &p.public(&[5, -7])]);
    p.reveal(&out, if all { 0 } else { 1 })
}

fn expected(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut c = Clear;
    script(&mut c, a, b).unwrap().unwrap()
}

#[test]
fn arithmetic_matches_clear_in_both_rings() {
    let a = values(50, -1000, 1000, 1);
    let b = values(50, -1000, 1000, 2);
    let want = expected(&a, &b);
    let out = run3::<u64, _>(|p| script(p, &a, &b).unwrap());
    assert!(out[0].is_none() && out[2].is_none());
    assert_eq!(out[1].as_ref().unwrap(), &want);
    let out = run3::<u32, _>(|p| script(p, &a, &b).unwrap());
    let want32: Vec<i64> = want.iter().map(|&v| v as i32 as i64).collect();
    assert_eq!(out[1].as_ref().unwrap(), &want32);
}

#[test]
fn a_product_costs_two_words_and_the_reveal_a_check() {
    let a = values(20, -5, 5, 3);
    let out = run3::<u64, _>(|p| {
        let x = p.input(0, (p.party() == 0).then_some(&a[..]), 20).unwrap();
        let before = p.stats();
        let y = p.mul(&x, &x).unwrap();
        let mid = p.stats();
        p.reveal(&y, 2).unwrap();
        let after = p.stats();
        (mid.since(before), after.since(mid))
    });
    for (i, (mul, reveal)) in out.iter().enumerate() {
        assert_eq!(mul.rounds, 1, "party {i}");
        // Two 16-byte words per element, one frame header.
        assert_eq!(mul.bytes_sent, 2 * 16 * 20 + 4, "party {i}");
        // Seed opening, α·u, opening of v, the output's opening, the receiver's word.
        assert_eq!(reveal.rounds, 5, "party {i}");
    }
}

#[cfg(feature = "fault-injection")]
mod cheating {
    use super::*;
    use crate::cheat::{Cheater, Kind};

    /// Runs the script with `cheater` arming party `bad`; returns every party's outcome.
    fn attacked(bad: PartyId, kind: Kind, skip: usize) -> Vec<R<Option<Vec<i64>>>> {
        let a = values(50, -100, 100, 4);
        let b = values(50, -100, 100, 5);
        crate::testutil::on_mesh(3, "mal-rep3", |me, mesh: Mesh| {
            let mut p = MalRep3::<u64>::setup(Box::new(mesh)).unwrap();
            if me == bad {
                p.cheat = Cheater::armed(kind, skip);
            }
            let r = script(&mut p, &a, &b);
            if let Err(e) = &r {
                p.abort(&e.to_string());
            }
            r
        })
    }

    fn assert_caught(out: &[R<Option<Vec<i64>>>], bad: PartyId, check: &str) {
        for (i, r) in out.iter().enumerate().filter(|&(i, _)| i != bad) {
            match r {
                Err(ProtocolError::Cheat { check: c, .. }) => {
                    assert_eq!(*c, check, "party {i}: {r:?}")
                }
                // Told by a party that caught the cheat.
                Err(ProtocolError::Peer { .. })
                | Err(ProtocolError::Net(crate::net::NetError::Aborted { .. })) => {}
                other => panic!("party {i} did not abort: {other:?}"),
            }
        }
        assert!(
            out.iter()
                .enumerate()
                .filter(|&(i, _)| i != bad)
                .any(|(_, r)| matches!(r, Err(ProtocolError::Cheat { .. }))),
            "no honest party named the check: {out:?}"
        );
    }

    /// `Core::check` is the malicious core's check: called through the trait after the
    /// products, before any opening, it passes when everyone is honest and fails at the
    /// honest parties when one altered a product share.
    #[test]
    fn the_core_check_catches_a_cheat_before_any_opening() {
        fn products<P: Core>(p: &mut P, a: &[i64], b: &[i64]) -> R<Option<Vec<i64>>> {
            let sa = p.input(0, (p.party() == 0).then_some(a), a.len())?;
            let sb = p.input(2, (p.party() == 2).then_some(b), b.len())?;
            p.mul(&sa, &sb)?;
            p.check()?;
            Ok(None)
        }
        let (a, b) = (values(50, -100, 100, 4), values(50, -100, 100, 5));
        for bad in [None, Some(0), Some(1), Some(2)] {
            let out = crate::testutil::on_mesh(3, "mal-rep3", |me, mesh: Mesh| {
                let mut p = MalRep3::<u64>::setup(Box::new(mesh)).unwrap();
                if Some(me) == bad {
                    p.cheat = Cheater::armed(Kind::Mul, 0);
                }
                let r = products(&mut p, &a, &b);
                if let Err(e) = &r {
                    p.abort(&e.to_string());
                }
                r
            });
            match bad {
                None => assert!(out.iter().all(|r| r.is_ok()), "{out:?}"),
                Some(bad) => assert_caught(&out, bad, "MAC check"),
            }
        }
    }

    #[test]
    fn an_altered_product_share_fails_the_mac_check() {
        for bad in 0..3 {
            for skip in 0..3 {
                assert_caught(&attacked(bad, Kind::Mul, skip), bad, "MAC check");
            }
        }
    }

    #[test]
    fn an_altered_mac_fails_the_mac_check() {
        for bad in 0..3 {
            assert_caught(&attacked(bad, Kind::Input, 0), bad, "MAC check");
        }
    }

    #[test]
    fn a_flipped_and_bit_fails_the_proof() {
        let (x, y) = (words(40, 3), words(40, 4));
        for bad in 0..3 {
            for skip in 0..2 {
                let out = crate::testutil::on_mesh(3, "mal-rep3", |me, mesh: Mesh| {
                    let mut p = MalRep3::<u64>::setup(Box::new(mesh)).unwrap();
                    if me == bad {
                        p.cheat = Cheater::armed(Kind::Compare, skip);
                    }
                    let r = and_script(&mut p, &x, &y).map(|_| None);
                    if let Err(e) = &r {
                        p.abort(&e.to_string());
                    }
                    r
                });
                assert_caught(&out, bad, "proof check");
            }
        }
    }

    #[test]
    fn altered_dealt_material_fails_the_proof() {
        use super::super::dealt::Order;
        for bad in 0..3 {
            let out = crate::testutil::on_mesh(3, "mal-rep3", |me, mesh: Mesh| {
                let mut p = MalRep3::<u64>::setup(Box::new(mesh)).unwrap();
                if me == bad {
                    p.cheat = Cheater::armed(Kind::Material, 0);
                }
                let o = Order {
                    n: 30,
                    m: 12,
                    carries: vec![4],
                    dabits: 1,
                };
                let r = p.deal(&o).and_then(|_| p.check()).map(|_| None);
                if let Err(e) = &r {
                    p.abort(&e.to_string());
                }
                r
            });
            assert_caught(&out, bad, "proof check");
        }
    }

    #[test]
    fn an_altered_opening_fails_on_receipt() {
        // Party 2 helps party 1 to the output (`to + 1`); party 0 vouches for it.
        assert_caught(&attacked(2, Kind::Open, 0), 2, "opening check");
        // The witness of the output's opening lies about its hash.
        assert_caught(&attacked(0, Kind::Open, 0), 0, "opening check");
        // A MAC share altered at any party (the first is an input's MAC).
        for bad in 0..3 {
            assert_caught(&attacked(bad, Kind::Mac, 0), bad, "MAC check");
        }
    }
}

/// Party 0's words AND party 2's words, checked and opened to party 1.
fn and_script(p: &mut MalRep3<u64>, x: &[u64], y: &[u64]) -> R<Option<Vec<u64>>> {
    use crate::rep3::Xor;
    let me = p.party();
    let wrap = |v: &[u64]| v.iter().map(|&w| Xor(w)).collect::<Vec<_>>();
    let (xw, yw) = (wrap(x), wrap(y));
    let sx = p
        .rep
        .share_from::<Xor>(0, (me == 0).then_some(&xw[..]), x.len())?;
    let sy = p
        .rep
        .share_from::<Xor>(2, (me == 2).then_some(&yw[..]), y.len())?;
    let z = p.and(&sx, &sy)?;
    let zz = p.and(&z, &sx)?;
    p.check()?;
    let out = p.open_to(crate::cheat::Kind::Open, &zz, 1)?;
    Ok(out.map(|v| v.into_iter().map(|w| w.0).collect()))
}

fn words(n: usize, seed: u64) -> Vec<u64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        })
        .collect()
}

#[test]
fn ands_match_clear_and_their_proofs_accept() {
    for n in [1, 7, 300] {
        let (x, y) = (words(n, 1), words(n, 2));
        let out = run3::<u64, _>(|p| and_script(p, &x, &y).unwrap());
        let want: Vec<u64> = x.iter().zip(&y).map(|(a, b)| a & b & a).collect();
        assert_eq!(out[1].as_ref().unwrap(), &want, "{n} words");
    }
}

/// Bit `t` of `a + b + c + d` for numbers `a`, `b`, `c` that two parties each know and a
/// public `d`, by carry-save additions and a carry tree, opened to everyone.
#[test]
fn circuits_give_the_bits_of_sums() {
    use super::circuits::bit;
    let n = 150;
    let w = 20;
    let comp = |j: u64| -> Vec<u64> {
        words(n, 10 + j)
            .iter()
            .map(|v| v & ((1 << w) - 1))
            .collect()
    };
    let (a, b, c) = (comp(0), comp(1), comp(2));
    let d: Vec<u64> = words(n, 20).iter().map(|v| v & ((1 << w) - 1)).collect();
    for t in [1usize, 5, 20, 21] {
        let out = run3::<u64, _>(|p| {
            let me = p.party();
            let holds = |j: usize| j == me || j == (me + 1) % 3;
            let vals = [&a, &b, &c];
            let k: Vec<_> = (0..3)
                .map(|j| p.known_bits(j, holds(j).then_some(&vals[j][..]), n, w))
                .collect();
            let (s1, t1) = p.csa(&k[0], &k[1], &k[2]).unwrap();
            let (s2, t2) = p.csa_public(&s1, &t1.shifted(), &d).unwrap();
            let t2 = t2.shifted();
            let carry = p.carry_into(&s2, &t2, t).unwrap();
            let top = s2.bits(t, t + 1).xor(&t2.bits(t, t + 1));
            let plane: Vec<_> = top.planes[0]
                .iter()
                .zip(&carry)
                .map(|(x, y)| crate::rep3::Rep {
                    a: crate::rep3::Xor(x.a.0 ^ y.a.0),
                    b: crate::rep3::Xor(x.b.0 ^ y.b.0),
                })
                .collect();
            p.check().unwrap();
            let opened = p.open_all(crate::cheat::Kind::Open, &plane).unwrap();
            opened.iter().map(|x| x.0).collect::<Vec<u64>>()
        });
        let want: Vec<u64> = (0..n)
            .map(|e| (a[e] + b[e] + c[e] + d[e]) >> t & 1)
            .collect();
        for o in &out {
            let got: Vec<u64> = (0..n).map(|e| bit(o, e)).collect();
            assert_eq!(got, want, "bit {t}");
        }
    }
}

/// Party 0's bits converted to the ring, multiplied by party 2's values, revealed.
#[test]
fn bits_convert_to_the_ring() {
    let n = 100;
    let x = words(2, 7);
    let y = values(n, -50, 50, 8);
    let out = run3::<u64, _>(|p| {
        use crate::rep3::Xor;
        let me = p.party();
        let xw: Vec<Xor> = x.iter().map(|&w| Xor(w)).collect();
        let plane = p
            .rep
            .share_from::<Xor>(0, (me == 0).then_some(&xw[..]), 2)
            .unwrap();
        let ring = mac_planes(p.bits_to_ring(&plane, n).unwrap());
        let sy = p.input(2, (me == 2).then_some(&y[..]), n).unwrap();
        let prod = p.mul(&ring, &sy).unwrap();
        p.reveal(&Mac::concat(&[&ring, &prod]), 0).unwrap()
    });
    let got = out[0].clone().unwrap();
    for e in 0..n {
        let b = (x[e / 64] >> (e % 64) & 1) as i64;
        assert_eq!(got[e], b, "bit {e}");
        assert_eq!(got[n + e], b * y[e], "product {e}");
    }
}

/// Dealt masks: the bits are the mask's, the dealt ring bits its carries, top bit and the
/// daBits' boolean halves; and the proofs accept.
#[test]
fn dealt_masks_and_bits_agree() {
    use super::circuits::bit;
    use super::dealt::Order;
    use crate::cheat::Kind;
    let o = Order {
        n: 100,
        m: 20,
        carries: vec![5, 12],
        dabits: 2,
    };
    let out = run3::<u64, _>(|p| {
        let d = p.deal(&o).unwrap();
        p.check().unwrap();
        let r = p.open_all(Kind::Open, &d.r).unwrap();
        // The mask's bits, XOR-shared numbers, opened as planes.
        let (a, b): (Vec<u128>, Vec<u128>) = d.mask_bits.iter().map(|r| (r.a, r.b)).unzip();
        let bits: Vec<Vec<u64>> = super::dealt::to_planes(&a, &b, o.m)
            .iter()
            .map(|pl| {
                p.open_all(Kind::Open, pl)
                    .unwrap()
                    .iter()
                    .map(|x| x.0)
                    .collect()
            })
            .collect();
        let ring: Vec<Vec<u128>> = d
            .ring
            .iter()
            .map(|v| p.open_all(Kind::Open, v).unwrap())
            .collect();
        let da: Vec<Vec<u64>> =
            d.da.iter()
                .map(|pl| {
                    p.open_all(Kind::Open, pl)
                        .unwrap()
                        .iter()
                        .map(|x| x.0)
                        .collect()
                })
                .collect();
        (r, bits, ring, da)
    });
    let (r, bits, ring, da) = &out[0];
    let m = o.m;
    for e in 0..o.n {
        let low = r[e] & ((1 << m) - 1);
        let from_bits: u128 = (0..m as usize)
            .map(|j| u128::from(bit(&bits[j], e)) << j)
            .sum();
        assert_eq!(from_bits, low, "element {e}");
        assert_eq!(ring[2][e], r[e] >> m, "carry out, element {e}");
        assert_eq!(ring[3][e], low >> (m - 1), "top bit, element {e}");
        assert!(ring[0][e] <= 1 && ring[1][e] <= 1);
        for k in 0..2 {
            assert_eq!(
                ring[4 + k][e],
                u128::from(bit(&da[k], e)),
                "daBit {k}, element {e}"
            );
        }
    }
}

/// Runs `calls` on party 0's `x` and party 2's `y`; checks each result against `clear`.
fn check_calls<W: Word>(x: &[i64], y: &[i64], calls: Vec<crate::testutil::Call>) {
    use crate::testutil::{at, Binary, Script};
    let s = Binary {
        x: x.to_vec(),
        y: y.to_vec(),
        to: 1,
        op: |_| calls.clone(),
    };
    let out = crate::testutil::on_mesh(3, "mal-rep3", |_, mesh: Mesh| {
        let mut p = MalRep3::<W>::setup(Box::new(mesh)).unwrap();
        let r = s.run(&mut p).unwrap();
        (r, p.stats())
    });
    let got = at(&out, 1);
    for (call, g) in calls.iter().zip(&got) {
        assert_eq!(g, &call.clear(x, y), "{call:?} in Z_2^{}", W::BITS);
    }
    // The measured traffic equals the costs, checks and selection pieces included.
    use crate::cost::{Call as C, Costs, Rounds};
    let costs = MalRep3Costs::new(W::BITS);
    let ask = |call: C| costs.rounds(call).expect("costs");
    let mut rounds: Rounds = ask(C::Input {
        owner: 0,
        len: x.len(),
    });
    rounds.extend(ask(C::Input {
        owner: 2,
        len: y.len(),
    }));
    for (call, g) in calls.iter().zip(&got) {
        rounds.extend(crate::testutil::call_cost(&costs, call, x.len()));
        rounds.extend(ask(C::Reveal {
            len: g.len(),
            to: 1,
        }));
    }
    crate::testutil::assert_traffic(&out, &rounds, &format!("mal-rep3 in Z_2^{}", W::BITS));
}

#[test]
fn roundings_and_requantizations_match_clear() {
    use crate::testutil::{requants, Call};
    use crate::Bounds;
    let b = Bounds {
        lo: -(1 << 20),
        hi: 1 << 20,
    };
    let mut x = values(48, b.lo, b.hi, 4);
    x[2] = 12;
    x[3] = -12;
    x[5] = 5 << 9;
    x[6] = -(5 << 9);
    x[7] = b.lo;
    x[8] = b.hi;
    let n = x.len();
    let den: Vec<i64> = (0..n).map(|i| [8, 3, 7, 1 << 12, 24, 1][i % 6]).collect();
    let num: Vec<i64> = (0..n).map(|i| [1, 5, -3, 77, 1, -2][i % 6]).collect();
    let [pow2, general, tie] = requants(n);
    let calls = vec![
        Call::Rescale(num, den, b),
        Call::Requant(pow2, b),
        Call::Requant(general, b),
        Call::Requant(tie, b),
    ];
    check_calls::<u64>(&x, &x, calls.clone());
    check_calls::<u32>(&x, &x, calls);
}

#[test]
fn comparisons_match_clear() {
    use crate::testutil::Call;
    use crate::Bounds;
    let b = Bounds { lo: -300, hi: 300 };
    let mut x = values(40, b.lo, b.hi, 5);
    let y = values(40, b.lo, b.hi, 6);
    x[1] = x[6];
    x[8] = 300;
    x[15] = 300;
    x[16] = -300;
    let calls = vec![
        Call::Clamp(-20, 100, b),
        Call::Clamp(0, 1000, b),
        Call::Max(b),
        Call::Argmax(8, false, b),
        Call::Argmax(8, true, b),
        Call::Argmax(5, false, b),
    ];
    check_calls::<u64>(&x, &y, calls.clone());
    check_calls::<u32>(&x, &y, calls);
}

#[test]
fn lookups_match_clear() {
    use crate::testutil::Call;
    let x = values(40, -300, 300, 7);
    let table: Vec<i64> = (0..601).map(|i| (i * 37) % 91 - 45).collect();
    let calls = [
        Call::Lookup(table, -300),
        Call::Lookup(vec![5], -300),
        Call::Lookup((0..700).map(|i| i - 350).collect(), -300),
    ];
    let one = vec![-300; 40];
    check_calls::<u64>(&x, &x, calls[..1].to_vec());
    check_calls::<u32>(&one, &one, calls[1..2].to_vec());
    check_calls::<u32>(&x, &x, calls[2..].to_vec());
}

/// `mal-rep3`'s selections and lookup (the group's third party deals and proves) against
/// the generic ones over its dealer-free gate set (128 daBits a mask, every AND a MAC'd
/// product): the same results, bit for bit, and never more bytes (a twentieth to a
/// fiftieth for the selections). Not fewer rounds: with the reveal's proof and check the
/// own ones take about twice the generic ones' (49 against 24 for a requantization,
/// NOTES.md), the price of proven bits instead of MAC'd ring products.
#[test]
fn the_functionalities_match_the_generic_ones() {
    use crate::func::gates::Generic;
    use crate::testutil::{on_mesh, Script};
    let (x, y, calls) = crate::testutil::generic_cases(12, 41);
    for call in &calls {
        let s = crate::testutil::one_call(&x, &y, call);
        let own = on_mesh(3, "mal-rep3", |_, mesh| {
            let mut p = MalRep3::<u64>::setup(Box::new(mesh)).unwrap();
            let r = s.run(&mut p).unwrap();
            (r, p.stats())
        });
        let generic = on_mesh(3, "mal-rep3", |_, mesh| {
            let mut p = Generic(MalRep3::<u64>::setup(Box::new(mesh)).unwrap());
            let r = s.run(&mut p).unwrap();
            (r, p.0.stats())
        });
        let what = format!("{call:?}");
        crate::testutil::assert_agrees(&own, &generic, call, &x, &y, &what);
        for i in 0..3 {
            let (o, g) = (own[i].1, generic[i].1);
            assert!(
                o.bytes_sent <= g.bytes_sent,
                "party {i}: {o:?} against the generic {g:?}, {what}"
            );
        }
    }
}

/// Calls chained without a reveal pass [`check::CHECK_EVERY`] (64 in tests) of pairs and
/// relations: the parties check inside and between calls, and the costs, which carry each
/// twin's unchecked pairs and relations from call to call, count every check.
#[test]
fn full_ledgers_are_checked_between_and_inside_calls_and_costed() {
    use crate::testutil::{assert_traffic, at, Chain, Script};
    let s = Chain::past_a_check();
    let out = crate::testutil::on_mesh(3, "mal-rep3", |_, mesh: Mesh| {
        let mut p = MalRep3::<u64>::setup(Box::new(mesh)).unwrap();
        let r = s.run(&mut p).unwrap();
        (r, p.stats())
    });
    assert_eq!(at(&out, 1), vec![s.clear()]);
    let (carried, alone) = s.costs(3, || Box::new(MalRep3Costs::new(64)));
    assert!(carried.len() > alone.len(), "checks between calls");
    assert_traffic(&out, &carried, "mal-rep3");
}

/// A call that would take the unchecked pairs and relations past [`check::CHECK_EVERY`]
/// (64 in tests) is checked before, so its pairs never wait on top of a full ledger (a
/// lookup piece's millions did); nothing is checked when nothing waits, or when it fits.
#[test]
fn a_call_that_would_pass_the_bound_is_checked_before() {
    let out = run3(|p: &mut MalRep3<u64>| {
        let x = values(16, -300, 300, 7);
        let me = p.party();
        let a = p.input(0, (me == 0).then_some(&x[..]), x.len()).unwrap();
        let waiting = p.unchecked();
        let rounds = p.stats().rounds;
        // Fits, or nothing waits: no check.
        p.check_before(check::CHECK_EVERY - waiting - 1).unwrap();
        let fits = (p.unchecked(), p.stats().rounds - rounds);
        let _ = p.mul(&a, &a).unwrap();
        let waiting_after_product = p.unchecked();
        p.check_before(check::CHECK_EVERY - waiting_after_product)
            .unwrap();
        let passes = p.unchecked();
        let rounds = p.stats().rounds;
        p.check_before(1 << 30).unwrap();
        let empty = p.stats().rounds - rounds;
        (waiting, fits, waiting_after_product, passes, empty)
    });
    for (waiting, fits, after_product, passes, empty) in out {
        assert!(waiting > 0 && waiting < check::CHECK_EVERY, "{waiting}");
        assert_eq!(fits, (waiting, 0), "no check while it fits");
        assert!(after_product > waiting && after_product < check::CHECK_EVERY);
        assert_eq!(
            passes, 0,
            "checked before the call that would pass the bound"
        );
        assert_eq!(empty, 0, "nothing to check, no rounds");
    }
}
