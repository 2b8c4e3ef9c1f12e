//! CPU lists in the kernel's list format (`0-3,8,10-11`), as in `/sys/devices/system/cpu/online`,
//! `/proc/irq/N/smp_affinity_list` and `Cpus_allowed_list`.

use std::collections::BTreeSet;

/// A set of CPU numbers, kept sorted.
pub type CpuList = BTreeSet<u32>;

/// Parses a kernel CPU list. Empty input gives an empty set.
pub fn parse(s: &str) -> Result<CpuList, String> {
    let mut out = CpuList::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad CPU number {x:?} in CPU list {s:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 4096 {
                    return Err(format!("bad CPU range {part:?} in CPU list {s:?}"));
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(num(part)?);
            }
        }
    }
    Ok(out)
}

/// Formats a set in the kernel's list format, ranges folded.
pub fn format(c: &CpuList) -> String {
    let mut parts = Vec::new();
    let mut it = c.iter().copied().peekable();
    while let Some(a) = it.next() {
        let mut b = a;
        while it.peek() == Some(&(b + 1)) {
            b = it.next().unwrap_or(b);
        }
        parts.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let c = parse("0-3, 8,10-11\n").unwrap();
        assert_eq!(
            c.iter().copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(format(&c), "0-3,8,10-11");
        assert_eq!(format(&parse("5").unwrap()), "5");
        assert!(parse("").unwrap().is_empty());
        assert!(parse("3-1").is_err());
        assert!(parse("x").is_err());
        assert!(parse("1-").is_err());
    }
}
