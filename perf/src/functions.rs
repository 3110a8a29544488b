//! The paper's 40 functions: 8 FunctionBench benchmarks x 5 copies named
//! `<benchmark>-<copy>`, and their cold and warm times (REFERENCE.md §2,
//! Table I: the average of 20 runs on one worker).

/// Copies of each benchmark, with distinct names, so 40 functions.
pub const COPIES: usize = 5;

/// Table I: (benchmark, cold ms, warm ms).
pub const TABLE_I: [(&str, f64, f64); 8] = [
    ("chameleon", 536.0, 392.0),
    ("dd", 706.0, 549.0),
    ("float_operation", 263.0, 94.0),
    ("gzip_compression", 510.0, 303.0),
    ("json_dumps_loads", 269.0, 105.0),
    ("linpack", 282.0, 58.0),
    ("matmul", 284.0, 125.0),
    ("pyaes", 329.0, 149.0),
];

/// The 40 names in a fixed order: every copy of the first benchmark, then
/// the next.
pub fn names() -> Vec<String> {
    TABLE_I.iter().flat_map(|(b, _, _)| (0..COPIES).map(move |c| format!("{b}-{c}"))).collect()
}

/// Table I's (cold, warm) ms for a function name, by its benchmark part;
/// `None` for a benchmark not in the table.
pub fn table_i_times(function: &str) -> Option<(f64, f64)> {
    let benchmark = function.rsplit_once('-').map_or(function, |(b, _)| b);
    TABLE_I.iter().find(|(b, _, _)| *b == benchmark).map(|&(_, cold, warm)| (cold, warm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_names_each_with_its_benchmark_times() {
        let names = names();
        assert_eq!(names.len(), 40);
        assert_eq!((names[0].as_str(), names[39].as_str()), ("chameleon-0", "pyaes-4"));
        assert_eq!(table_i_times("gzip_compression-3"), Some((510.0, 303.0)));
        assert_eq!(table_i_times("dd"), Some((706.0, 549.0)));
        assert_eq!(table_i_times("hello-0"), None);
    }
}
