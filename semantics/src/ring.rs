//! Plaintext integer semantics shared by every protocol: the reference meaning of each
//! primitive on one value. Secure protocols must reproduce these bit-exactly.

/// `round_half_even(x · num / den)`, exact, for `den > 0`.
///
/// Computed in `i128`, so it is exact whenever `x · num` fits 127 bits, which the compiler's
/// bound analysis guarantees for 64-bit ring values.
pub fn rescale(x: i64, num: i64, den: i64) -> i64 {
    div_round_half_even(x as i128 * num as i128, den as i128) as i64
}

/// `round_half_even(n / d)` for `d > 0`.
pub fn div_round_half_even(n: i128, d: i128) -> i128 {
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d); // 0 <= r < d, n = q·d + r
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
