//! Exact rational arithmetic on quantization scales. Every f32 scale is a dyadic rational,
//! so products and quotients of scales are exact here; requantization multipliers are
//! derived from these without float rounding.

/// `num / den`, `den > 0`, in lowest terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rational {
    pub num: i128,
    pub den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Rational {
    pub fn new(num: i128, den: i128) -> Option<Rational> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        let s = if den < 0 { -1 } else { 1 };
        Some(Rational {
            num: s * num / g,
            den: s * den / g,
        })
    }

    pub fn int(v: i64) -> Rational {
        Rational {
            num: v as i128,
            den: 1,
        }
    }

    /// The exact value of a finite f32 (None for NaN, infinities or extreme exponents).
    pub fn from_f32(x: f32) -> Option<Rational> {
        if !x.is_finite() {
            return None;
        }
        if x == 0.0 {
            return Some(Rational { num: 0, den: 1 });
        }
        let bits = x.to_bits();
        let sign: i128 = if bits >> 31 == 1 { -1 } else { 1 };
        let exp = ((bits >> 23) & 0xff) as i32;
        let frac = (bits & 0x7f_ffff) as i128;
        let (mant, e) = if exp == 0 {
            (frac, -149)
        } else {
            (frac | 0x80_0000, exp - 150)
        };
        if e >= 0 {
            Rational::new(sign * mant.checked_shl(e as u32)?, 1)
        } else if e > -120 {
            Rational::new(sign * mant, 1i128 << (-e))
        } else {
            None
        }
    }

    pub fn checked_mul(self, o: Rational) -> Option<Rational> {
        let g1 = gcd(self.num, o.den).max(1);
        let g2 = gcd(o.num, self.den).max(1);
        Rational::new(
            (self.num / g1).checked_mul(o.num / g2)?,
            (self.den / g2).checked_mul(o.den / g1)?,
        )
    }

    pub fn checked_div(self, o: Rational) -> Option<Rational> {
        if o.num == 0 {
            return None;
        }
        self.checked_mul(Rational {
            num: o.den * o.num.signum(),
            den: o.num.abs(),
        })
    }

    pub fn checked_add(self, o: Rational) -> Option<Rational> {
        let g = gcd(self.den, o.den).max(1);
        let den = (self.den / g).checked_mul(o.den)?;
        let num = self
            .num
            .checked_mul(o.den / g)?
            .checked_add(o.num.checked_mul(self.den / g)?)?;
        Rational::new(num, den)
    }

    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Round to the nearest f32 and take that value exactly.
    pub fn round_f32(self) -> Option<Rational> {
        Rational::from_f32(self.to_f64() as f32)
    }

    /// `floor(self)`.
    pub fn floor(self) -> i128 {
        self.num.div_euclid(self.den)
    }

    /// `ceil(self)`.
    pub fn ceil(self) -> i128 {
        -(-self.num).div_euclid(self.den)
    }

    pub fn is_positive(self) -> bool {
        self.num > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_values_are_exact() {
        assert_eq!(Rational::from_f32(0.5), Some(Rational { num: 1, den: 2 }));
        assert_eq!(Rational::from_f32(3.0), Some(Rational { num: 3, den: 1 }));
        let r = Rational::from_f32(0.1).unwrap();
        assert_eq!(r.to_f64() as f32, 0.1);
        assert_eq!(r.den, 1 << 27);
    }

    #[test]
    fn arithmetic() {
        let a = Rational::new(1, 3).unwrap();
        let b = Rational::new(1, 6).unwrap();
        assert_eq!(a.checked_add(b), Rational::new(1, 2));
        assert_eq!(a.checked_mul(b), Rational::new(1, 18));
        assert_eq!(a.checked_div(b), Rational::new(2, 1));
        assert_eq!(Rational::new(-7, 2).unwrap().floor(), -4);
        assert_eq!(Rational::new(-7, 2).unwrap().ceil(), -3);
    }
}
