//! The README quotes no measured figure of its own: it links to the
//! section of perf/RESULTS.md that has it, and each link must find its
//! section (perf/results rewrites the page; a heading it renames breaks
//! the link here, not silently for the reader).

/// The anchor GitHub gives a heading: lower case, letters, digits, `-`
/// and `_` kept, spaces as `-`, the rest dropped.
fn anchor(heading: &str) -> String {
    let lower = heading.to_lowercase();
    let kept = lower.chars().filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'));
    kept.map(|c| if c == ' ' { '-' } else { c }).collect()
}

#[test]
fn every_link_to_the_results_finds_its_section() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let results = std::fs::read_to_string(format!("{root}/perf/RESULTS.md")).unwrap();
    let anchors: Vec<String> = results.lines().filter_map(|l| l.strip_prefix("## ")).map(anchor).collect();
    let links: Vec<&str> =
        readme.split("(perf/RESULTS.md#").skip(1).map(|rest| rest.split(')').next().unwrap()).collect();
    assert!(links.len() >= 10, "the README links to its figures: {links:?}");
    for link in links {
        assert!(anchors.iter().any(|a| a == link), "README links to perf/RESULTS.md#{link}, which has no such section");
    }
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(
        anchor("The paper's experiment: workers of 8 GB (a 7298 MB pool)"),
        "the-papers-experiment-workers-of-8-gb-a-7298-mb-pool"
    );
    assert_eq!(
        anchor("A tier under restarts: `perf/soak --instances 2`"),
        "a-tier-under-restarts-perfsoak---instances-2"
    );
}
