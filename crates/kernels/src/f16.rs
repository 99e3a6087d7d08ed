//! IEEE 754 half precision <-> single precision conversion, bit-exact with the
//! hardware (F16C) conversions GGML uses: f32 -> f16 rounds to nearest, ties to
//! even; f16 -> f32 is exact.

/// Converts IEEE half-precision bits to `f32` (exact).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    if exp == 0 {
        // Zero or subnormal: man * 2^-24, exact in f32.
        let v = man as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -v } else { v };
    }
    if exp == 31 {
        return f32::from_bits(sign | 0x7f80_0000 | (man << 13));
    }
    f32::from_bits(sign | ((exp + 112) << 23) | (man << 13))
}

/// Converts `f32` to IEEE half-precision bits, rounding to nearest with ties to
/// even; overflow gives infinity, NaN stays NaN (quiet).
#[inline]
pub fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x007f_ffff;
    if exp == 255 {
        let nan = if man != 0 {
            0x200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 112; // re-biased exponent for f16
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign; // below half the smallest subnormal: rounds to zero
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32; // 14..=24
        let r = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        let r = if rem > half || (rem == half && r & 1 == 1) {
            r + 1
        } else {
            r
        };
        return sign | r as u16;
    }
    let r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let r = if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r + 1
    } else {
        r
    };
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | r as u16
}

/// Reads a little-endian f16 at `b[0..2]` as `f32`.
#[inline]
pub(crate) fn read_f16(b: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_finite_half() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f32_to_f16(f) & 0x7c00 == 0x7c00 && f32_to_f16(f) & 0x3ff != 0);
                continue;
            }
            assert_eq!(f32_to_f16(f), h, "bits {h:#06x} -> {f}");
        }
    }

    #[test]
    fn rounds_ties_to_even_and_overflows() {
        // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties to even (1).
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00);
        // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: ties to even (up).
        assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        // Smallest subnormal is 2^-24; 2^-25 ties to even (zero), a bit more rounds up.
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0);
        assert_eq!(f32_to_f16(2f32.powi(-25) * 1.0001), 1);
        assert_eq!(f16_to_f32(1), 2f32.powi(-24));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn matches_f16c_hardware() {
        if !std::arch::is_x86_feature_detected!("f16c") {
            println!("skipping: no f16c");
            return;
        }
        #[target_feature(enable = "f16c")]
        fn hw(f: f32) -> u16 {
            use std::arch::x86_64::*;
            let v = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(f));
            _mm_extract_epi16::<0>(v) as u16
        }
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2_000_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let f = f32::from_bits(s as u32);
            if f.is_nan() {
                continue;
            }
            // SAFETY: f16c was detected above.
            let want = unsafe { hw(f) };
            assert_eq!(f32_to_f16(f), want, "{f:e}");
        }
    }
}
