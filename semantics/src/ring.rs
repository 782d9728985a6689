//! Plaintext integer semantics shared by every protocol: the reference meaning of each
//! primitive on one value. Secure protocols must reproduce these bit-exactly.

/// `round_half_even(x · num / den)`, exact, for `den > 0`.
///
/// Computed in `i128`, so it is exact whenever `x · num` fits 127 bits, which the compiler's
/// bound analysis guarantees for 64-bit ring values.
pub fn rescale(x: i64, num: i64, den: i64) -> i64 {
    let n = x as i128 * num as i128;
    // The same quotient without a 128-bit division where a cheaper one is exact: a
    // power-of-two divisor (a GEMM's multiplier) is a shift, and a product that fits 64
    // bits divides in 64 (a 128-bit division is a library call of tens of cycles).
    if den > 0 && den & (den - 1) == 0 {
        let s = den.trailing_zeros();
        let (q, r) = (n >> s, n & (den as i128 - 1));
        return round_half_even(q, r, den as i128) as i64;
    }
    match i64::try_from(n) {
        Ok(n) if den > 0 => round_half_even(
            n.div_euclid(den).into(),
            n.rem_euclid(den).into(),
            den.into(),
        ) as i64,
        _ => div_round_half_even(n, den as i128) as i64,
    }
}

/// `round_half_even(n / d)` for `d > 0`.
pub fn div_round_half_even(n: i128, d: i128) -> i128 {
    round_half_even(n.div_euclid(d), n.rem_euclid(d), d)
}

/// The quotient `q` of `n = q·d + r` (`0 ≤ r < d`) rounded half to even by its remainder.
fn round_half_even(q: i128, r: i128, d: i128) -> i128 {
    let twice = 2 * r;
    if twice > d || (twice == d && q & 1 == 1) {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fast path (shift, 64-bit division) equals the 128-bit definition, at ties,
    /// around them and at the edges of the 64-bit product.
    #[test]
    fn fast_paths_equal_the_128_bit_division() {
        let xs = [
            0,
            1,
            -1,
            2,
            -2,
            3,
            5,
            -5,
            7,
            1 << 20,
            -(1 << 31),
            (1 << 40) + 3,
            i64::MAX / 3,
        ];
        let nums = [1, 2, 3, 1_234_567, 12_582_917, 1 << 30, (1 << 40) - 1];
        let dens = [
            1,
            2,
            3,
            4,
            6,
            7,
            8,
            49,
            1 << 20,
            12_582_917,
            (1 << 33) + 1,
            1 << 62,
        ];
        for &x in &xs {
            for &num in &nums {
                for &den in &dens {
                    for x in [x, -x] {
                        let want = div_round_half_even(x as i128 * num as i128, den as i128);
                        assert_eq!(
                            rescale(x, num, den) as i128,
                            want as i64 as i128,
                            "{x}·{num}/{den}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rounds_half_to_even() {
        assert_eq!(rescale(5, 1, 2), 2); // 2.5 -> 2
        assert_eq!(rescale(7, 1, 2), 4); // 3.5 -> 4
        assert_eq!(rescale(-5, 1, 2), -2); // -2.5 -> -2
        assert_eq!(rescale(-7, 1, 2), -4);
        assert_eq!(rescale(10, 1, 3), 3); // 3.33
        assert_eq!(rescale(-10, 1, 3), -3);
        assert_eq!(rescale(11, 1, 3), 4); // 3.67
        assert_eq!(rescale(-11, 1, 3), -4);
        assert_eq!(rescale(3, 3, 2), 4); // 4.5 -> 4
        assert_eq!(
            rescale(i64::MAX / 4, 3, 4),
            ((i64::MAX / 4) as i128 * 3 / 4) as i64
        );
    }

    #[test]
    fn matches_float_rounding_where_float_is_exact() {
        for n in -2000i64..2000 {
            for d in [1i64, 2, 3, 4, 7, 8, 9, 16] {
                let expect = (n as f64 / d as f64).round_ties_even() as i64;
                assert_eq!(rescale(n, 1, d), expect, "{n}/{d}");
            }
        }
    }
}
