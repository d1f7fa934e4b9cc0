//! Kubernetes resource quantities: `500m` CPU, `128Mi` memory, `1.5` CPUs, `1e9` bytes.

/// Parses a quantity into thousandths of its unit (millicores for CPU), rounding up as
/// Kubernetes does.
pub fn parse_milli(q: &str) -> Result<i64, String> {
    let (num, scale) = split(q)?;
    to_int(num * scale * 1000.0, q)
}

/// Parses a quantity into billionths of its unit (nanocores for CPU), rounding up.
pub fn parse_nano(q: &str) -> Result<i64, String> {
    let (num, scale) = split(q)?;
    to_int(num * scale * 1e9, q)
}

/// Parses a quantity into whole units (bytes for memory), rounding up.
pub fn parse_units(q: &str) -> Result<i64, String> {
    let (num, scale) = split(q)?;
    to_int(num * scale, q)
}

fn to_int(x: f64, q: &str) -> Result<i64, String> {
    if !x.is_finite() || x > i64::MAX as f64 {
        return Err(format!("{q:?} is too large"));
    }
    Ok(x.ceil() as i64)
}

fn split(q: &str) -> Result<(f64, f64), String> {
    let bad = || format!("{q:?} is not a quantity (examples: \"500m\", \"2\", \"128Mi\", \"1G\")");
    let q = q.trim();
    let digits_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(digits_end);
    if num.is_empty() || num.starts_with('-') {
        return Err(if num.starts_with('-') {
            format!("{q:?} must not be negative")
        } else {
            bad()
        });
    }
    let num: f64 = num.parse().map_err(|_| bad())?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| bad())?;
            10f64.powi(exp)
        }
        _ => return Err(bad()),
    };
    Ok((num, scale))
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
        ] {
            assert_eq!(parse_milli(q), Ok(m), "{q}");
        }
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
        ] {
            assert_eq!(parse_units(q), Ok(b), "{q}");
        }
    }

    #[test]
    fn rejects_garbage_and_negatives() {
        for q in ["", "abc", "12XB", "1.2.3", "Mi"] {
            assert!(parse_units(q).is_err(), "{q}");
        }
        assert!(parse_units("-1Gi").unwrap_err().contains("negative"));
    }
}
