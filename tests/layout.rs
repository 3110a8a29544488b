//! The module map points one way: no file of `src/` or `perf/src/` leans,
//! through the items it names, on a file that leans back on it, however
//! long the way round. (Rooms with a circle between them can no longer be
//! read, tested or moved one at a time.)
//!
//! An arrow goes from a file to each file whose module it names in a path:
//! `crate::a::b`, `super::x`, `self::x`, a `use` group, or a module it
//! declares (`pub use child::Item`). Comments and `#[cfg(test)]` modules
//! are left out: a test may reach anywhere. The same holds of the rooms,
//! each top-level module with its folder: no room leans on one that leans
//! back on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's files by module path (`["balancer", "pull_based"]`), and the
/// module paths each one names.
struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
    arrows: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

fn module_path(root: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    match parts.first().map(String::as_str) {
        // Binaries are crates of their own, on top of the library.
        Some("bin" | "main") => return None,
        Some("lib") if parts.len() == 1 => return Some(vec![]),
        _ => {}
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    // Test-only files (`mod tests;` under `#[cfg(test)]`).
    let last = parts.last().map(String::as_str).unwrap_or("");
    (last != "tests" && !last.ends_with("_tests")).then_some(parts)
}

/// The code of a file without comments, string contents or test modules.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        for (i, c) in line.char_indices() {
            if !in_str && line[i..].starts_with("//") {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            out.push(if in_str && c != '"' { ' ' } else { c });
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Every path in `code` that starts with one of `heads`, as its segments
/// (a `use` group `a::{b, c::d}` gives `a::b` and `a::c::d`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (ident(bytes[i]) || bytes[i] == b':' || bytes[i] == b'{') {
            if bytes[i] == b'{' {
                // A use group: every item in it, after the prefix.
                let end = matching_brace(code, i);
                let prefix = &code[start..i];
                for item in split_top(&code[i + 1..end]) {
                    let joined = format!("{prefix}{}", item.trim());
                    found.extend(paths(&joined));
                }
                i = end + 1;
                break;
            }
            i += 1;
        }
        let path = &code[start..i.min(code.len())];
        if path.contains("::") && !path.contains('{') {
            found.push(path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect());
        }
    }
    found
}

fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}

fn split_top(group: &str) -> Vec<&str> {
    let (mut depth, mut from, mut items) = (0, 0, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[from..]);
    items
}

fn read_crate(root: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let files: BTreeMap<Vec<String>, PathBuf> =
        files.into_iter().filter_map(|f| Some((module_path(root, &f)?, f))).collect();
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| files.contains_key(p))
    };
    let mut arrows = BTreeMap::new();
    for (module, file) in &files {
        let code = code(&std::fs::read_to_string(file).unwrap());
        let children: BTreeSet<String> = code
            .lines()
            .filter_map(|l| l.trim().trim_start_matches("pub ").strip_prefix("mod "))
            .map(|l| l.trim_end_matches(';').trim().to_string())
            .collect();
        let mut to = BTreeSet::new();
        for path in paths(&code) {
            let absolute: Vec<String> = match path[0].as_str() {
                "crate" => path[1..].to_vec(),
                "self" => module.iter().chain(&path[1..]).cloned().collect(),
                "super" => {
                    let ups = path.iter().take_while(|s| *s == "super").count();
                    let base = &module[..module.len().saturating_sub(ups)];
                    base.iter().chain(&path[ups..]).cloned().collect()
                }
                child if children.contains(child) => module.iter().chain(&path[..]).cloned().collect(),
                _ => continue,
            };
            if let Some(target) = resolve(&absolute).filter(|t| t != module && !t.is_empty()) {
                to.insert(target);
            }
        }
        arrows.insert(module.clone(), to);
    }
    Crate { files, arrows }
}

/// The circles among the files: strongly connected sets of more than one.
fn circles(c: &Crate) -> Vec<Vec<String>> {
    // Tarjan's algorithm, small enough to stay recursive.
    struct Walk<'a> {
        c: &'a Crate,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a Vec<String>) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        for t in &w.c.arrows[v] {
            if !w.index.contains_key(t) {
                visit(w, t);
                let low = w.low[v].min(w.low[t]);
                w.low.insert(v, low);
            } else if w.stack.contains(&t) {
                let low = w.low[v].min(w.index[t]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let at = w.stack.iter().position(|x| *x == v).unwrap();
            let mut set: Vec<String> = w.stack.drain(at..).map(|m| w.c.files[m].display().to_string()).collect();
            set.sort();
            if set.len() > 1 {
                w.found.push(set);
            }
        }
    }
    let mut w = Walk { c, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in c.files.keys() {
        if !w.index.contains_key(v) {
            visit(&mut w, v);
        }
    }
    w.found
}

/// The same crate seen as rooms: each top-level module, folder and all.
fn rooms(c: &Crate) -> Crate {
    let room = |m: &Vec<String>| m.iter().take(1).cloned().collect::<Vec<String>>();
    let mut files = BTreeMap::new();
    let mut arrows: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &c.files {
        let shown = match module.len() {
            0 | 1 => file.clone(),
            _ => file.parent().unwrap().to_path_buf(),
        };
        files.entry(room(module)).or_insert(shown);
        let to = arrows.entry(room(module)).or_default();
        to.extend(c.arrows[module].iter().map(room).filter(|r| *r != room(module)));
    }
    Crate { files, arrows }
}

fn check(root: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let c = read_crate(&root);
    assert!(c.files.len() > 5, "read the crate at {}", root.display());
    let mut found = circles(&c);
    found.extend(circles(&rooms(&c)));
    let shown: Vec<String> =
        found.iter().map(|set| set.join(" <-> ").replace(&format!("{}/", root.display()), "")).collect();
    assert!(found.is_empty(), "import circles:\n{}", shown.join("\n"));
}

#[test]
fn hiku_has_no_import_circle() {
    check("src");
}

/// The rooms `src/lib.rs`'s essay lists under "## Layout", in the order
/// it names them (each by [`name`] or `name.rs`, the first time).
fn essay_order(lib: &str) -> Vec<String> {
    let doc: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("//!")).collect();
    let start = doc.iter().position(|l| l.trim() == "## Layout").expect("lib.rs has a \"## Layout\" section");
    let mut order = Vec::new();
    for line in doc[start + 1..].iter().take_while(|l| !l.trim_start().starts_with("## ")) {
        let mut rest = *line;
        while let Some(at) = rest.find('`') {
            let Some(len) = rest[at + 1..].find('`') else { break };
            let name = rest[at + 1..at + 1 + len].trim_end_matches(".rs");
            if !order.iter().any(|n| n == name) {
                order.push(name.to_string());
            }
            rest = &rest[at + len + 2..];
        }
    }
    order
}

/// lib.rs's essay says a file uses only files below it in its layout list:
/// every room is in the list, and every arrow between rooms points down it.
#[test]
fn the_essay_lists_every_room_and_arrows_point_down_its_list() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rooms = rooms(&read_crate(&root));
    let order = essay_order(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    let rank = |room: &Vec<String>| order.iter().position(|n| room.first() == Some(n));
    let mut wrong = Vec::new();
    for (room, to) in rooms.arrows.iter().filter(|(r, _)| !r.is_empty()) {
        let Some(from) = rank(room) else {
            wrong.push(format!("{} is not in the essay's layout", room[0]));
            continue;
        };
        for target in to.iter().filter(|t| !t.is_empty()) {
            if rank(target).is_some_and(|r| r < from) {
                wrong.push(format!("{} uses {}, listed above it", room[0], target[0]));
            }
        }
    }
    assert!(wrong.is_empty(), "src/lib.rs's layout:\n{}", wrong.join("\n"));
}

#[test]
fn the_perf_harness_has_no_import_circle() {
    check("perf/src");
}

#[test]
fn the_reader_finds_circles_and_group_imports() {
    let group = paths("use crate::{a::{B, c::D}, e};\nlet x = super::f::g();");
    let group: Vec<String> = group.iter().map(|p| p.join("::")).collect();
    assert_eq!(group, ["crate::a::B", "crate::a::c::D", "crate::e", "super::f::g"]);
    assert_eq!(code("let s = \"crate::x\"; // crate::y\n"), "let s = \"        \"; \n");
    let m = |s: &str| s.split('/').filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let c = Crate {
        files: ["", "a", "b", "c"].iter().map(|f| (m(f), PathBuf::from(f))).collect(),
        arrows: [("", vec!["a"]), ("a", vec!["b"]), ("b", vec!["a", "c"]), ("c", vec![])]
            .iter()
            .map(|(f, to)| (m(f), to.iter().map(|t| m(t)).collect()))
            .collect(),
    };
    assert_eq!(circles(&c), [vec!["a".to_string(), "b".to_string()]]);
    let essay =
        "//! ## Layout\n//!\n//! - `main.rs`: on [`b`].\n//! - [`b`] and [`a`], [`b`] again\n//! ## Next\n//! [`c`]";
    assert_eq!(essay_order(essay), ["main", "b", "a"]);
}
