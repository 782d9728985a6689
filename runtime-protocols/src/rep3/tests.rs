//! Every `rep3` primitive against `clear`, three parties over loopback TCP.

use super::*;
use crate::cost::Ask as _;
use crate::net::Mesh;
use crate::planes::Plane;
use crate::testutil::values;
use crate::{ring, Clear, Protocol};

/// Runs `f` in three parties, each with its mesh over loopback; returns their results.
fn on_three<T: Send>(f: impl Fn(PartyId, Mesh) -> T + Sync) -> Vec<T> {
    crate::testutil::on_mesh(3, "rep3", f)
}

/// Runs `f` on `rep3` in three parties; returns each party's result.
fn run3<W: Word, T: Send>(f: impl Fn(&mut Rep3<W>) -> T + Sync) -> Vec<T> {
    on_three(|_, mesh| f(&mut Rep3::<W>::setup(Box::new(mesh)).unwrap()))
}

/// Shares `x` from party 1, applies `op`, reveals to party 1.
fn secure<W: Word>(x: &[i64], op: impl Fn(&mut Rep3<W>, &Pair<W>) -> Pair<W> + Sync) -> Vec<i64> {
    let out = run3::<W, _>(|p| {
        let mine = (p.party() == 1).then_some(x);
        let s = p.input(1, mine, x.len()).unwrap();
        let y = op(p, &s);
        p.reveal(&y, 1).unwrap()
    });
    assert!(out[0].is_none() && out[2].is_none());
    out[1].clone().unwrap()
}

#[test]
fn arithmetic_matches_clear() {
    let a = values(50, -1000, 1000, 1);
    let b = values(50, -1000, 1000, 2);
    let out = run3::<u64, _>(|p| {
        let sa = p.input(0, (p.party() == 0).then_some(&a[..]), 50).unwrap();
        let sb = p.input(2, (p.party() == 2).then_some(&b[..]), 50).unwrap();
        let prod = p.mul(&sa, &sb).unwrap();
        let d = MatDims {
            batch: 2,
            m: 5,
            k: 5,
            n: 1,
            a_batched: true,
            b_batched: true,
        };
        let mm = p.matmul(&sa, &sb.slice(0..10), d).unwrap();
        let lin = p.add_public(&p.mul_public(&p.sub(&sa, &sb), &b), &a);
        let all = Pair::concat(&[&prod, &mm, &lin]);
        p.reveal(&all, 0).unwrap()
    });
    let mut c = Clear;
    let d = MatDims {
        batch: 2,
        m: 5,
        k: 5,
        n: 1,
        a_batched: true,
        b_batched: true,
    };
    let mut want = c.mul(&a, &b).unwrap();
    want.extend(c.matmul(&a, &b.slice(0..10), d).unwrap());
    want.extend(c.add_public(&c.mul_public(&c.sub(&a, &b), &b), &a));
    assert_eq!(out[0].as_ref().unwrap(), &want);
    assert!(out[1].is_none() && out[2].is_none());
}

#[test]
fn exact_rescale_matches_clear_including_ties() {
    // Powers of two, odd and mixed denominators, ties at both signs.
    let cases: &[(i64, i64, i64, i64)] = &[
        (1, 2, -9, 9),
        (1, 4, -40, 40),
        (3, 8, -100, 100),
        (7883973, 1 << 33, -(1 << 20), 1 << 20),
        (1, 30945110, -(1 << 26), 1 << 26),
        (5, 9, -300, 300),
        (-3, 7, -50, 50),
        (1, 1, -5, 5),
    ];
    for &(num, den, lo, hi) in cases {
        let x = values(64, lo, hi, num as u64 ^ den as u64);
        let b = Bounds { lo, hi };
        let want: Vec<i64> = x.iter().map(|&v| ring::rescale(v, num, den)).collect();
        let got = secure::<u128>(&x, |p, s| {
            p.rescale(s, &vec![num; 64], &vec![den; 64], b, TruncMode::Exact)
                .unwrap()
        });
        assert_eq!(got, want, "num {num} den {den}");
    }
    // Small values fit Z_2^64 too.
    let x = values(64, -50, 50, 9);
    let want: Vec<i64> = x.iter().map(|&v| ring::rescale(v, 3, 4)).collect();
    let got = secure::<u64>(&x, |p, s| {
        p.rescale(
            s,
            &[3; 64],
            &[4; 64],
            Bounds { lo: -50, hi: 50 },
            TruncMode::Exact,
        )
        .unwrap()
    });
    assert_eq!(got, want);
}

#[test]
fn oversized_divisors_are_an_error_not_a_wrong_answer() {
    let errs = run3::<u128, _>(|p| {
        let s = p
            .input(1, (p.party() == 1).then_some(&[5i64][..]), 1)
            .unwrap();
        let b = Bounds { lo: -10, hi: 10 };
        p.rescale(&s, &[1], &[i64::MAX], b, TruncMode::Exact)
            .unwrap_err()
            .to_string()
    });
    assert!(
        errs.iter().all(|e| e.contains("63-bit comparator")),
        "{errs:?}"
    );
}

#[test]
fn probabilistic_rescale_is_within_one() {
    let x = values(400, -(1 << 20), 1 << 20, 5);
    let b = Bounds {
        lo: -(1 << 20),
        hi: 1 << 20,
    };
    let (num, den) = (12932933i64, 1i64 << 33);
    let got = secure::<u128>(&x, |p, s| {
        p.rescale(s, &[num; 400], &[den; 400], b, TruncMode::Probabilistic)
            .unwrap()
    });
    let mut off = 0;
    for (g, v) in got.iter().zip(&x) {
        let e = ring::rescale(*v, num, den);
        assert!((g - e).abs() <= 1, "{v}: {g} vs {e}");
        off += (g != &e) as usize;
    }
    assert!(off < 400, "some must be exact");
}

#[test]
fn comparisons_match_clear() {
    let x = values(200, -300, 300, 11);
    let y = values(200, -300, 300, 12);
    let b = Bounds { lo: -300, hi: 300 };
    let clamped = secure::<u64>(&x, |p, s| p.clamp(s, -128, 127, b).unwrap());
    let want: Vec<i64> = x.iter().map(|v| (*v).clamp(-128, 127)).collect();
    assert_eq!(clamped, want);
    let relu = secure::<u64>(&x, |p, s| p.clamp(s, 0, i64::MAX, b).unwrap());
    assert_eq!(relu, x.iter().map(|v| (*v).max(0)).collect::<Vec<_>>());
    let mut xy = x.clone();
    xy.extend(&y);
    let m = secure::<u64>(&xy, |p, s| {
        p.max(&s.slice(0..200), &s.slice(200..s.len()), b).unwrap()
    });
    let want: Vec<i64> = x.iter().zip(&y).map(|(a, b)| *a.max(b)).collect();
    assert_eq!(m, want);
}

#[test]
fn argmax_matches_clear_with_ties() {
    let mut x = values(70, -5, 5, 3); // many ties
    x[10..17].copy_from_slice(&[4, 4, 4, 4, 4, 4, 4]);
    let b = Bounds { lo: -5, hi: 5 };
    for last in [false, true] {
        for row in [7, 10, 1] {
            let got = secure::<u64>(&x, |p, s| p.argmax(s, row, last, b).unwrap());
            let want = Clear.argmax(&x, row, last, b).unwrap();
            assert_eq!(got, want, "row {row} select_last {last}");
        }
    }
}

/// Tables as networks use them (a quantized SiLU over int8, a sigmoid over uint8), a short
/// odd-length one, one of wide values, a single entry; inputs over the whole index range.
fn lookup_cases() -> Vec<(Vec<i64>, i64)> {
    vec![
        (
            (-128..128)
                .map(|i: i64| (i * i / 200 - 30).clamp(-128, 127))
                .collect(),
            -128,
        ),
        ((0..256).map(|i| 5 + i * 239 / 255).collect(), 0),
        ((0..37).map(|i| i * i - 100).collect(), -10),
        ((0..100).map(|i| (i - 50) << 33).collect(), 7),
        (vec![-9], 3),
    ]
}

fn lookup_matches<W: Word>() {
    for (table, offset) in lookup_cases() {
        for n in [0, 1, 2, 90] {
            let hi = offset + table.len() as i64 - 1;
            let mut x = values(n, offset, hi, 4);
            // Both ends of the index range.
            if n >= 2 {
                x[0] = offset;
                x[1] = hi;
            }
            let want = Clear.lookup(&x, &table, offset).unwrap();
            let wrap = |v: i64| W::from_i64(v).to_i64();
            let want: Vec<i64> = want.into_iter().map(wrap).collect();
            // The call as the VM makes it, then each construction whatever the size.
            let shape = super::lookup::Shape::new(&table).unwrap();
            let one_hot = |p: &mut Rep3<W>, s: &Pair<W>| {
                planes(super::lookup::lookup(p, shape, &reps(s), &table, offset).unwrap())
            };
            let rotated = |p: &mut Rep3<W>, s: &Pair<W>| {
                let r = super::lookup::lookup_rotated(p, shape, &reps(s), &table, offset);
                planes(r.unwrap())
            };
            let got = [
                secure::<W>(&x, |p, s| p.lookup(s, &table, offset).unwrap()),
                secure::<W>(&x, one_hot),
                secure::<W>(&x, rotated),
            ];
            for (got, how) in got.into_iter().zip(["lookup", "one-hot", "rotated"]) {
                assert_eq!(
                    got,
                    want,
                    "{how}: Z_2^{}, {} entries, n = {n}",
                    W::BITS,
                    table.len()
                );
            }
        }
    }
}

#[test]
fn lookup_matches_clear() {
    lookup_matches::<u32>();
    lookup_matches::<u64>();
    lookup_matches::<u128>();
}

/// What the evaluators of whole rotated tables open, `u = table[y] + ρ`, and the dealer's
/// components `−ρ_B`, `−ρ_A` are masked afresh every run: no component any party holds
/// repeats across runs on the same input. (The party-view test cannot see a dropped `ρ`:
/// each evaluator's view holds `u` only as a sum of two words at a position `c` that moves
/// with the mask.)
#[test]
fn rotated_lookups_mask_every_component_afresh() {
    let (table, offset) = lookup_cases()[0].clone();
    let x: Vec<i64> = (0..9).map(|i| offset + 30 * i).collect();
    let shape = super::lookup::Shape::new(&table).unwrap();
    let runs: Vec<Vec<Pair<u32>>> = (0..12)
        .map(|_| {
            run3::<u32, _>(|p| {
                let mine = (p.party() == 1).then_some(&x[..]);
                let s = p.input(1, mine, x.len()).unwrap();
                planes(super::lookup::lookup_rotated(p, shape, &reps(&s), &table, offset).unwrap())
            })
        })
        .collect();
    for party in 0..3 {
        for e in 0..x.len() {
            for side in [true, false] {
                let seen: std::collections::BTreeSet<u32> = runs
                    .iter()
                    .map(|r| if side { r[party].a[e] } else { r[party].b[e] })
                    .collect();
                assert!(
                    seen.len() > 1,
                    "party {party}, element {e}: a component repeats"
                );
            }
        }
    }
}

/// A lookup sends what its cost says: 3 rounds with the dealer's one-hot vector of bits
/// (far fewer bytes than a vector of ring words per element), 2 with whole rotated
/// tables where rounds are favoured and there are few elements.
#[test]
fn lookup_costs_equal_the_run() {
    use crate::cost::per_party;
    for (n, favor) in [
        (300, Favor::Bytes),
        (300, Favor::Rounds),
        (2100, Favor::Rounds),
    ] {
        for (table, offset) in lookup_cases() {
            let hi = offset + table.len() as i64 - 1;
            let x = values(n, offset, hi, 6);
            let stats = run3::<u64, _>(|p| {
                p.favor = favor;
                let mine = (p.party() == 1).then_some(&x[..]);
                let s = p.input(1, mine, n).unwrap();
                let before = p.stats();
                p.lookup(&s, &table, offset).unwrap();
                let after = p.stats();
                (
                    after.rounds - before.rounds,
                    after.bytes_sent - before.bytes_sent,
                )
            });
            let costs = Rep3Costs {
                ring_bits: 64,
                favor,
            };
            let rounds = costs.lookup(n, &table).unwrap();
            let shape = super::lookup::Shape::new(&table).unwrap();
            let (want_rounds, how) = if super::lookup::rotates(shape, n, favor) {
                (2, "open, open the rotated entry")
            } else {
                (3, "open, select, reshare")
            };
            assert_eq!(rounds.len(), want_rounds, "{how}");
            let want = per_party(&rounds, 3);
            for (i, (r, bytes)) in stats.into_iter().enumerate() {
                assert_eq!(
                    (r, bytes),
                    (want[i].rounds, want[i].bytes_sent),
                    "party {i}, n = {n}, {favor:?}"
                );
            }
        }
    }
    // An int8 table by default: every party sends under 60 bytes per element (it is the
    // dealer of a third: 32 bytes of one-hot bits and 8 words, then 2 bytes and a word as
    // an evaluator).
    let n = 300;
    let (table, _) = &lookup_cases()[0];
    let rounds = Rep3Costs::new(64).lookup(n, table).unwrap();
    for c in per_party(&rounds, 3) {
        assert!(
            c.bytes_sent < 60 * n as u64,
            "{} bytes for {n} elements",
            c.bytes_sent
        );
    }
}

#[test]
fn rounds_are_counted_and_equal_across_masked_steps() {
    let x = values(8, -100, 100, 1);
    let stats = run3::<u64, _>(|p| {
        let s = p.input(1, (p.party() == 1).then_some(&x[..]), 8).unwrap();
        let before = p.stats();
        p.clamp(&s, -10, 10, Bounds { lo: -100, hi: 100 }).unwrap();
        let after = p.stats();
        (before, after)
    });
    // The input is one round for the data owner and its receiver only.
    assert_eq!(stats[1].0.rounds, 1);
    assert_eq!(stats[0].0.rounds, 1);
    assert_eq!(stats[2].0.rounds, 0);
    // Two sign tests batched, on values in [−90, 110] (8 bits, two 4-bit tables): open,
    // one tree level, select, reshare = 4 rounds, and every party deals for a third of the
    // elements and evaluates the rest, so each takes part in every round.
    for s in &stats {
        assert_eq!(s.1.rounds - s.0.rounds, 4);
    }
}

#[test]
fn dealer_assisted_sign_tests_at_every_width_and_size() {
    // Bounds from one bit to the widest masked value (63 bits plus the sign), and sizes
    // that leave groups empty.
    let bounds = [
        (-1, 0),
        (-3, 5),
        (-(1 << 20), 1 << 20),
        // The widest difference Z_2^32 opens: 31 bits plus the sign.
        (-(1 << 29), (1 << 29) - 1),
        (-(1 << 40) + 7, (1 << 40) - 3),
        (-(1i64 << 61), (1i64 << 61) - 1),
    ];
    for (k, &(lo, hi)) in bounds.iter().enumerate() {
        for n in [1, 2, 3, 10] {
            let b = Bounds { lo, hi };
            let mut xy = values(n, lo, hi, 40 + k as u64);
            xy.extend(values(n, lo, hi, 80 + n as u64));
            let want: Vec<i64> = (0..n).map(|i| xy[i].max(xy[n + i])).collect();
            let got = secure::<u64>(&xy, |p, s| {
                p.max(&s.slice(0..n), &s.slice(n..s.len()), b).unwrap()
            });
            assert_eq!(got, want, "max in [{lo}, {hi}], n = {n}, Z_2^64");
            let got = secure::<u128>(&xy, |p, s| {
                p.max(&s.slice(0..n), &s.slice(n..s.len()), b).unwrap()
            });
            assert_eq!(got, want, "max in [{lo}, {hi}], n = {n}, Z_2^128");
            if hi <= 1 << 29 {
                let got = secure::<u32>(&xy, |p, s| {
                    p.max(&s.slice(0..n), &s.slice(n..s.len()), b).unwrap()
                });
                assert_eq!(got, want, "max in [{lo}, {hi}], n = {n}, Z_2^32");
            }
            let (clo, chi) = (lo / 3, hi / 2);
            let want: Vec<i64> = xy[..n].iter().map(|v| (*v).clamp(clo, chi)).collect();
            let got = secure::<u64>(&xy.slice(0..n), |p, s| p.clamp(s, clo, chi, b).unwrap());
            assert_eq!(
                got, want,
                "clamp to [{clo}, {chi}] in [{lo}, {hi}], n = {n}"
            );
            if hi <= 1 << 29 {
                let got = secure::<u32>(&xy.slice(0..n), |p, s| p.clamp(s, clo, chi, b).unwrap());
                assert_eq!(got, want, "clamp in [{lo}, {hi}], n = {n}, Z_2^32");
            }
        }
    }
}

/// A power-of-two divisor wider than the operand: opening `max(bits, s) + 1` bits spares
/// the second reading's tables but widens the threshold comparisons, so the plan takes
/// whichever costs less, the same for both favors.
#[test]
fn opening_takes_the_cheaper_width() {
    let q = |s: u32| crate::Requant {
        num: vec![12_345],
        den: vec![1 << s],
        zp: vec![0],
        lo: -128,
        hi: 127,
    };
    let b = Bounds {
        lo: -(1 << 12),
        hi: 1 << 12,
    };
    // 14 bits of operand: a 31-bit shift opens 14 bits with tables for both readings.
    for favor in [Favor::Bytes, Favor::Rounds] {
        let wide = super::requant::RequantPlan::new(&q(31), b, 64, favor).unwrap();
        assert_eq!((wide.m, wide.dual), (15, true), "{favor:?}");
        // A shift no wider than the operand opens as wide either way, with one set.
        let narrow = super::requant::RequantPlan::new(&q(12), b, 64, favor).unwrap();
        assert_eq!((narrow.m, narrow.dual), (15, false), "{favor:?}");
    }
    // A shift just above the operand costs less with one set of tables.
    let near = super::requant::RequantPlan::new(&q(15), b, 64, Favor::Bytes).unwrap();
    assert_eq!((near.m, near.dual), (16, false));
}

#[test]
fn fused_requantization_matches_clear_including_ties() {
    use crate::Requant;
    // (bounds, shift, multipliers, zero points, clamp): int32-like accumulators with
    // per-channel multipliers, ties (num = 1, small shifts), ranges inside and beyond the
    // clamp, and a shift wider than the accumulator.
    type Case = (i64, i64, u32, Vec<i64>, Vec<i64>, i64, i64);
    let cases: Vec<Case> = vec![
        (-816000, 809625, 30, vec![1358385], vec![-128], -128, 127),
        (
            -(1 << 31),
            (1 << 31) - 1,
            33,
            vec![12932933, 5933283],
            vec![3, -7],
            -128,
            127,
        ),
        (-40, 40, 2, vec![1, 3, 5], vec![0, 1, -2], -6, 6),
        (-7, 9, 1, vec![1], vec![0], -100, 100),
        (0, 255, 4, vec![7], vec![-128], -128, 127),
        (
            -(1 << 20),
            1 << 20,
            40,
            vec![1 << 30, (1 << 30) + 1],
            vec![5],
            0,
            255,
        ),
        // Per-channel shifts (see `den` below).
        (
            -(1 << 31),
            (1 << 31) - 1,
            33,
            vec![12932933, 5933283, 3],
            vec![-1, 0],
            -128,
            127,
        ),
        // Shifts wider than Z_2^32 allows an opening for: both readings of the mask, with
        // ties (x ≡ 4 mod 8) and per-channel shifts.
        (
            -3000,
            3000,
            34,
            vec![1 << 31, 3 << 31],
            vec![0, 2],
            -100,
            100,
        ),
        (
            -(1 << 20),
            1 << 20,
            33,
            vec![12932933, 5933283, 3],
            vec![-1, 0],
            -128,
            127,
        ),
    ];
    for (k, (lo, hi, s, nums, zps, clo, chi)) in cases.into_iter().enumerate() {
        for n in [1, 2, 3, 10, 64] {
            let b = Bounds { lo, hi };
            let mut x = values(n, lo, hi, 7 + k as u64 + 100 * n as u64);
            // Exact ties of round-half-even where the shift is small.
            if s <= 2 && n >= 4 {
                x[2] = 2;
                x[3] = -6;
            }
            if k == 7 && n >= 4 {
                x[2] = 4;
                x[3] = -12;
            }
            let q = Requant {
                num: (0..n).map(|i| nums[i % nums.len()]).collect(),
                // The last case varies the shift per element: 2^33, 2^31, 2^29, ...
                den: (0..n)
                    .map(|i| 1i64 << if k >= 6 { s - 2 * (i as u32 % 3) } else { s })
                    .collect(),
                zp: (0..n).map(|i| zps[i % zps.len()]).collect(),
                lo: clo,
                hi: chi,
            };
            assert!(
                super::requant::RequantPlan::new(&q, b, 64, Favor::Bytes).is_some(),
                "case {k} takes the fused path"
            );
            let want: Vec<i64> = x.iter().enumerate().map(|(i, &v)| q.apply(i, v)).collect();
            // Accumulators under 2^31 fit Z_2^32, with two borrow tables where `s ≥ 32`.
            let plan32 = super::requant::RequantPlan::new(&q, b, 32, Favor::Bytes);
            assert_eq!(plan32.is_some(), hi - lo < 1 << 31, "case {k} at Z_2^32");
            if let Some(plan) = plan32 {
                // Below 32 bits one set of tables serves both readings where the wider
                // opening is cheaper (`opening_takes_the_cheaper_width`).
                assert!(plan.dual || s < 32, "case {k}: two readings of the mask");
                let got = secure::<u32>(&x, |p, sh| {
                    p.requantize(sh, &q, b, TruncMode::Exact).unwrap()
                });
                assert_eq!(got, want, "case {k}, n = {n}, Z_2^32");
            }
            let got = secure::<u64>(&x, |p, sh| {
                p.requantize(sh, &q, b, TruncMode::Exact).unwrap()
            });
            assert_eq!(got, want, "case {k}, n = {n}, Z_2^64");
            let got = secure::<u128>(&x, |p, sh| {
                p.requantize(sh, &q, b, TruncMode::Exact).unwrap()
            });
            assert_eq!(got, want, "case {k}, n = {n}, Z_2^128");
        }
    }
}

/// Divisors that are not powers of two (`s_in / (s_out · count)` of `Add`, `Concat` and
/// average pools): odd and even ones, ties of even ones, a divisor of one, and divisors
/// mixed per element, in every ring that holds the opening.
#[test]
fn fused_requantization_with_any_divisor_matches_clear() {
    use crate::Requant;
    // (bounds, multipliers, divisors, zero points, clamp)
    type Case = (i64, i64, Vec<i64>, Vec<i64>, Vec<i64>, i64, i64);
    let cases: Vec<Case> = vec![
        // QLinearAdd-like: 33-bit sums of two rescaled int8 values over a 24-bit odd scale.
        (
            -(1 << 32),
            1 << 32,
            vec![1],
            vec![12_582_917, 9_437_187],
            vec![0, -3],
            -128,
            127,
        ),
        // Even, not powers of two, with ties (x·num/den = k + 1/2).
        (-60, 60, vec![1], vec![6, 10], vec![0], -9, 9),
        // A global average pool of 7×7: num/(49·den').
        (
            -6272,
            6272,
            vec![5_000_011],
            vec![49 << 23],
            vec![2],
            -128,
            127,
        ),
        // A small shift under wide values: the borrow has fewer chunks than the
        // threshold tests' eight units.
        (-(1 << 30), 1 << 30, vec![3], vec![4, 2], vec![1], -128, 127),
        // A divisor of one (a pure clamp of a multiple) and mixed divisors per element.
        (
            -300,
            300,
            vec![1, 2],
            vec![1, 7, 8, 1 << 20],
            vec![0],
            -128,
            127,
        ),
    ];
    for (k, (lo, hi, nums, dens, zps, clo, chi)) in cases.into_iter().enumerate() {
        for n in [1, 3, 10, 64] {
            let b = Bounds { lo, hi };
            let mut x = values(n, lo, hi, 11 + k as u64 + 100 * n as u64);
            if k == 1 && n >= 4 {
                (x[0], x[1], x[2], x[3]) = (3, -5, 9, 15);
            }
            let q = Requant {
                num: (0..n).map(|i| nums[i % nums.len()]).collect(),
                den: (0..n).map(|i| dens[i % dens.len()]).collect(),
                zp: (0..n).map(|i| zps[i % zps.len()]).collect(),
                lo: clo,
                hi: chi,
            };
            let want: Vec<i64> = x.iter().enumerate().map(|(i, &v)| q.apply(i, v)).collect();
            if k == 1 && n >= 4 {
                assert_eq!(&want[..4], &[0, 0, 2, 2], "ties of 3/6, -5/10, 9/6, 15/10");
            }
            // The fused construction itself (`requantize` prefers the masked division
            // where that fits the ring), in every ring that holds its opening.
            // Its trees cut both ways.
            fn fused<W: Word>(x: &[i64], q: &Requant, b: Bounds, f: Favor) -> Option<Vec<i64>> {
                let plan = super::requant::RequantPlan::new(q, b, W::BITS, f)?;
                Some(secure::<W>(x, |p, sh| {
                    super::requant::requantize(p, &plan, q, super::requant::Operand::Shares(sh), b)
                        .unwrap()
                }))
            }
            for f in [Favor::Bytes, Favor::Rounds] {
                assert_eq!(
                    fused::<u64>(&x, &q, b, f),
                    Some(want.clone()),
                    "case {k}, n = {n}, Z_2^64, {f:?}"
                );
                if let Some(got) = fused::<u32>(&x, &q, b, f) {
                    assert_eq!(got, want, "case {k}, n = {n}, Z_2^32, {f:?}");
                }
                assert_eq!(
                    fused::<u128>(&x, &q, b, f),
                    Some(want.clone()),
                    "case {k}, n = {n}, Z_2^128, {f:?}"
                );
            }
            // And whichever path `requantize` picks.
            let got = secure::<u64>(&x, |p, sh| {
                p.requantize(sh, &q, b, TruncMode::Exact).unwrap()
            });
            assert_eq!(got, want, "case {k}, n = {n}, Z_2^64, preferred path");
        }
    }
}

/// Per-party rounds and bytes of one requantization in `Z_2^W::BITS`, measured and costed.
fn requant_cost_matches<W: crate::word::Word>(q: &crate::Requant, b: Bounds) -> usize {
    requant_cost_matches_favoring::<W>(q, b, Favor::Bytes)
}

/// [`requant_cost_matches`] with the trees cut for `favor`.
fn requant_cost_matches_favoring<W: crate::word::Word>(
    q: &crate::Requant,
    b: Bounds,
    favor: Favor,
) -> usize {
    use crate::cost::per_party;
    let n = q.num.len();
    let x = values(n, b.lo, b.hi, 5);
    let stats = run3::<W, _>(|p| {
        p.favor = favor;
        let mine = (p.party() == 1).then_some(&x[..]);
        let s = p.input(1, mine, n).unwrap();
        let before = p.stats();
        p.requantize(&s, q, b, TruncMode::Exact).unwrap();
        let after = p.stats();
        (
            after.rounds - before.rounds,
            after.bytes_sent - before.bytes_sent,
        )
    });
    let rounds = Rep3Costs {
        ring_bits: W::BITS,
        favor,
    }
    .requantize(q, b, TruncMode::Exact)
    .unwrap();
    let want = per_party(&rounds, 3);
    for (i, (r, bytes)) in stats.into_iter().enumerate() {
        assert_eq!(
            (r, bytes),
            (want[i].rounds, want[i].bytes_sent),
            "party {i}, Z_2^{}",
            W::BITS
        );
    }
    rounds.len()
}

#[test]
fn fused_requantization_costs_equal_the_run() {
    use crate::Requant;
    let n = 37;
    let b = Bounds {
        lo: -5000,
        hi: 7000,
    };
    let q = |den: i64| Requant {
        num: vec![1234567; n],
        den: vec![den; n],
        zp: vec![3; n],
        lo: -128,
        hi: 127,
    };
    let rounds = requant_cost_matches::<u128>(&q(1 << 28), b);
    // Eight units: a level of pairs, then the last four at once.
    assert_eq!(rounds, 5, "open, 2 tree levels, open bits, reshare");
    assert_eq!(requant_cost_matches::<u64>(&q(1 << 28), b), 5);
    // Z_2^32 with a shift the opening cannot cover: two sets of borrow tables.
    assert_eq!(requant_cost_matches::<u32>(&q(1 << 34), b), 5);
    // A divisor that is not a power of two: two sets of borrow tables in every ring.
    assert_eq!(requant_cost_matches::<u64>(&q(49 * 12_582_917), b), 5);
    assert_eq!(requant_cost_matches::<u32>(&q(15 << 20), b), 5);
    // Four units (a 15-bit shift): the tree is one round.
    assert_eq!(requant_cost_matches::<u64>(&q(1 << 15), b), 4);
    // Favouring rounds, every one of them ends its tree in one round (up to seven units of
    // six bits: a borrow of 42 bits), and the cost twins cut theirs the same way.
    let rounds = |den: i64, bits: u32| {
        let q = q(den);
        match bits {
            32 => requant_cost_matches_favoring::<u32>(&q, b, Favor::Rounds),
            64 => requant_cost_matches_favoring::<u64>(&q, b, Favor::Rounds),
            _ => requant_cost_matches_favoring::<u128>(&q, b, Favor::Rounds),
        }
    };
    assert_eq!(rounds(1 << 28, 128), 4);
    assert_eq!(rounds(1 << 28, 64), 4);
    assert_eq!(rounds(1 << 34, 32), 4);
    assert_eq!(rounds(49 * 12_582_917, 64), 4);
    assert_eq!(rounds(15 << 20, 32), 4);
    assert_eq!(rounds(1 << 15, 64), 4);
    // A 44-bit borrow takes eight units: a level of pairs again.
    assert_eq!(rounds(1 << 43, 128), 5);
}

/// A product requantized from its unreshared parts equals the product, the bias and the
/// requantization one after the other (bit-exact against `clear`), takes the
/// requantization's rounds alone, and costs what it sends.
fn product_requantization_matches<W: Word>(den: i64, per_channel: bool) {
    use crate::cost::{per_party, Call, Costs};
    let d = MatDims {
        batch: 2,
        m: 4,
        k: 9,
        n: 5,
        a_batched: true,
        b_batched: true,
    };
    let (na, nb, nz) = (
        d.batch * d.m * d.k,
        d.batch * d.k * d.n,
        d.batch * d.m * d.n,
    );
    let a = values(na, -128, 127, 21);
    let b = values(nb, -128, 127, 22);
    let bias = values(nz, -3000, 3000, 23);
    let bounds = Bounds {
        lo: -(9 * 128 * 128) - 3000,
        hi: 9 * 128 * 128 + 3000,
    };
    let num = |i: usize| {
        if per_channel {
            1234567 + 1000 * (i % 4) as i64
        } else {
            1234567
        }
    };
    let q = Requant {
        num: (0..nz).map(num).collect(),
        den: vec![den; nz],
        zp: vec![3; nz],
        lo: -128,
        hi: 127,
    };
    let mut c = Clear;
    let want = c
        .product_requantize(&a, &b, d, &bias, &q, bounds, TruncMode::Exact)
        .unwrap();
    let prod = c.matmul(&a, &b, d).unwrap();
    let z = c.add(&prod, &bias);
    assert_eq!(want, (0..nz).map(|i| q.apply(i, z[i])).collect::<Vec<_>>());
    let out = run3::<W, _>(|p| {
        let me = p.party();
        let sa = p.input(0, (me == 0).then_some(&a[..]), na).unwrap();
        let sb = p.input(2, (me == 2).then_some(&b[..]), nb).unwrap();
        let sc = p.input(1, (me == 1).then_some(&bias[..]), nz).unwrap();
        let before = p.stats();
        let y = p
            .product_requantize(&sa, &sb, d, &sc, &q, bounds, TruncMode::Exact)
            .unwrap();
        let after = p.stats();
        let cost = (
            after.rounds - before.rounds,
            after.bytes_sent - before.bytes_sent,
        );
        (p.reveal(&y, 0).unwrap(), cost)
    });
    assert_eq!(out[0].0.as_ref(), Some(&want), "Z_2^{}", W::BITS);
    let costs = Rep3Costs::new(W::BITS);
    let fused = costs
        .rounds(Call::ProductRequantize {
            dims: d,
            q: &q,
            bounds,
            mode: TruncMode::Exact,
        })
        .unwrap();
    let alone = costs.requantize(&q, bounds, TruncMode::Exact).unwrap();
    assert_eq!(fused.len(), alone.len(), "no round for the product");
    for (i, (party, f)) in out.iter().zip(per_party(&fused, 3)).enumerate() {
        assert_eq!(
            party.1,
            (f.rounds, f.bytes_sent),
            "party {i}, Z_2^{}",
            W::BITS
        );
    }
}

#[test]
fn product_requantization_opens_the_unreshared_product() {
    product_requantization_matches::<u64>(1 << 28, false);
    product_requantization_matches::<u64>(1 << 28, true);
    product_requantization_matches::<u32>(1 << 34, true);
    product_requantization_matches::<u128>(1 << 28, false);
    // A divisor that is not a power of two: two sets of borrow tables.
    product_requantization_matches::<u64>(49 * 12_582_917, true);
}

/// Shares of `x` in Z_2^64 that are right only modulo 2^32: every component gets its own
/// multiple of 2^32 (the same at both of its holders), as a narrow register's shares are.
fn garbled<W: Word>(p: &Rep3<W>, x: &Pair<W>, seed: u64) -> Pair<W> {
    let junk = |j: usize, e: usize| {
        let bits = (seed ^ (j as u64) << 40 ^ e as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        W::from_u128(u128::from(bits) << 32)
    };
    let (ca, cb) = (p.me, (p.me + 1) % 3);
    Pair {
        a: x.a
            .iter()
            .enumerate()
            .map(|(e, v)| v.add(junk(ca, e)))
            .collect(),
        b: x.b
            .iter()
            .enumerate()
            .map(|(e, v)| v.add(junk(cb, e)))
            .collect(),
    }
}

/// The revealed value of a register right only modulo 2^32 (`narrow`), or in the ring.
fn low(v: Vec<i64>, narrow: bool) -> Vec<i64> {
    v.into_iter()
        .map(|x| if narrow { x as i32 as i64 } else { x })
        .collect()
}

/// An opening of `rep3` on narrow operands (right only modulo 2^32, garbage above) with
/// each of its wires: the result equals clear's (modulo 2^32 where it is narrow), and
/// the run sends what the twins with the same wires predict.
fn narrow_case<W: Word>(
    name: &str,
    inputs: &[Vec<i64>],
    wires: Wires,
    call: Call<'_>,
    op: impl Fn(&mut Rep3<W>, &[Pair<W>]) -> Pair<W> + Sync,
    want: &[i64],
) {
    use crate::cost::{per_party, Costs};
    let out = run3::<W, _>(|p| {
        let shares: Vec<Pair<W>> = inputs
            .iter()
            .enumerate()
            .map(|(k, x)| {
                let mine = (p.party() == 1).then_some(&x[..]);
                let s = p.input(1, mine, x.len()).unwrap();
                if wires.narrow_in {
                    garbled(p, &s, k as u64 + 7)
                } else {
                    s
                }
            })
            .collect();
        p.wire = wires;
        let before = p.stats();
        let y = op(p, &shares);
        let after = p.stats();
        p.wire = Wires::default();
        let sent = (
            after.rounds - before.rounds,
            after.bytes_sent - before.bytes_sent,
        );
        (p.reveal(&y, 1).unwrap(), sent)
    });
    let got = low(out[1].0.clone().unwrap(), wires.narrow_out);
    assert_eq!(
        got,
        low(want.to_vec(), wires.narrow_out),
        "{name}, {wires:?}, Z_2^{}",
        W::BITS
    );
    let rounds = Rep3Costs::new(W::BITS).rounds_wired(call, wires).unwrap();
    for (i, (party, f)) in out.iter().zip(per_party(&rounds, 3)).enumerate() {
        assert_eq!(
            party.1,
            (f.rounds, f.bytes_sent),
            "{name}, {wires:?}, party {i}, Z_2^{}",
            W::BITS
        );
    }
}

#[test]
fn narrow_operands_are_read_in_their_low_bits_and_narrow_results_sent_in_32() {
    narrow_cases::<u64>();
    narrow_cases::<u128>();
}

fn narrow_cases<W: Word>() {
    use crate::cost::Call;
    use crate::Requant;
    let n = 40;
    // Uneven dealer groups too (party 0 dealing none, or a sixth), as the VM splits
    // them for a model owner (`crate::wires::Deal`).
    let both = Wires {
        narrow_in: true,
        narrow_out: true,
        deal: crate::wires::Deal::new([1, 2, 3]),
        ..Wires::default()
    };
    let into_wide = Wires {
        narrow_in: true,
        narrow_out: false,
        deal: crate::wires::Deal::new([0, 1, 1]),
        ..Wires::default()
    };
    let out_only = Wires {
        narrow_in: false,
        narrow_out: true,
        ..Wires::default()
    };
    let mut c = Clear;
    // A requantization of int32-like sums whose shift (34) is wider than the narrow
    // words (the narrow opening takes two sets of borrow tables), most results inside
    // the clamp.
    let b = Bounds {
        lo: -(1 << 24),
        hi: 1 << 24,
    };
    let x = values(n, b.lo, b.hi, 31);
    let q = Requant {
        num: (0..n as i64).map(|i| 130_003 + 1000 * (i % 3)).collect(),
        den: vec![1 << 34; n],
        zp: vec![-3; n],
        lo: -128,
        hi: 127,
    };
    let want = c.requantize(&x, &q, b, TruncMode::Exact).unwrap();
    for w in [both, into_wide] {
        let call = Call::Requantize {
            q: &q,
            bounds: b,
            mode: TruncMode::Exact,
        };
        narrow_case::<W>(
            "requantize",
            std::slice::from_ref(&x),
            w,
            call,
            |p, s| p.requantize(&s[0], &q, b, TruncMode::Exact).unwrap(),
            &want,
        );
    }
    // A product requantized from its parts: operands, bias and result narrow.
    let d = MatDims {
        batch: 1,
        m: 4,
        k: 9,
        n: 10,
        a_batched: true,
        b_batched: true,
    };
    let (xa, xb, bias) = (
        values(36, -128, 127, 32),
        values(90, -128, 127, 33),
        values(n, -3000, 3000, 34),
    );
    let pb = Bounds {
        lo: -(9 * 128 * 128) - 3000,
        hi: 9 * 128 * 128 + 3000,
    };
    let want = c
        .product_requantize(&xa, &xb, d, &bias, &q, pb, TruncMode::Exact)
        .unwrap();
    for w in [both, into_wide] {
        let call = Call::ProductRequantize {
            dims: d,
            q: &q,
            bounds: pb,
            mode: TruncMode::Exact,
        };
        narrow_case::<W>(
            "product_requantize",
            &[xa.clone(), xb.clone(), bias.clone()],
            w,
            call,
            |p, s| {
                p.product_requantize(&s[0], &s[1], d, &s[2], &q, pb, TruncMode::Exact)
                    .unwrap()
            },
            &want,
        );
    }
    // Selections (their results are their operands) and a lookup.
    let v = values(n, -300, 300, 35);
    let u = values(n, -300, 300, 36);
    let vb = Bounds { lo: -300, hi: 300 };
    let clamped = c.clamp(&v, -128, 127, vb).unwrap();
    narrow_case::<W>(
        "clamp",
        std::slice::from_ref(&v),
        both,
        Call::Clamp {
            len: n,
            lo: -128,
            hi: 127,
            bounds: vb,
        },
        |p, s| p.clamp(&s[0], -128, 127, vb).unwrap(),
        &clamped,
    );
    let maxed = c.max(&v, &u, vb).unwrap();
    narrow_case::<W>(
        "max",
        &[v.clone(), u.clone()],
        both,
        Call::Max { len: n, bounds: vb },
        |p, s| p.max(&s[0], &s[1], vb).unwrap(),
        &maxed,
    );
    let am = c.argmax(&v, 8, false, vb).unwrap();
    narrow_case::<W>(
        "argmax",
        std::slice::from_ref(&v),
        both,
        Call::Argmax {
            len: n,
            row_len: 8,
            select_last: false,
            bounds: vb,
        },
        |p, s| p.argmax(&s[0], 8, false, vb).unwrap(),
        &am,
    );
    let table: Vec<i64> = (0..601).map(|i| (i * i) % 1000 - 400).collect();
    let looked = c.lookup(&v, &table, -300).unwrap();
    for w in [both, into_wide] {
        narrow_case::<W>(
            "lookup",
            std::slice::from_ref(&v),
            w,
            crate::cost::lookup_call(n, &table),
            |p, s| p.lookup(&s[0], &table, -300).unwrap(),
            &looked,
        );
    }
    // Products: narrow results from narrow or full operands.
    let prod = c.mul(&v, &u).unwrap();
    for w in [both, out_only] {
        narrow_case::<W>(
            "mul",
            &[v.clone(), u.clone()],
            w,
            Call::Mul { len: n },
            |p, s| Core::mul(p, &s[0], &s[1]).unwrap(),
            &prod,
        );
    }
    // A negative multiplier takes the unfused path (a product, then a masked division
    // that reads it whole) even where the result is narrow.
    let neg = Requant {
        num: vec![-14_600_003; n],
        den: vec![1 << 34; n],
        ..q.clone()
    };
    let want = c
        .product_requantize(&xa, &xb, d, &bias, &neg, pb, TruncMode::Exact)
        .unwrap();
    narrow_case::<W>(
        "product_requantize, negative multiplier",
        &[xa.clone(), xb.clone(), bias.clone()],
        out_only,
        Call::ProductRequantize {
            dims: d,
            q: &neg,
            bounds: pb,
            mode: TruncMode::Exact,
        },
        |p, s| {
            p.product_requantize(&s[0], &s[1], d, &s[2], &neg, pb, TruncMode::Exact)
                .unwrap()
        },
        &want,
    );
    let mm = c.matmul(&xa, &xb, d).unwrap();
    narrow_case::<W>(
        "matmul",
        &[xa.clone(), xb.clone()],
        both,
        Call::MatMul(d),
        |p, s| Core::matmul(p, &s[0], &s[1], d).unwrap(),
        &mm,
    );
}

/// Privacy: what a party receives must not depend on secrets it is not entitled to.
mod view {
    use super::*;
    use crate::testutil::{assert_views_independent, CoalitionCoins, Recorder};
    use std::sync::{Arc, Mutex};

    /// Every party runs `f` (its id, its party) over a transport that records what it
    /// receives; returns each party's record.
    fn recorded<W: Word>(
        coins: &CoalitionCoins,
        f: impl Fn(PartyId, &mut Rep3<W>) + Sync,
    ) -> Vec<Vec<u8>> {
        on_three(|i, mesh| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let rec = Recorder {
                inner: Box::new(mesh),
                seen: seen.clone(),
            };
            let mut p = Rep3::<W>::setup_with_coins(Box::new(rec), coins).unwrap();
            f(i, &mut p);
            drop(p);
            let v = seen.lock().unwrap().clone();
            v
        })
    }

    /// One run of every non-linear primitive on `x`, input by `owner` and revealed to
    /// `owner`; returns what each party received.
    fn views(x: &[i64], owner: PartyId, coins: &CoalitionCoins) -> Vec<Vec<u8>> {
        let b = Bounds { lo: -100, hi: 100 };
        let table: Vec<i64> = (0..201).map(|i| (i * 7) % 13).collect();
        recorded::<u128>(coins, |i, p| {
            let n = x.len();
            let v = p.input(owner, (i == owner).then_some(x), n).unwrap();
            let sq = p.mul(&v, &v).unwrap();
            let sq_bounds = Bounds { lo: 0, hi: 10000 };
            let r = p
                .rescale(&sq, &vec![3; n], &vec![7; n], sq_bounds, TruncMode::Exact)
                .unwrap();
            let c = p.clamp(&v, -20, 20, b).unwrap();
            let rq = crate::Requant {
                num: vec![77; n],
                den: vec![1 << 9; n],
                zp: vec![-3; n],
                lo: -10,
                hi: 9,
            };
            let f = p.requantize(&sq, &rq, sq_bounds, TruncMode::Exact).unwrap();
            let m = p.max(&v, &c, b).unwrap();
            let a = p.argmax(&v, 4, false, b).unwrap();
            // The one-hot construction (the default), and whole rotated tables.
            let t = p.lookup(&v, &table, -100).unwrap();
            let shape = super::super::lookup::Shape::new(&table).unwrap();
            let oh = super::super::lookup::lookup_rotated(p, shape, &reps(&v), &table, -100);
            let oh = planes(oh.unwrap());
            let pr = product_requantized(p, &v, &c, &rq);
            for y in [r, m, a, t, oh, f, pr] {
                p.reveal(&y, owner).unwrap();
            }
        })
    }

    /// `requant(v·c_0 + v)` from the product's unreshared parts (`v` in [−100, 100], `c`
    /// in [−20, 20]).
    fn product_requantized<W: Word>(
        p: &mut Rep3<W>,
        v: &Pair<W>,
        c: &Pair<W>,
        rq: &crate::Requant,
    ) -> Pair<W> {
        let n = v.len();
        let d = MatDims {
            batch: 1,
            m: n,
            k: 1,
            n: 1,
            a_batched: false,
            b_batched: false,
        };
        let b = Bounds {
            lo: -2100,
            hi: 2100,
        };
        p.product_requantize(v, &c.slice(0..1), d, v, rq, b, TruncMode::Exact)
            .unwrap()
    }

    /// A requantization of `n` squares whose shift (36) is wider than a 32-bit opening:
    /// the borrow tables of both readings of the mask.
    fn wide_shift(n: usize) -> crate::Requant {
        crate::Requant {
            num: vec![77 << 27; n],
            den: vec![1 << 36; n],
            zp: vec![-3; n],
            lo: -10,
            hi: 9,
        }
    }

    /// A requantization whose shift is wider than the opening (both readings of the
    /// mask), one by an odd divisor, a clamp and a max, input and revealed at `owner`.
    fn wide_and_odd<W: Word>(p: &mut Rep3<W>, i: PartyId, x: &[i64], owner: PartyId) {
        let b = Bounds { lo: -100, hi: 100 };
        let n = x.len();
        let v = p.input(owner, (i == owner).then_some(x), n).unwrap();
        let sq = p.mul(&v, &v).unwrap();
        let sq_bounds = Bounds { lo: 0, hi: 10000 };
        let rq = wide_shift(n);
        let f = p.requantize(&sq, &rq, sq_bounds, TruncMode::Exact).unwrap();
        // An odd divisor whose masked division would not fit Z_2^32: the fused path with
        // both readings' borrow tables.
        let odd = crate::Requant {
            num: vec![12_582_917; n],
            den: vec![3 * 12_582_917; n],
            zp: vec![1; n],
            lo: -128,
            hi: 2000,
        };
        let g = p
            .requantize(&sq, &odd, sq_bounds, TruncMode::Exact)
            .unwrap();
        let c = p.clamp(&v, -20, 20, b).unwrap();
        let m = p.max(&v, &c, b).unwrap();
        let pr = product_requantized(p, &v, &c, &rq);
        for y in [f, g, m, pr] {
            p.reveal(&y, owner).unwrap();
        }
    }

    /// The same for the Z_2^32 paths ([`wide_and_odd`]).
    fn views32(x: &[i64], owner: PartyId, coins: &CoalitionCoins) -> Vec<Vec<u8>> {
        recorded::<u32>(coins, |i, p| wide_and_odd(p, i, x, owner))
    }

    /// The same on narrow wires (Z_2^64, results sent in 32-bit words): the input, a
    /// product, requantizations of narrow operands into a narrow and a wide result (a
    /// shift wider than the opening: both readings' tables), a clamp, a max, a lookup and
    /// a product's requantization, all narrow; with uneven dealer groups (the split the
    /// VM makes for a model owner, `crate::wires::Deal`).
    fn views_narrow(x: &[i64], owner: PartyId, coins: &CoalitionCoins) -> Vec<Vec<u8>> {
        let b = Bounds { lo: -100, hi: 100 };
        let table: Vec<i64> = (0..201).map(|i| (i * 7) % 13).collect();
        let wires = |narrow_in, narrow_out| Wires {
            narrow_in,
            narrow_out,
            deal: crate::wires::Deal::new([1, 2, 3]),
            ..Wires::default()
        };
        recorded::<u64>(coins, |i, p| {
            let n = x.len();
            p.wire = wires(false, true);
            let v = p.input(owner, (i == owner).then_some(x), n).unwrap();
            p.wire = wires(true, true);
            let sq = p.mul(&v, &v).unwrap();
            let sq_bounds = Bounds { lo: 0, hi: 10000 };
            let rq = wide_shift(n);
            let f = p.requantize(&sq, &rq, sq_bounds, TruncMode::Exact).unwrap();
            let c = p.clamp(&v, -20, 20, b).unwrap();
            let m = p.max(&v, &c, b).unwrap();
            let t = p.lookup(&v, &table, -100).unwrap();
            let pr = product_requantized(p, &v, &c, &rq);
            p.wire = wires(true, false);
            let g = p.requantize(&sq, &rq, sq_bounds, TruncMode::Exact).unwrap();
            p.wire = Wires::default();
            for y in [f, m, t, pr, g] {
                p.reveal(&y, owner).unwrap();
            }
        })
    }

    /// Pending results ([`Wires::pending_out`]): a requantization and a product's
    /// requantization left as their evaluators' parts, summed with the input, then
    /// requantized and looked up from those parts, the lookup's result left pending and
    /// requantized; uneven dealer groups, Z_2^64.
    fn views_pending(x: &[i64], owner: PartyId, coins: &CoalitionCoins) -> Vec<Vec<u8>> {
        let table: Vec<i64> = (0..20).map(|i| (i * 7) % 13).collect();
        let wires = |pending_out| Wires {
            deal: crate::wires::Deal::new([1, 2, 3]),
            pending_out,
            ..Wires::default()
        };
        recorded::<u64>(coins, |i, p| {
            let n = x.len();
            let v = p.input(owner, (i == owner).then_some(x), n).unwrap();
            let sq = p.mul(&v, &v).unwrap();
            let sq_bounds = Bounds { lo: 0, hi: 10000 };
            let rq = wide_shift(n);
            p.wire = wires(true);
            let f = p.requantize(&sq, &rq, sq_bounds, TruncMode::Exact).unwrap();
            let c = p.clamp(&v, -20, 20, Bounds { lo: -100, hi: 100 }).unwrap();
            let pr = product_requantized(p, &v, &c, &rq);
            p.wire = wires(false);
            let sum = p.add(&p.add(&f, &pr), &v);
            let g = p
                .requantize(&sum, &rq, Bounds { lo: -120, hi: 120 }, TruncMode::Exact)
                .unwrap();
            p.wire = wires(true);
            let t = p.lookup(&f, &table, -10).unwrap();
            p.wire = wires(false);
            let u = p
                .requantize(&t, &rq, Bounds { lo: 0, hi: 12 }, TruncMode::Exact)
                .unwrap();
            p.wire = Wires::default();
            for y in [g, u] {
                p.reveal(&y, owner).unwrap();
            }
        })
    }

    /// Favouring rounds ([`Favor::Rounds`]): the requantizations' trees end in one level
    /// of up to seven units (a 37-bit borrow with both readings' tables, an odd divisor),
    /// and the sign tests' too ([`wide_and_odd`] in Z_2^64).
    fn views_rounds(x: &[i64], owner: PartyId, coins: &CoalitionCoins) -> Vec<Vec<u8>> {
        recorded::<u64>(coins, |i, p| {
            p.favor = Favor::Rounds;
            wide_and_odd(p, i, x, owner)
        })
    }

    /// Each party in each role: for every owner of the input (who also receives the
    /// outputs), each other party alone, its own keys fixed, must receive nothing that
    /// depends on the input.
    #[test]
    fn views_do_not_depend_on_the_secret_input() {
        let xa: Vec<i64> = vec![-100, -3, 0, 5, 99, 100, 17, -64];
        let xb: Vec<i64> = vec![100, 42, -77, 0, -1, 1, -100, 63];
        const RUNS: usize = 100;
        for owner in 0..3 {
            for watched in (0..3).filter(|&p| p != owner) {
                let coins = CoalitionCoins {
                    coalition: vec![watched],
                };
                let run = |x: &[i64]| -> Vec<u8> {
                    let (v, v32) = (views(x, owner, &coins), views32(x, owner, &coins));
                    let vn = views_narrow(x, owner, &coins);
                    let vp = views_pending(x, owner, &coins);
                    let vr = views_rounds(x, owner, &coins);
                    [
                        v[watched].clone(),
                        v32[watched].clone(),
                        vn[watched].clone(),
                        vp[watched].clone(),
                        vr[watched].clone(),
                    ]
                    .concat()
                };
                let va: Vec<Vec<u8>> = (0..RUNS).map(|_| run(&xa)).collect();
                let vb: Vec<Vec<u8>> = (0..RUNS).map(|_| run(&xb)).collect();
                assert_views_independent(
                    &va,
                    &vb,
                    &xa,
                    &xb,
                    &format!("party {watched} (input and outputs at party {owner})"),
                );
            }
        }
    }
}

/// `rep3`'s functionalities override [`crate::func`]'s defaults; the defaults run on
/// `rep3` too (its selection is its exact requantization). Each override gives the
/// default's result bit for bit, in no more rounds and bytes for any party.
#[test]
fn overrides_match_the_generic_defaults_and_cost_no_more() {
    use crate::func::{self, Selection};
    type Op = dyn Fn(&mut Rep3<u64>, &Pair<u64>, bool) -> Pair<u64> + Sync;
    let n = 64;
    let wide = Bounds {
        lo: -(1 << 20),
        hi: 1 << 20,
    };
    let small = Bounds { lo: -300, hi: 300 };
    let q = Requant {
        num: vec![1358385; n],
        den: vec![1 << 30; n],
        zp: vec![-3; n],
        lo: -128,
        hi: 127,
    };
    let (num, den) = (vec![3; n], vec![8; n]);
    let cases: Vec<(&str, Bounds, Box<Op>)> = vec![
        (
            "requantize",
            wide,
            Box::new(move |p, s, own| {
                if own {
                    Selection::requantize(p, s, &q, wide, TruncMode::Exact).unwrap()
                } else {
                    func::requantize(p, s, &q, wide).unwrap()
                }
            }),
        ),
        (
            "rescale",
            small,
            Box::new(move |p, s, own| {
                if own {
                    Selection::rescale(p, s, &num, &den, small, TruncMode::Exact).unwrap()
                } else {
                    func::rescale(p, s, &num, &den, small).unwrap()
                }
            }),
        ),
        (
            "clamp",
            small,
            Box::new(move |p, s, own| {
                if own {
                    Selection::clamp(p, s, -128, 127, small).unwrap()
                } else {
                    func::clamp(p, s, -128, 127, small).unwrap()
                }
            }),
        ),
        (
            // Nothing strictly between the bounds: one sign test (a comparison's bit).
            "clamp to two neighbours",
            small,
            Box::new(move |p, s, own| {
                if own {
                    Selection::clamp(p, s, -1, 0, small).unwrap()
                } else {
                    func::clamp(p, s, -1, 0, small).unwrap()
                }
            }),
        ),
        (
            "max",
            small,
            Box::new(move |p, s, own| {
                let (a, b) = (&s.slice(0..n / 2), &s.slice(n / 2..n));
                if own {
                    Selection::max(p, a, b, small).unwrap()
                } else {
                    func::max(p, a, b, small).unwrap()
                }
            }),
        ),
        (
            "argmax",
            small,
            Box::new(move |p, s, own| {
                if own {
                    Selection::argmax(p, s, 8, false, small).unwrap()
                } else {
                    func::argmax(p, s, 8, false, small).unwrap()
                }
            }),
        ),
    ];
    for (name, b, op) in &cases {
        let x = values(n, b.lo, b.hi, 31);
        let out = run3::<u64, _>(|p| {
            let s = p.input(1, (p.party() == 1).then_some(&x[..]), n).unwrap();
            let before = p.net.stats();
            let own = op(p, &s, true);
            let mid = p.net.stats();
            let default = op(p, &s, false);
            let after = p.net.stats();
            let cost = |from: crate::net::Stats, to: crate::net::Stats| {
                (to.rounds - from.rounds, to.bytes_sent - from.bytes_sent)
            };
            let figures = (cost(before, mid), cost(mid, after));
            let own = p.reveal(&own, 1).unwrap();
            let default = p.reveal(&default, 1).unwrap();
            (own, default, figures)
        });
        assert_eq!(
            out[1].0, out[1].1,
            "{name}: the override differs from the default"
        );
        for (party, (_, _, (own, default))) in out.iter().enumerate() {
            assert!(
                own.0 <= default.0 && own.1 <= default.1,
                "{name}, party {party}: the override costs {own:?} (rounds, bytes), the \
                 default {default:?}"
            );
        }
        eprintln!(
            "{name}: override {:?}, default {:?} (party 0: rounds, bytes)",
            out[0].2 .0, out[0].2 .1
        );
    }
}

/// `rep3`'s selections and lookup (the third party as dealer, [`super::assist`],
/// [`super::masked`]) against the generic ones over its dealer-free gate set: the same
/// results, bit for bit, and never more bytes (a fifth to a fiftieth of them). Never more
/// rounds either, but for a requantization by divisors that are not powers of two where
/// the masked division fits the ring (`fused_plan` prefers its fewer bytes): a masked
/// division, then a clamp, 15 rounds against the generic one's 11-12.
#[test]
fn the_functionalities_match_the_generic_ones_and_cost_no_more() {
    use crate::func::gates::Generic;
    use crate::testutil::{on_mesh, Call, Script};
    let (x, y, calls) = crate::testutil::generic_cases(24, 31);
    for call in &calls {
        let s = crate::testutil::one_call(&x, &y, call);
        let own = on_mesh(3, "rep3", |_, mesh| {
            let mut p = Rep3::<u64>::setup(Box::new(mesh)).unwrap();
            let r = s.run(&mut p).unwrap();
            (r, p.stats())
        });
        let generic = on_mesh(3, "rep3", |_, mesh| {
            let mut p = Generic(Rep3::<u64>::setup(Box::new(mesh)).unwrap());
            let r = s.run(&mut p).unwrap();
            (r, p.0.stats())
        });
        let what = format!("{call:?}");
        crate::testutil::assert_agrees(&own, &generic, call, &x, &y, &what);
        for i in 0..3 {
            let (o, g) = (own[i].1, generic[i].1);
            let slack = match call {
                Call::Requant(q, _) if q.den.iter().any(|&d| d & (d - 1) != 0) => 4,
                _ => 0,
            };
            assert!(
                o.rounds <= g.rounds + slack && o.bytes_sent <= g.bytes_sent,
                "party {i}: {o:?} against the generic {g:?}, {what}"
            );
        }
    }
}

/// A split that gives party 0 no dealing takes the dealer's bytes off it (it sends
/// only what an evaluator sends) and onto the others, the result unchanged and the cost
/// still what is sent.
#[test]
fn an_uneven_deal_moves_the_dealers_bytes() {
    use crate::cost::{per_party, Call, Costs};
    use crate::wires::Deal;
    use crate::Requant;
    let n = 60;
    let b = Bounds {
        lo: -(1 << 24),
        hi: 1 << 24,
    };
    let x = values(n, b.lo, b.hi, 41);
    let q = Requant {
        num: vec![130_003; n],
        den: vec![1 << 34; n],
        zp: vec![-3; n],
        lo: -128,
        hi: 127,
    };
    let want: Vec<i64> = x.iter().enumerate().map(|(i, &v)| q.apply(i, v)).collect();
    let sent = |deal: Deal| {
        let wires = Wires {
            deal,
            ..Wires::default()
        };
        let out = run3::<u64, _>(|p| {
            let mine = (p.party() == 1).then_some(&x[..]);
            let s = p.input(1, mine, n).unwrap();
            p.wire = wires;
            let before = p.stats().bytes_sent;
            let y = p.requantize(&s, &q, b, TruncMode::Exact).unwrap();
            let sent = p.stats().bytes_sent - before;
            p.wire = Wires::default();
            (p.reveal(&y, 1).unwrap(), sent)
        });
        assert_eq!(out[1].0.as_deref(), Some(&want[..]), "{deal:?}");
        let call = Call::Requantize {
            q: &q,
            bounds: b,
            mode: TruncMode::Exact,
        };
        let cost = per_party(&Rep3Costs::new(64).rounds_wired(call, wires).unwrap(), 3);
        let sent: Vec<u64> = out.iter().map(|o| o.1).collect();
        assert_eq!(
            sent,
            cost.iter().map(|c| c.bytes_sent).collect::<Vec<_>>(),
            "{deal:?}"
        );
        sent
    };
    let thirds = sent(Deal::default());
    let none = sent(Deal::new([0, 1, 1]));
    assert!(none[0] * 2 < thirds[0], "{none:?} against {thirds:?}");
    assert!(
        none[1] > thirds[1] && none[2] > thirds[2],
        "{none:?} against {thirds:?}"
    );
}

/// A requantization (of shares, and of a product's parts) left pending
/// ([`Wires::pending_out`]: the evaluators' parts, no resharing), then the local steps of a
/// residual `Add` (zero points, public factors, a sum of the two pending results and
/// replicated shares) and a requantization and a lookup that open them, the lookup's
/// result pending too and opened by a last requantization: equal to clear,
/// with uneven dealer groups, in Z_2^32, Z_2^64 and on narrow wires; every call sends
/// what its twin predicts, and leaving a result pending saves its resharing (a round, and
/// a word per element from each evaluator).
#[test]
fn pending_results_open_after_local_steps() {
    pending_case::<u32>(false);
    pending_case::<u64>(false);
    pending_case::<u64>(true);
}

fn pending_case<W: Word>(narrow: bool) {
    use crate::cost::{per_party, Costs, PartyCost};
    use crate::wires::Deal;
    let n = 40;
    let deal = Deal::new([1, 2, 3]);
    let wire = |pending_out| Wires {
        narrow_in: narrow,
        narrow_out: narrow,
        deal,
        pending_out,
    };
    let mut c = Clear;
    let b = Bounds {
        lo: -(1 << 20),
        hi: 1 << 20,
    };
    let x = values(n, b.lo, b.hi, 51);
    let skip = values(n, -128, 127, 52);
    let q1 = Requant {
        num: (0..n as i64).map(|i| 130_003 + 977 * (i % 5)).collect(),
        den: vec![1 << 26; n],
        zp: vec![5; n],
        lo: -128,
        hi: 127,
    };
    // A product `[n × 3] · [3 × 1]` for the product's requantization.
    let d = MatDims {
        batch: 1,
        m: n,
        k: 3,
        n: 1,
        a_batched: false,
        b_batched: false,
    };
    let (pa, pb) = (values(3 * n, -128, 127, 53), values(3, -128, 127, 54));
    let zero = vec![0; n];
    let pbounds = Bounds {
        lo: -3 * 128 * 128,
        hi: 3 * 128 * 128,
    };
    let q2 = Requant {
        num: vec![2_000_003; n],
        den: vec![1 << 20; n],
        ..q1.clone()
    };
    let f = [1_000_003, 700_001, 900_007];
    let yb = Bounds {
        lo: -133 * (f[0] + f[1] + f[2]),
        hi: 133 * (f[0] + f[1] + f[2]),
    };
    let q3 = Requant {
        num: vec![1; n],
        den: vec![1 << 22; n],
        zp: vec![-1; n],
        lo: -128,
        hi: 127,
    };
    let table: Vec<i64> = (0..256).map(|i| (i * i) % 509 - 200).collect();
    // The lookup's result, left pending too, times 5 after a zero point.
    let lb = Bounds {
        lo: -1015,
        hi: 1525,
    };
    let q4 = Requant {
        num: vec![3; n],
        den: vec![16; n],
        zp: vec![0; n],
        lo: -128,
        hi: 127,
    };
    let want = {
        let r1 = c.requantize(&x, &q1, b, TruncMode::Exact).unwrap();
        let r2 = c
            .product_requantize(&pa, &pb, d, &zero, &q2, pbounds, TruncMode::Exact)
            .unwrap();
        let y: Vec<i64> = (0..n)
            .map(|i| (r1[i] - 5) * f[0] + (r2[i] - 5) * f[1] + (skip[i] + 2) * f[2])
            .collect();
        let out = c.requantize(&y, &q3, yb, TruncMode::Exact).unwrap();
        let looked: Vec<i64> = c
            .lookup(&r1, &table, -128)
            .unwrap()
            .iter()
            .map(|v| (v - 3) * 5)
            .collect();
        (
            out,
            c.requantize(&looked, &q4, lb, TruncMode::Exact).unwrap(),
        )
    };
    let scalar = |v: i64| vec![v; n];
    let out = run3::<W, _>(|p| {
        let input = |p: &mut Rep3<W>, v: &[i64]| {
            let mine = (p.party() == 1).then_some(v);
            p.input(1, mine, v.len()).unwrap()
        };
        let (xs, ss, pas, pbs) = (input(p, &x), input(p, &skip), input(p, &pa), input(p, &pb));
        let zs = p.public(&zero);
        let mut sent = Vec::new();
        let mut step = |p: &mut Rep3<W>, pending: bool, f: &dyn Fn(&mut Rep3<W>) -> Pair<W>| {
            p.wire = wire(pending);
            let before = p.stats();
            let y = f(p);
            let after = p.stats();
            p.wire = Wires::default();
            sent.push((
                after.rounds - before.rounds,
                after.bytes_sent - before.bytes_sent,
            ));
            y
        };
        let r1 = step(p, true, &|p| {
            p.requantize(&xs, &q1, b, TruncMode::Exact).unwrap()
        });
        let r2 = step(p, true, &|p| {
            p.product_requantize(&pas, &pbs, d, &zs, &q2, pbounds, TruncMode::Exact)
                .unwrap()
        });
        let term = |p: &Rep3<W>, v: &Pair<W>, zp: i64, k: i64| {
            p.mul_public(&p.add_public(v, &scalar(zp)), &scalar(k))
        };
        let y = p.add(&term(p, &r1, -5, f[0]), &term(p, &r2, -5, f[1]));
        let y = p.add(&y, &term(p, &ss, 2, f[2]));
        let o = step(p, false, &|p| {
            p.requantize(&y, &q3, yb, TruncMode::Exact).unwrap()
        });
        let l = step(p, true, &|p| p.lookup(&r1, &table, -128).unwrap());
        let l = term(p, &l, -3, 5);
        let o2 = step(p, false, &|p| {
            p.requantize(&l, &q4, lb, TruncMode::Exact).unwrap()
        });
        (p.reveal(&o, 1).unwrap(), p.reveal(&o2, 1).unwrap(), sent)
    });
    let name = format!("Z_2^{}, narrow {narrow}", W::BITS);
    assert_eq!(
        out[1].0.clone().map(|v| low(v, narrow)),
        Some(low(want.0, narrow)),
        "{name}"
    );
    assert_eq!(
        out[1].1.clone().map(|v| low(v, narrow)),
        Some(low(want.1, narrow)),
        "{name}"
    );
    let costs = Rep3Costs::new(W::BITS);
    let predicted = |call: Call<'_>, pending: bool| -> Vec<PartyCost> {
        per_party(&costs.rounds_wired(call, wire(pending)).unwrap(), 3)
    };
    let calls = [
        Call::Requantize {
            q: &q1,
            bounds: b,
            mode: TruncMode::Exact,
        },
        Call::ProductRequantize {
            dims: d,
            q: &q2,
            bounds: pbounds,
            mode: TruncMode::Exact,
        },
        Call::Requantize {
            q: &q3,
            bounds: yb,
            mode: TruncMode::Exact,
        },
        crate::cost::lookup_call(n, &table),
        Call::Requantize {
            q: &q4,
            bounds: lb,
            mode: TruncMode::Exact,
        },
    ];
    let word = if narrow { 4 } else { W::BYTES as u64 };
    for (k, call) in calls.into_iter().enumerate() {
        let pending = k != 2 && k != 4;
        let want = predicted(call, pending);
        for (i, party) in out.iter().enumerate() {
            assert_eq!(
                party.2[k],
                (want[i].rounds, want[i].bytes_sent),
                "{name}, call {k}, party {i}"
            );
        }
        if pending {
            // The resharing saved: a round, and a word per element the party evaluates
            // (in one message to each of the two other dealers).
            let reshared = predicted(call, false);
            for i in 0..3 {
                let evaluated = (n - deal.range(n, i).len()) as u64;
                let frames = 2 * crate::net::FRAME_HEADER as u64;
                assert_eq!(reshared[i].rounds, want[i].rounds + 1, "{name}, call {k}");
                assert_eq!(
                    reshared[i].bytes_sent,
                    want[i].bytes_sent + evaluated * word + frames,
                    "{name}, call {k}, party {i}"
                );
            }
        }
    }
}

/// Both cuts of the fused requantization over a sweep of shifts and accumulator widths
/// (every unit count from three to eight, powers of two and other divisors, both
/// readings' tables) in Z_2^32 and Z_2^64, against the semantics.
#[test]
fn fused_requantization_sweeps_widths_for_both_favors() {
    use crate::Requant;
    fn fused<W: Word>(x: &[i64], q: &Requant, b: Bounds, f: Favor) -> Option<Vec<i64>> {
        let plan = super::requant::RequantPlan::new(q, b, W::BITS, f)?;
        Some(secure::<W>(x, |p, sh| {
            super::requant::requantize(p, &plan, q, super::requant::Operand::Shares(sh), b).unwrap()
        }))
    }
    let n = 64;
    let mut k = 0u64;
    for s in (10..=40).step_by(3) {
        for bits in [8u32, 14, 20, 24, 27, 31] {
            for dyadic in [true, false] {
                k += 1;
                let b = Bounds {
                    lo: -(1i64 << (bits - 1)),
                    hi: (1i64 << (bits - 1)) - 1,
                };
                let x = values(n, b.lo, b.hi, 1000 + k);
                let nums = values(n, 1, 1 << 23, 2000 + k);
                let den = if dyadic { 1i64 << s } else { (1i64 << s) - 3 };
                let q = Requant {
                    num: nums,
                    den: vec![den; n],
                    zp: values(n, -5, 5, 3000 + k),
                    lo: -128,
                    hi: 127,
                };
                let want: Vec<i64> = x.iter().enumerate().map(|(i, &v)| q.apply(i, v)).collect();
                for f in [Favor::Bytes, Favor::Rounds] {
                    if let Some(got) = fused::<u64>(&x, &q, b, f) {
                        assert_eq!(
                            got, want,
                            "s {s}, bits {bits}, dyadic {dyadic}, {f:?}, Z_2^64"
                        );
                    }
                    if let Some(got) = fused::<u32>(&x, &q, b, f) {
                        assert_eq!(
                            got, want,
                            "s {s}, bits {bits}, dyadic {dyadic}, {f:?}, Z_2^32"
                        );
                    }
                }
            }
        }
    }
}
