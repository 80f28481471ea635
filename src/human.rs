//! Numbers for people: token counts and durations, formatted only at the edge.

/// `950`, `12.3k`, `4.56M`.
pub fn tokens(n: u64) -> String {
    if n < 1_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else {
        format!("{:.2}B", n as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::tokens(950), "950");
        assert_eq!(super::tokens(12_345), "12.3k");
        assert_eq!(super::tokens(4_560_000), "4.56M");
    }
}
