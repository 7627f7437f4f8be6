//! `cargo xtask tidy`: house rules that rustc and clippy do not check.
//!
//! 1. Every `.rs` file under `crates/`, `tests/` and `xtask/` opens with a `//!` line.
//! 2. No test is switched off or inverted with the `ignore` or `should_panic` attributes.
//! 3. Crate dependencies point one way: domain ← application ← store-* ← stores ← cli and
//!    python, and nothing depends on the cli or the Python package. `waypoint-telemetry` (trace
//!    export, installed by the cli and python) depends on no Waypoint crate.
//! 4. Every store crate (`crates/waypoint-store-*`) runs the conformance kit
//!    (`waypoint_application::testkit::run`) from a test, and only dev-dependencies switch the
//!    kit's `testkit` feature on, so it never ships in a binary.
//!
//! The checks read files as text on purpose: no TOML or Rust parser, so xtask stays std-only.
//! A violation prints as `file: problem` (with `:line` where there is one).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The folders that hold the workspace's Rust sources.
const SOURCE_ROOTS: [&str; 3] = ["crates", "tests", "xtask"];

/// Attribute names that hide or invert a test. Kept apart from the `#[` that introduces an
/// attribute so this file does not match its own check.
const FORBIDDEN_TEST_ATTRIBUTES: [&str; 2] = ["ignore", "should_panic"];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Relative to the workspace root.
    pub file: PathBuf,
    pub line: Option<usize>,
    pub problem: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Runs `tidy` from the command line: prints every violation and fails if there is any.
pub fn main(root: &Path, args: &[String]) -> ExitCode {
    if let Some(extra) = args.first() {
        eprintln!("tidy takes no arguments, got {extra:?}; run `cargo xtask tidy`");
        return ExitCode::from(2);
    }
    match check_workspace(root) {
        Ok(violations) if violations.is_empty() => ExitCode::SUCCESS,
        Ok(violations) => {
            for violation in &violations {
                println!("{violation}");
            }
            eprintln!("tidy: {} problem(s); fix them and run `cargo xtask tidy` again", violations.len());
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("tidy: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Every check over the workspace at `root`, violations in a stable order.
pub fn check_workspace(root: &Path) -> io::Result<Vec<Violation>> {
    let mut violations = Vec::new();
    for file in rust_files(root)? {
        let text = read(&root.join(&file))?;
        check_module_doc(&file, &text, &mut violations);
        check_test_attributes(&file, &text, &mut violations);
    }
    check_dependency_direction(root, &mut violations)?;
    check_conformance_kit(root, &mut violations)?;
    Ok(violations)
}

/// Every `.rs` file under the source roots, relative to `root` and sorted. Build output
/// (`target/`, including `fuzz/target/`) and hidden folders are skipped.
pub fn rust_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = SOURCE_ROOTS.iter().map(PathBuf::from).filter(|d| root.join(d).is_dir()).collect();
    while let Some(dir) = pending.pop() {
        let full = root.join(&dir);
        let entries = fs::read_dir(&full).map_err(|e| with_path(&full, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| with_path(&full, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type().map_err(|e| with_path(&entry.path(), e))?;
            if kind.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    pending.push(dir.join(&*name));
                }
            } else if kind.is_file() && name.ends_with(".rs") {
                files.push(dir.join(&*name));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The first line says what the file is for, as a `//!` comment: not after a blank line, an
/// attribute or a licence header.
fn check_module_doc(file: &Path, text: &str, out: &mut Vec<Violation>) {
    if !text.starts_with("//!") {
        out.push(Violation {
            file: file.to_path_buf(),
            line: Some(1),
            problem: "the first line must be a `//!` comment saying what this file is for".to_owned(),
        });
    }
}

/// Finds the forbidden attributes, written directly or under `cfg_attr`. This reads the text,
/// so a match inside a string or comment counts too: rephrase it.
fn check_test_attributes(file: &Path, text: &str, out: &mut Vec<Violation>) {
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("#[") {
            let attribute = &rest[start + 2..];
            let attribute = &attribute[..attribute.find(']').unwrap_or(attribute.len())];
            if let Some(name) = forbidden_attribute(attribute) {
                out.push(Violation {
                    file: file.to_path_buf(),
                    line: Some(index + 1),
                    problem: format!(
                        "tests must not use the `{name}` attribute; fix or delete the test, and assert on \
                         the error value instead of expecting a panic"
                    ),
                });
            }
            rest = &rest[start + 2..];
        }
    }
}

/// The forbidden name an attribute's body (the text between `#[` and `]`) applies, if any.
fn forbidden_attribute(body: &str) -> Option<&'static str> {
    let mut words = body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty());
    let head = words.next()?;
    let find = |word: &str| FORBIDDEN_TEST_ATTRIBUTES.into_iter().find(|name| *name == word);
    match head {
        "cfg_attr" => words.find_map(find),
        _ => find(head),
    }
}

/// Where a crate sits in the layering. A crate may depend only on waypoint crates of a lower
/// layer, so `Store` crates cannot depend on each other and nothing can depend on `Cli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// `waypoint-telemetry`: the OpenTelemetry SDK behind the engine's spans, which knows no
    /// Waypoint crate.
    Telemetry,
    Domain,
    Application,
    Store,
    /// `waypoint-stores`: a store by its location, over every store crate.
    Stores,
    /// The binary, the Python package, and the workspace's tooling and test packages, which
    /// nothing depends on.
    Top,
}

fn layer_of(package: &str) -> Option<Layer> {
    match package {
        "waypoint-telemetry" => Some(Layer::Telemetry),
        "waypoint-domain" => Some(Layer::Domain),
        "waypoint-application" => Some(Layer::Application),
        "waypoint-stores" => Some(Layer::Stores),
        "waypoint-cli" | "waypoint-python" | "waypoint-tests" | "xtask" => Some(Layer::Top),
        _ if package.starts_with("waypoint-store-") => Some(Layer::Store),
        _ => None,
    }
}

fn is_waypoint_crate(package: &str) -> bool {
    package.starts_with("waypoint-")
}

/// Reads each crate's `[dependencies]` (and build and target-specific ones; dev-dependencies are
/// free) and checks that they point down the layering. Also checks that a crate's folder under
/// `crates/` has the crate's name.
fn check_dependency_direction(root: &Path, out: &mut Vec<Violation>) -> io::Result<()> {
    let root_manifest = root.join("Cargo.toml");
    let workspace_renames = if root_manifest.is_file() {
        dependencies(&read(&root_manifest)?, |section| section == "workspace.dependencies")
    } else {
        Vec::new()
    };
    for manifest in manifests(root)? {
        let text = read(&root.join(&manifest))?;
        let violation = |line: Option<usize>, problem: String| Violation { file: manifest.clone(), line, problem };
        let Some(package) = package_name(&text) else {
            out.push(violation(None, "no `name` in `[package]`; tidy cannot tell where this crate sits".to_owned()));
            continue;
        };
        let folder = manifest.parent().and_then(Path::file_name).map(|f| f.to_string_lossy().into_owned());
        if manifest.starts_with("crates") && folder.as_deref() != Some(package.as_str()) {
            out.push(violation(
                None,
                format!("package `{package}` must live in crates/{package}/ (folder name = package name)"),
            ));
        }
        let Some(layer) = layer_of(&package) else {
            out.push(violation(
                None,
                format!(
                    "`{package}` is not in the layering (telemetry, domain, application, store-*, stores, cli, python); \
                     rename it or teach xtask/src/tidy.rs where it belongs"
                ),
            ));
            continue;
        };
        for dep in dependencies(&text, is_normal_dependency_section) {
            let target = dep.package_name(&workspace_renames);
            if !is_waypoint_crate(&target) || layer_of(&target).is_some_and(|l| l < layer) {
                continue;
            }
            out.push(violation(
                Some(dep.line),
                format!(
                    "`{package}` must not depend on `{target}`: dependencies point one way, \
                     cli and python → stores → store-* → application → domain"
                ),
            ));
        }
    }
    Ok(())
}

fn check_conformance_kit(root: &Path, out: &mut Vec<Violation>) -> io::Result<()> {
    for manifest in manifests(root)? {
        let text = read(&root.join(&manifest))?;
        let mut section = String::new();
        for (i, line) in text.lines().enumerate() {
            let line = strip_comment(line);
            if let Some(header) = section_header(line) {
                section = header.to_owned();
            } else if line.contains("\"testkit\"")
                && line.starts_with("waypoint-application")
                && !section.contains("dev-dependencies")
            {
                out.push(Violation {
                    file: manifest.clone(),
                    line: Some(i + 1),
                    problem: "the `testkit` feature belongs in [dev-dependencies]: the conformance kit is for tests"
                        .to_owned(),
                });
            }
        }
        let Some(package) = package_name(&text).filter(|p| p.starts_with("waypoint-store-")) else { continue };
        let src = manifest.parent().unwrap_or(Path::new(".")).join("src");
        let runs_kit = rust_files_under(&root.join(&src))?
            .iter()
            .map(|file| read(file))
            .collect::<io::Result<Vec<_>>>()?
            .iter()
            .any(|text| text.contains("testkit::run("));
        if !runs_kit {
            out.push(Violation {
                file: manifest.clone(),
                line: None,
                problem: format!(
                    "`{package}` is a store but no test under {} calls `testkit::run`: a store that does not pass \
                     the conformance kit is not a store",
                    src.display()
                ),
            });
        }
    }
    Ok(())
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = fs::read_dir(&current) else { continue };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// `crates/*/Cargo.toml` plus the tests and xtask packages, relative to `root`.
fn manifests(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let crates = root.join("crates");
    if crates.is_dir() {
        for entry in fs::read_dir(&crates).map_err(|e| with_path(&crates, e))? {
            let entry = entry.map_err(|e| with_path(&crates, e))?;
            let manifest = Path::new("crates").join(entry.file_name()).join("Cargo.toml");
            if root.join(&manifest).is_file() {
                found.push(manifest);
            }
        }
    }
    for package in ["tests", "xtask"] {
        let manifest = Path::new(package).join("Cargo.toml");
        if root.join(&manifest).is_file() {
            found.push(manifest);
        }
    }
    found.sort();
    Ok(found)
}

/// Sections whose entries are linked into the crate (so not `dev-dependencies`).
fn is_normal_dependency_section(section: &str) -> bool {
    let target_specific = section.starts_with("target.");
    section == "dependencies"
        || section == "build-dependencies"
        || (target_specific && (section.ends_with(".dependencies") || section.ends_with(".build-dependencies")))
}

/// One dependency entry as written in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dependency {
    /// The name the crate uses for it: the key.
    key: String,
    /// `package = "…"` when the dependency is renamed.
    package: Option<String>,
    /// `workspace = true`: the package comes from `[workspace.dependencies]`.
    from_workspace: bool,
    line: usize,
}

impl Dependency {
    /// The real package name, following a rename here or in the workspace table.
    fn package_name(&self, workspace: &[Dependency]) -> String {
        if let Some(package) = &self.package {
            return package.clone();
        }
        if self.from_workspace {
            if let Some(package) = workspace.iter().find(|w| w.key == self.key).and_then(|w| w.package.clone()) {
                return package;
            }
        }
        self.key.clone()
    }
}

/// The entries of every section `wanted` accepts, read line by line. Understands the forms
/// Cargo manifests use: `name = "1"`, `name = { … }`, `name.workspace = true` and
/// `[dependencies.name]` tables.
fn dependencies(text: &str, wanted: impl Fn(&str) -> bool) -> Vec<Dependency> {
    let mut found: Vec<Dependency> = Vec::new();
    // In a `[dependencies.name]` table, lines are fields of that one dependency.
    let mut table_entry: Option<usize> = None;
    let mut in_wanted = false;
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = section_header(line) {
            table_entry = None;
            in_wanted = wanted(header);
            if !in_wanted {
                if let Some((section, key)) = header.rsplit_once('.') {
                    if wanted(section) {
                        found.push(Dependency {
                            key: unquote(key).to_owned(),
                            package: None,
                            from_workspace: false,
                            line: index + 1,
                        });
                        table_entry = Some(found.len() - 1);
                    }
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim(), value.trim());
        if let Some(entry) = table_entry {
            match key {
                "package" => found[entry].package = Some(unquote(value).to_owned()),
                "workspace" => found[entry].from_workspace = value == "true",
                _ => {}
            }
        } else if in_wanted {
            let (name, field) = match key.split_once('.') {
                Some((name, field)) => (name.trim(), Some(field.trim())),
                None => (key, None),
            };
            found.push(Dependency {
                key: unquote(name).to_owned(),
                package: inline_field(value, "package").map(str::to_owned),
                from_workspace: (field == Some("workspace") && value == "true")
                    || inline_field(value, "workspace") == Some("true"),
                line: index + 1,
            });
        }
    }
    found
}

/// The `name` in the `[package]` section.
fn package_name(text: &str) -> Option<String> {
    let mut in_package = false;
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if let Some(header) = section_header(line) {
            in_package = header == "package";
        } else if in_package {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "name" {
                    return Some(unquote(value.trim()).to_owned());
                }
            }
        }
    }
    None
}

/// `[name]` → `name`. Arrays of tables (`[[bin]]`) are not dependency sections: `None`.
fn section_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    if inner.starts_with('[') {
        return Some("");
    }
    Some(inner.trim())
}

/// The value of `field` inside an inline table such as `{ package = "x", version = "1" }`,
/// without quotes.
fn inline_field<'a>(value: &'a str, field: &str) -> Option<&'a str> {
    let body = value.strip_prefix('{')?.strip_suffix('}')?;
    body.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == field).then(|| unquote(value.trim()))
    })
}

fn unquote(text: &str) -> &str {
    let text = text.trim();
    ['"', '\''].into_iter().find_map(|q| text.strip_prefix(q).and_then(|t| t.strip_suffix(q))).unwrap_or(text)
}

/// Drops a `#` comment, leaving a `#` inside a string alone.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (index, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..index],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

fn read(path: &Path) -> io::Result<String> {
    fs::read_to_string(path).map_err(|e| with_path(path, e))
}

fn with_path(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests;
