//! Sizes and times the way docker prints them.

/// Docker's `units.HumanSize`: decimal units, 3 significant digits
/// (`4.26MB`, `512B`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    #[allow(clippy::cast_precision_loss)] // display only
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = format!("{v:.3}");
    // Three significant digits, trailing zeros dropped.
    let digits_before = s.find('.').unwrap_or(s.len());
    let keep = if digits_before >= 3 { digits_before } else { 4 };
    let mut t: String = s.chars().take(keep).collect();
    if t.contains('.') {
        t = t.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{t}{}", UNITS[i])
}

/// Parse `512`, `100k`, `1.5GB`, `2GiB` (docker's `units.RAMInBytes`
/// spirit: binary for `KiB`…, decimal otherwise).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = num * mult;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked range
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// `2 hours ago`, like docker's `units.HumanDuration` + " ago".
pub fn ago(rfc3339: Option<&str>) -> String {
    let Some(when) = rfc3339.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) else {
        return "N/A".to_owned();
    };
    let secs = (chrono::Utc::now() - when.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86400);
    let s = if secs < 1 {
        "Less than a second".to_owned()
    } else if secs == 1 {
        "1 second".to_owned()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if mins == 1 {
        "About a minute".to_owned()
    } else if mins < 60 {
        format!("{mins} minutes")
    } else if hours == 1 {
        "About an hour".to_owned()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if days < 14 {
        format!("{days} days")
    } else if days < 60 {
        format!("{} weeks", days / 7)
    } else if days < 365 * 2 {
        format!("{} months", days / 30)
    } else {
        format!("{} years", days / 365)
    };
    format!("{s} ago")
}

/// Print rows as left-aligned columns separated by 3 spaces (docker's
/// tabwriter settings).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Write to stdout; a closed pipe (`kiln images | head -1`) is not an
/// error worth a panic or a message.
pub fn write_out(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(s.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("kiln: writing to stdout: {e}");
    }
}

/// `println!` through [`write_out`].
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::humanize::write_out(&format!("{}\n", format_args!($($t)*)))
    };
}
pub(crate) use outln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        for (n, s) in [
            (0, "0B"),
            (512, "512B"),
            (4_260_000, "4.26MB"),
            (1_000, "1kB"),
            (123_456_789, "123MB"),
            (1_500_000_000, "1.5GB"),
        ] {
            assert_eq!(size(n), s);
        }
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("2MiB"), Some(2 * 1024 * 1024));
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("1zb"), None);
    }
}
