//! The paper's published figures (Akbari and Hauswirth, CCGrid 2025: its
//! headline table, pull-based against the other three balancers), as rows
//! under the measured ones.
//! The paper gives pull-based's means and, for the other three balancers,
//! the range they spanned; a figure it does not publish is left blank.

/// Said under every table that shows the paper's rows.
pub const SOURCE: &str = "paper: the published means over 20 runs on 5 AWS m5.xlarge workers; \
    paper others: the range over hashing-bounded, least-connections and random \
    (cv: least-connections 0.26, hashing-bounded 0.31; rps@50: hashing-bounded's)\n";

/// Pull-based's figures, by table header.
const PULL_BASED: [(&str, &str); 6] =
    [("calls", "16414"), ("mean", "481"), ("cold%", "30"), ("cv", "0.27"), ("rps@50", "61.3"), ("rps@100", "78")];

/// The others' figures, by table header.
const OTHERS: [(&str, &str); 6] = [
    ("calls", "12361-15151"),
    ("mean", "565-660"),
    ("cold%", "43-59"),
    ("cv", "0.26-0.31"),
    ("rps@50", "58.3"),
    ("rps@100", "51.2-69"),
];

/// The paper's rows for a table with these `headers` (the first two being
/// the scheduler and the balancer).
pub fn rows(headers: &[&str]) -> Vec<Vec<String>> {
    let row = |balancer: &str, figures: &[(&str, &str)]| {
        let cell = |header: &&str| figures.iter().find(|(h, _)| h == header).map_or("", |(_, v)| v).to_string();
        let mut row = vec!["paper".to_string(), balancer.to_string()];
        row.extend(headers[2..].iter().map(cell));
        row
    };
    vec![row("pull-based", &PULL_BASED), row("others", &OTHERS)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_published_figure_has_a_column() {
        let headers = ["scheduler", "balancer", "calls", "mean", "cold%", "cv", "rps@50", "rps@100", "p99"];
        let rows = super::rows(&headers);
        assert_eq!(rows[0], ["paper", "pull-based", "16414", "481", "30", "0.27", "61.3", "78", ""]);
        assert_eq!(rows[1][2..5], ["12361-15151", "565-660", "43-59"]);
    }
}
