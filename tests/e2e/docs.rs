//! The documents stay true: the README's commands, the reason table, the report schema.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn readme_commands_are_the_ones_ci_and_the_tests_use() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    let test_cmd = "cargo nextest run --locked --profile ci";
    assert!(readme.contains(test_cmd));
    assert!(
        ci.lines().any(|l| l.trim() == test_cmd),
        ".ci/run must call the README's test command"
    );
    // The "try it" command names a bundled scenario (every bundled scenario passes --check in
    // mocknet::every_shipped_scenario_passes_check), so it works from an installed binary.
    let try_it = readme
        .lines()
        .find(|l| l.contains("mocknet --scenario"))
        .expect("README shows the mocknet command");
    let mut words = try_it.split_whitespace();
    let scenario = words
        .by_ref()
        .skip_while(|w| *w != "--scenario")
        .nth(1)
        .unwrap();
    assert!(
        blockprobe::mocknet::scenario::BUNDLED
            .iter()
            .any(|(n, _)| *n == scenario),
        "{scenario}"
    );
}

#[test]
fn every_reason_is_documented() {
    let doc = read("docs/reasons.md");
    for r in blockprobe::verdict::Reason::ALL {
        assert!(
            doc.contains(&format!("`{}`", r.as_str())),
            "docs/reasons.md lacks {}",
            r.as_str()
        );
    }
}

#[test]
fn every_column_is_documented_with_the_schema_version() {
    let doc = read("docs/report-schema.md");
    assert!(doc.contains(&format!("version {}", blockprobe::report::SCHEMA_VERSION)));
    for c in blockprobe::report::COLUMNS {
        assert!(
            doc.contains(&format!("`{c}`")),
            "docs/report-schema.md lacks {c}"
        );
    }
}

#[test]
fn the_config_example_parses() {
    let doc = read("docs/config.md");
    let start = doc.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let cfg: blockprobe::config::FileConfig =
        toml::from_str(&doc[start..end]).unwrap_or_else(|e| panic!("docs/config.md: {e}"));
    assert_eq!(cfg.rate, Some(50.0));
    assert_eq!(cfg.resolvers.unwrap().len(), 2);
}

#[test]
fn every_bundled_suite_is_documented_and_the_readme_shows_the_whatsapp_one_liner() {
    let doc = read("docs/suites.md");
    for suite in blockprobe::suite::Suite::bundled().unwrap() {
        let heading = format!("### {} — {} targets", suite.name, suite.targets.len());
        assert!(doc.contains(&heading), "docs/suites.md lacks `{heading}`");
    }
    assert!(read("README.md").contains("blockprobe scan --suite whatsapp\n"));
}

/// Issue 13: the docs refer only to files a user has.
#[test]
fn docs_refer_to_no_file_outside_the_project() {
    for f in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")).unwrap() {
        let path = f.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for absent in ["DESIGN.md", "STYLE.md", "../shared"] {
            assert!(
                !text.contains(absent),
                "{} mentions {absent}",
                path.display()
            );
        }
    }
}
