//! Kubernetes resource quantities: `500m` CPU, `128Mi` memory, `1.5` CPUs, `1e9` bytes.

/// Parses a quantity into thousandths of its unit (millicores for CPU), rounding up as
/// Kubernetes does.
pub fn parse_milli(q: &str) -> Result<i64, String> {
    scaled(q, 3)
}

/// Parses a quantity into billionths of its unit (nanocores for CPU), rounding up.
pub fn parse_nano(q: &str) -> Result<i64, String> {
    scaled(q, 9)
}

/// Parses a quantity into whole units (bytes for memory), rounding up.
pub fn parse_units(q: &str) -> Result<i64, String> {
    scaled(q, 0)
}

/// A quantity as an exact decimal, `mantissa` x 10^`exp10` x 1024^`bin`: `9m` is 9 x 10^-3,
/// exactly (in floating point 9 x 0.001 x 1000 is 9.000000000000002, which rounds up to 10).
struct Exact {
    mantissa: i128,
    exp10: i32,
    bin: u32,
}

/// The quantity in units of 10^-`exp` of its unit, rounded up.
fn scaled(q: &str, exp: i32) -> Result<i64, String> {
    let x = split(q)?;
    let large = || format!("{q:?} is too large");
    let mut v = x
        .mantissa
        .checked_mul(1024i128.checked_pow(x.bin).ok_or_else(large)?)
        .ok_or_else(large)?;
    let e = x.exp10 + exp;
    if e >= 0 {
        v = 10i128
            .checked_pow(e as u32)
            .and_then(|p| v.checked_mul(p))
            .ok_or_else(large)?;
    } else {
        v = match 10i128.checked_pow(e.unsigned_abs()) {
            Some(p) => (v + p - 1) / p,
            // Smaller than any unit asked for: one unit, rounded up, unless zero.
            None => i128::from(v > 0),
        };
    }
    i64::try_from(v).map_err(|_| large())
}

fn split(q: &str) -> Result<Exact, String> {
    let bad = || format!("{q:?} is not a quantity (examples: \"500m\", \"2\", \"128Mi\", \"1G\")");
    let q = q.trim();
    let digits_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(digits_end);
    if num.starts_with('-') {
        return Err(format!("{q:?} must not be negative"));
    }
    let num = num.strip_prefix('+').unwrap_or(num);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(bad());
    }
    let all = format!("{int}{frac}");
    let all = all.trim_start_matches('0');
    if all.len() > 30 {
        return Err(format!("{q:?} is too large"));
    }
    let mantissa: i128 = if all.is_empty() {
        0
    } else {
        all.parse().map_err(|_| bad())?
    };
    let (exp10, bin) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| bad())?;
            if exp.abs() > 40 {
                return Err(bad());
            }
            (exp, 0)
        }
        _ => return Err(bad()),
    };
    Ok(Exact {
        mantissa,
        exp10: exp10 - frac.len() as i32,
        bin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores() {
        for (q, m) in [
            ("500m", 500),
            ("1", 1000),
            ("0.5", 500),
            ("2.25", 2250),
            ("1m", 1),
            // Exact, not floating point: 9m is 9m, not 10m.
            ("9m", 9),
            ("0.1", 100),
            ("9000000n", 9),
            ("9000001n", 10),
            ("1e-3", 1),
        ] {
            assert_eq!(parse_milli(q), Ok(m), "{q}");
        }
        assert_eq!(parse_nano("3n"), Ok(3));
        assert_eq!(parse_nano("100u"), Ok(100_000));
        assert_eq!(parse_nano("1n"), Ok(1));
    }

    #[test]
    fn memory_in_bytes() {
        for (q, b) in [
            ("128Mi", 128 << 20),
            ("1Gi", 1 << 30),
            ("1G", 1_000_000_000),
            ("64k", 64_000),
            ("1e3", 1000),
            ("1000", 1000),
            ("1.5Gi", 3 << 29),
            ("+5", 5),
            ("0.5", 1),
        ] {
            assert_eq!(parse_units(q), Ok(b), "{q}");
        }
    }

    #[test]
    fn rejects_garbage_and_negatives() {
        for q in ["", "abc", "12XB", "1.2.3", "Mi", ".", "1e", "1+2"] {
            assert!(parse_units(q).is_err(), "{q}");
        }
        assert!(parse_units("-1Gi").unwrap_err().contains("negative"));
        assert!(parse_units("1e30").unwrap_err().contains("too large"));
    }
}
