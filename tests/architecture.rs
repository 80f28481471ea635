//! The tree keeps its promise: `src/core/` is pure. No file there reaches for the file system,
//! the environment, sockets, processes, threads or the clock, nor for the folders that do
//! (`sys`, `session`, `ledger`, `scan`, `cmd`); its unit tests may, the code they test may not.

use std::path::Path;

/// What the pure core must not name, with why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("std::fs", "the file system"),
    ("std::env", "the environment"),
    ("std::net", "sockets"),
    ("std::process", "processes"),
    ("std::thread", "threads"),
    ("std::os::", "the OS"),
    ("Instant", "the clock"),
    ("SystemTime", "the clock"),
    ("::now(", "the clock"),
    ("libc::", "the OS"),
    ("nix::", "the OS"),
    ("rusqlite", "the database"),
    ("ureq", "the network"),
    ("crate::sys", "a folder that touches the OS"),
    ("crate::session", "a folder that touches the OS"),
    ("crate::ledger", "a folder that touches the OS"),
    ("crate::scan", "a folder that touches the OS"),
    ("crate::cmd", "a folder that touches the OS"),
];

/// The code of a file without its comments and its `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string (a URL) is rare in the core; cut at it all the same: the
            // check can only miss something then, never invent it.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `std::{fs, io}` style imports name their modules apart.
fn grouped_std_imports(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("std::{") {
        let tail = &rest[i + 6..];
        let end = tail.find('}').unwrap_or(tail.len());
        for part in tail[..end].split(',') {
            let name = part.trim().split("::").next().unwrap_or("").trim();
            if !name.is_empty() {
                out.push(format!("std::{name}"));
            }
        }
        rest = &tail[end..];
    }
    out
}

fn violations(file: &str, text: &str) -> Vec<String> {
    let code = code_of(text);
    let grouped = grouped_std_imports(&code);
    let mut found = Vec::new();
    for (needle, what) in FORBIDDEN {
        if code.contains(needle) || grouped.iter().any(|g| g.starts_with(needle)) {
            found.push(format!("{file}: `{needle}` ({what})"));
        }
    }
    found
}

#[test]
fn the_core_touches_nothing_outside_itself() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut rs = Vec::new();
    let mut todo = vec![dir.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                rs.push(p);
            }
        }
    }
    rs.sort();
    assert!(rs.len() >= 10, "src/core holds the pure modules: {rs:?}");
    let mut all = Vec::new();
    for p in rs {
        let text = std::fs::read_to_string(&p).unwrap();
        all.extend(violations(&p.strip_prefix(&dir).unwrap().display().to_string(), &text));
    }
    assert!(all.is_empty(), "the pure core reaches outside itself:\n{}", all.join("\n"));
}

#[test]
fn the_check_finds_what_it_looks_for() {
    // The check itself must be able to fail.
    assert_eq!(violations("a.rs", "use std::fs;\n").len(), 1);
    assert_eq!(violations("a.rs", "use std::{collections::HashMap, env};\n").len(), 1);
    assert_eq!(violations("a.rs", "let t = std::time::Instant::now();\n").len(), 2);
    assert_eq!(violations("a.rs", "crate::sys::paths::home()\n").len(), 1);
    assert!(violations("a.rs", "// std::fs in a comment\nfn f() {}\n").is_empty());
    assert!(violations("a.rs", "fn f() {}\n#[cfg(test)]\nmod tests {\n    use std::fs;\n}\n").is_empty());
}

/// With `autotests = false`, a test file that `tests/tests.rs` does not name is never built: every
/// `tests/*.rs` must be one of its modules.
#[test]
fn every_test_file_is_part_of_the_test_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("tests.rs")).unwrap();
    let mods: Vec<&str> =
        main.lines().filter_map(|l| l.strip_prefix("mod ").and_then(|r| r.strip_suffix(';'))).collect();
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else { continue };
        if p.extension().is_some_and(|x| x == "rs") && stem != "tests" && !mods.contains(&stem) {
            missing.push(stem.to_string());
        }
    }
    assert!(mods.len() >= 10, "tests/tests.rs names the test files: {mods:?}");
    assert!(missing.is_empty(), "tests/tests.rs does not name {missing:?}: add `mod NAME;` there");
}
