//! Tests for `cargo xtask tidy`: the real workspace is tidy, and each check catches a planted
//! violation in a scratch workspace.
//!
//! Planted attributes are assembled at run time so that this file passes its own check.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[test]
fn the_real_workspace_is_tidy() {
    let violations = check_workspace(&crate::workspace_root()).expect("the workspace is readable");
    let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(listed.is_empty(), "cargo xtask tidy found:\n{}", listed.join("\n"));
}

#[test]
fn a_scratch_workspace_that_follows_the_rules_is_tidy() {
    let scratch = Scratch::tidy_workspace("clean");
    assert_eq!(scratch.check(), Vec::new());
}

#[test]
fn a_file_without_a_module_doc_is_flagged() {
    let scratch = Scratch::tidy_workspace("no-doc");
    scratch.write("crates/waypoint-domain/src/plain.rs", "// an ordinary comment\npub fn f() {}\n");
    scratch.write("tests/integration/empty.rs", "");
    scratch.write("xtask/src/inner.rs", "/// an item doc is not a module doc\nfn f() {}\n");
    let flagged = files(&scratch.check());
    assert_eq!(
        flagged,
        ["crates/waypoint-domain/src/plain.rs", "tests/integration/empty.rs", "xtask/src/inner.rs"].map(PathBuf::from)
    );
}

#[test]
fn a_module_doc_after_a_blank_line_or_an_attribute_is_flagged() {
    let scratch = Scratch::tidy_workspace("late-doc");
    scratch.write("crates/waypoint-domain/src/blank.rs", "\n//! Too late.\n");
    scratch.write("crates/waypoint-domain/src/attribute.rs", "#![allow(dead_code)]\n//! Too late.\n");
    scratch.write("crates/waypoint-domain/src/indented.rs", "  //! Indented.\n");
    let violations = scratch.check();
    assert_eq!(violations.len(), 3, "{violations:?}");
    assert!(violations.iter().all(|v| v.line == Some(1) && v.problem.contains("`//!`")));
}

#[test]
fn build_output_and_hidden_folders_are_not_checked() {
    let scratch = Scratch::tidy_workspace("skipped");
    scratch.write("crates/waypoint-domain/target/debug/build/out.rs", "fn generated() {}\n");
    scratch.write("crates/waypoint-domain/fuzz/target/out.rs", "fn generated() {}\n");
    scratch.write("crates/waypoint-domain/.cache/out.rs", "fn generated() {}\n");
    scratch.write("crates/waypoint-domain/notes.txt", "not rust\n");
    assert_eq!(scratch.check(), Vec::new());
}

#[test]
fn ignored_tests_are_flagged_in_every_spelling() {
    let scratch = Scratch::tidy_workspace("ignore");
    let ignore = attribute("ignore");
    let body = format!(
        "//! Tests.\n#[test]\n{ignore}\nfn a() {{}}\n#[test] #[{ignore_reason}] fn b() {{}}\n\
         {cfg_ignore}\nfn c() {{}}\n",
        ignore_reason = "ignore = \"slow\"",
        cfg_ignore = attribute("cfg_attr(miri, ignore)"),
    );
    scratch.write("crates/waypoint-domain/src/tests.rs", &body);
    let violations = scratch.check();
    let lines: Vec<Option<usize>> = violations.iter().map(|v| v.line).collect();
    assert_eq!(lines, [Some(3), Some(5), Some(6)], "{violations:?}");
    assert!(violations.iter().all(|v| v.problem.contains("`ignore`")));
}

#[test]
fn panicking_tests_are_flagged() {
    let scratch = Scratch::tidy_workspace("should-panic");
    let body = format!("//! Tests.\n#[test]\n{}\nfn a() {{}}\n", attribute("should_panic(expected = \"boom\")"));
    scratch.write("tests/integration/main.rs", &body);
    let violations = scratch.check();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].to_string().split(": ").next(), Some("tests/integration/main.rs:3"));
    assert!(violations[0].problem.contains("`should_panic`"));
}

#[test]
fn similar_attributes_are_not_flagged() {
    let scratch = Scratch::tidy_workspace("similar");
    let body = "//! Fine.\n#[test]\nfn a() {}\n#[serde(skip)]\nstruct S;\n#[allow(clippy::ignored_unit_patterns)]\nfn b() {}\n";
    scratch.write("crates/waypoint-domain/src/fine.rs", body);
    assert_eq!(scratch.check(), Vec::new());
}

#[test]
fn the_domain_depends_on_no_waypoint_crate() {
    let scratch = Scratch::tidy_workspace("domain-up");
    scratch.manifest("waypoint-domain", "[dependencies]\nwaypoint-application.workspace = true\nserde = \"1\"\n");
    let violations = scratch.check();
    assert_eq!(files(&violations), [PathBuf::from("crates/waypoint-domain/Cargo.toml")]);
    assert!(violations[0].problem.contains("`waypoint-domain` must not depend on `waypoint-application`"));
}

#[test]
fn the_application_depends_on_the_domain_only() {
    let scratch = Scratch::tidy_workspace("application-up");
    scratch.manifest(
        "waypoint-application",
        "[dependencies]\nwaypoint-domain.workspace = true\nwaypoint-store-file = { path = \"../waypoint-store-file\" }\n",
    );
    let violations = scratch.check();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].problem.contains("must not depend on `waypoint-store-file`"));
}

#[test]
fn stores_do_not_depend_on_each_other() {
    let scratch = Scratch::tidy_workspace("store-store");
    scratch.manifest("waypoint-store-postgres", "[dependencies]\nwaypoint-store-file.workspace = true\n");
    let violations = scratch.check();
    assert_eq!(files(&violations), [PathBuf::from("crates/waypoint-store-postgres/Cargo.toml")]);
}

#[test]
fn nothing_depends_on_the_cli_however_it_is_spelled() {
    let scratch = Scratch::tidy_workspace("cli-down");
    scratch.write(
        "Cargo.toml",
        "[workspace]\nmembers = [\"crates/*\"]\n\n[workspace.dependencies]\n\
         front = { package = \"waypoint-cli\", path = \"crates/waypoint-cli\" } # renamed\n",
    );
    scratch.manifest("waypoint-store-file", "[dependencies.waypoint-cli]\npath = \"../waypoint-cli\"\n");
    scratch.manifest("waypoint-application", "[dependencies]\nui = { package = \"waypoint-cli\", path = \"x\" }\n");
    scratch.manifest("waypoint-domain", "[target.'cfg(unix)'.dependencies]\nfront.workspace = true\n");
    scratch.write("xtask/Cargo.toml", "[package]\nname = \"xtask\"\n\n[dependencies]\nwaypoint-cli = \"0.0.0\"\n");
    let violations = scratch.check();
    assert_eq!(
        files(&violations),
        [
            "crates/waypoint-application/Cargo.toml",
            "crates/waypoint-domain/Cargo.toml",
            "crates/waypoint-store-file/Cargo.toml",
            "xtask/Cargo.toml"
        ]
        .map(PathBuf::from)
    );
    assert!(violations.iter().all(|v| v.problem.contains("must not depend on `waypoint-cli`")), "{violations:?}");
}

#[test]
fn the_cli_and_the_python_package_open_stores_through_waypoint_stores_and_stores_do_not_reach_up() {
    let scratch = Scratch::tidy_workspace("stores");
    scratch.manifest("waypoint-stores", "[dependencies]\nwaypoint-store-file.workspace = true\n");
    scratch.manifest(
        "waypoint-python",
        "[dependencies]\nwaypoint-stores.workspace = true\nwaypoint-application.workspace = true\n",
    );
    scratch.manifest("waypoint-cli", "[dependencies]\nwaypoint-stores.workspace = true\n");
    assert_eq!(scratch.check(), Vec::new());
    scratch.manifest("waypoint-store-file", "[dependencies]\nwaypoint-stores.workspace = true\n");
    scratch.manifest("waypoint-cli", "[dependencies]\nwaypoint-python.workspace = true\n");
    scratch.manifest("waypoint-python", "[dependencies]\nwaypoint-cli.workspace = true\n");
    let violations = scratch.check();
    assert_eq!(
        files(&violations),
        [
            "crates/waypoint-cli/Cargo.toml",
            "crates/waypoint-python/Cargo.toml",
            "crates/waypoint-store-file/Cargo.toml"
        ]
        .map(PathBuf::from),
        "{violations:?}"
    );
}

#[test]
fn dev_dependencies_and_comments_are_free() {
    let scratch = Scratch::tidy_workspace("dev");
    scratch.manifest(
        "waypoint-domain",
        "[dependencies]\n# waypoint-cli = \"0\"\nserde = \"1\" # not waypoint-cli\n\n\
         [dev-dependencies]\nwaypoint-cli.workspace = true\n\n[dev-dependencies.waypoint-store-file]\npath = \"x\"\n",
    );
    scratch.write(
        "tests/Cargo.toml",
        "[package]\nname = \"waypoint-tests\"\n\n[dev-dependencies]\nwaypoint-cli.workspace = true\n",
    );
    assert_eq!(scratch.check(), Vec::new());
}

#[test]
fn a_crate_outside_the_layering_or_in_the_wrong_folder_is_flagged() {
    let scratch = Scratch::tidy_workspace("layering");
    scratch.manifest("waypoint-misc", "");
    scratch.write("crates/other/Cargo.toml", "[package]\nname = \"waypoint-cli\"\n");
    let violations = scratch.check();
    let problems: Vec<(String, &str)> =
        violations.iter().map(|v| (v.file.display().to_string(), v.problem.as_str())).collect();
    assert_eq!(violations.len(), 2, "{problems:?}");
    assert!(problems[0].0 == "crates/other/Cargo.toml" && problems[0].1.contains("must live in crates/waypoint-cli/"));
    assert!(problems[1].0 == "crates/waypoint-misc/Cargo.toml" && problems[1].1.contains("not in the layering"));
}

/// `#[` + `body` + `]`, assembled so this file does not contain the attribute literally.
fn attribute(body: &str) -> String {
    ["#", "[", body, "]"].concat()
}

fn files(violations: &[Violation]) -> Vec<PathBuf> {
    violations.iter().map(|v| v.file.clone()).collect()
}

/// A throwaway workspace under the system temp folder, removed on drop.
struct Scratch {
    root: PathBuf,
}

/// A store crate's call of the conformance kit, as tidy looks for it.
const CONFORMANCE: &str = "//! The kit.\n#[test]\nfn conforms() {\n    testkit::run(\"file\", &Files);\n}\n";

#[test]
fn a_store_that_does_not_run_the_conformance_kit_is_flagged() {
    let scratch = Scratch::tidy_workspace("kit-missing");
    fs::remove_file(scratch.root.join("crates/waypoint-store-file/src/conformance.rs")).unwrap();
    let violations = scratch.check();
    assert_eq!(files(&violations), [PathBuf::from("crates/waypoint-store-file/Cargo.toml")]);
    assert!(violations[0].problem.contains("testkit::run"), "{violations:?}");
}

#[test]
fn the_testkit_feature_is_for_dev_dependencies_only() {
    let scratch = Scratch::tidy_workspace("kit-feature");
    scratch.manifest(
        "waypoint-store-file",
        "[dependencies]\nwaypoint-application = { workspace = true, features = [\"testkit\"] }\n\n\
         [dev-dependencies]\nwaypoint-application = { workspace = true, features = [\"testkit\"] }\n",
    );
    let violations = scratch.check();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].line, Some(6), "the normal dependency, not the dev one: {violations:?}");
    assert!(violations[0].problem.contains("dev-dependencies"), "{violations:?}");
}

impl Scratch {
    /// A small workspace with every layer wired the allowed way.
    fn tidy_workspace(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("xtask-tidy-{}-{name}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let root = std::env::temp_dir().join(unique);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("temp dir is writable");
        let scratch = Scratch { root };
        scratch.write("Cargo.toml", "[workspace]\nmembers = [\"crates/*\", \"xtask\", \"tests\"]\n");
        scratch.manifest("waypoint-domain", "[dependencies]\nserde = \"1\"\n");
        scratch.manifest("waypoint-application", "[dependencies]\nwaypoint-domain.workspace = true\n");
        scratch.manifest(
            "waypoint-store-file",
            "[dependencies]\nwaypoint-domain = { path = \"../waypoint-domain\" }\nwaypoint-application.workspace = true\n",
        );
        scratch.manifest(
            "waypoint-cli",
            "[dependencies]\nwaypoint-domain.workspace = true\nwaypoint-application.workspace = true\n\n\
             [dependencies.waypoint-store-file]\nworkspace = true\n",
        );
        scratch.write("tests/Cargo.toml", "[package]\nname = \"waypoint-tests\"\n\n[dependencies]\n");
        scratch.write("tests/integration/main.rs", "//! Integration tests.\n");
        scratch.write("xtask/Cargo.toml", "[package]\nname = \"xtask\"\n");
        scratch.write("xtask/src/main.rs", "//! Automation.\nfn main() {}\n");
        scratch
    }

    /// Writes `crates/<package>/Cargo.toml` and a `lib.rs` with a module doc.
    fn manifest(&self, package: &str, dependencies: &str) {
        let manifest = format!("[package]\nname = \"{package}\"\nversion = \"0.0.0\"\n\n{dependencies}");
        self.write(&format!("crates/{package}/Cargo.toml"), &manifest);
        self.write(&format!("crates/{package}/src/lib.rs"), "//! A crate.\n");
        if package.starts_with("waypoint-store-") {
            self.write(&format!("crates/{package}/src/conformance.rs"), CONFORMANCE);
        }
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.root.join(relative);
        fs::create_dir_all(path.parent().expect("a file has a parent")).expect("temp dir is writable");
        fs::write(&path, text).expect("temp file is writable");
    }

    fn check(&self) -> Vec<Violation> {
        check_workspace(&self.root).expect("the scratch workspace is readable")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}
