//! Keeps the crates' layering one-way: no module may import one that (directly or through
//! others) imports it back, and in the node nothing below `node.rs` and `cli/` names `config`.
//!
//! The graph is over files (one file, one module). A module depends on the modules whose paths
//! it names (`use` lines and inline `crate::`/`super::`/`self::` paths) and on the children it
//! declares, so a child that imports its parent is a cycle too: parents compose, children do
//! not reach back. Test code (`#[cfg(test)]` items, `tests.rs` files) is left out.

// A source file that cannot be read fails the test: that is what it should do.
#![allow(clippy::unwrap_used)]
// A synchronous test reading source files: the node's async rules do not apply.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Whether a module depends on the children it declares.
#[derive(Clone, Copy, PartialEq)]
enum Children {
    Count,
    Ignore,
}

/// The modules of a crate and what each depends on.
struct Graph {
    files: BTreeMap<Module, PathBuf>,
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

#[test]
fn the_node_has_no_import_cycle() {
    assert_acyclic(&crate_graph(".", Children::Count));
}

#[test]
fn the_transport_and_membership_have_no_import_cycle() {
    // Their parent modules re-export what their children define, so only imports count here.
    assert_acyclic(&crate_graph("../transport", Children::Ignore));
    assert_acyclic(&crate_graph("../membership", Children::Ignore));
}

#[test]
fn only_the_top_of_the_node_reads_config() {
    let graph = crate_graph(".", Children::Count);
    let config = vec!["config".to_owned()];
    // The composition root and the command line build the settings every part takes.
    let top = ["node", "cli", "config", "lib", "main"];
    let offenders: Vec<String> = graph
        .edges
        .iter()
        .filter(|(m, deps)| {
            deps.iter().any(|d| d.starts_with(&config))
                && !m.is_empty()
                && !top.contains(&m[0].as_str())
        })
        .map(|(m, _)| shown(&graph.files[m]))
        .collect();
    assert!(
        offenders.is_empty(),
        "these modules import `config`; give them settings of their own that config builds: \
         {offenders:?}"
    );
}

#[test]
fn the_checker_finds_cycles_through_uses_inline_paths_and_parents() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "//! crate::b in a comment is no edge\nmod c;\nuse crate::b::{X, y::Z};\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "fn f() { crate::a::g(); }\n").unwrap();
    std::fs::write(
        src.join("a/c.rs"),
        "#[cfg(test)]\nmod tests {\n    use super::super::*;\n}\nconst S: &str = \"super::x\";\n",
    )
    .unwrap();
    let graph = crate_graph(dir.path().to_str().unwrap(), Children::Count);
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0], vec![module("a"), module("b")]);
    // The child's reference to its parent was test code only: no edge.
    assert!(graph.edges[&module("a::c")].is_empty());
    std::fs::write(src.join("a/c.rs"), "use super::X;\n").unwrap();
    let graph = crate_graph(dir.path().to_str().unwrap(), Children::Count);
    assert_eq!(
        cycles(&graph)[0],
        vec![module("a"), module("a::c"), module("b")]
    );
}

fn module(path: &str) -> Module {
    path.split("::").map(str::to_owned).collect()
}

fn assert_acyclic(graph: &Graph) {
    let found = cycles(graph);
    let described: Vec<String> = found
        .iter()
        .map(|scc| {
            let names: Vec<String> = scc.iter().map(|m| shown(&graph.files[m])).collect();
            let inside: Vec<String> = scc
                .iter()
                .flat_map(|m| {
                    graph.edges[m]
                        .iter()
                        .filter(|d| scc.contains(d))
                        .map(move |d| format!("{} -> {}", m.join("::"), d.join("::")))
                })
                .collect();
            format!("{} (edges: {})", names.join(", "), inside.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", described.join("\n"));
}

/// Strongly connected components with more than one module, each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<Module>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        out: Vec<Vec<Module>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, m: &'g Module) {
            let i = self.index.len();
            self.index.insert(m, i);
            self.low.insert(m, i);
            self.stack.push(m);
            self.on_stack.insert(m);
            for d in &self.graph.edges[m] {
                if !self.index.contains_key(d) {
                    self.visit(d);
                    let l = self.low[d].min(self.low[m]);
                    self.low.insert(m, l);
                } else if self.on_stack.contains(d) {
                    let l = self.index[d].min(self.low[m]);
                    self.low.insert(m, l);
                }
            }
            if self.low[m] == self.index[m] {
                let mut scc = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    scc.push(top.clone());
                    if top == m {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for m in graph.edges.keys() {
        if !t.index.contains_key(m) {
            t.visit(m);
        }
    }
    t.out.sort();
    t.out
}

/// The module graph of the crate whose manifest directory is `dir` (relative to this crate).
fn crate_graph(dir: &str, children: Children) -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join("src");
    let src = src.canonicalize().unwrap_or(src);
    let mut files = BTreeMap::new();
    collect(&src, &src, &mut files);
    let mut edges = BTreeMap::new();
    for (m, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let code = without_tests(&blank_comments_and_strings(&text));
        let mut deps = BTreeSet::new();
        for child in declared_children(&code)
            .into_iter()
            .filter(|_| children == Children::Count)
        {
            let mut c = m.clone();
            c.push(child);
            if files.contains_key(&c) {
                deps.insert(c);
            }
        }
        for path in referenced_paths(&code) {
            if let Some(target) = resolve(m, &path, &files)
                && &target != m
            {
                deps.insert(target);
            }
        }
        edges.insert(m.clone(), deps);
    }
    Graph { files, edges }
}

/// Every `.rs` file under `dir` by module path; test-only files are left out.
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<Module, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let rel = path.strip_prefix(root).unwrap().with_extension("");
        let in_tests = rel.iter().any(|c| c == "tests");
        if path.extension().is_none_or(|e| e != "rs") || stem == "tests" || in_tests {
            continue;
        }
        let mut m: Module = rel
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if m == ["main"] && root.join("lib.rs").exists() {
            // A binary beside a library is a crate of its own that uses the library.
            continue;
        }
        if m == ["lib"] || m == ["main"] {
            m.clear();
        }
        if m.last().is_some_and(|l| l == "mod") {
            m.pop();
        }
        out.insert(m, path);
    }
}

/// The text with comments and the contents of string and char literals replaced by spaces
/// (line breaks kept), so neither paths nor braces inside them count.
fn blank_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or else a lifetime.
            let close = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\'')
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            match close {
                Some(j) => {
                    out.push_str("' ");
                    out.extend(std::iter::repeat_n(' ', j - i - 2));
                    out.push('\'');
                    i = j + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// The code without items marked `#[cfg(test)]`.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its first `;` outside braces, or where its first brace closes.
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, ch) in item.char_indices().skip("#[cfg(test)]".len()) {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Names of the child modules a file declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let l = line.trim();
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(|n| n.trim().to_owned())
        })
        .collect()
}

/// Every path the code names that starts with `crate`, `super` or `self`, with `use` groups
/// (`use a::{b, c::d}`) expanded.
fn referenced_paths(code: &str) -> Vec<Vec<String>> {
    let tokens = tokenize(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            let end = (i..tokens.len())
                .find(|&j| tokens[j] == ";")
                .unwrap_or(tokens.len());
            expand_use(&tokens[i + 1..end], &[], &mut out);
            i = end;
            continue;
        }
        if matches!(tokens[i].as_str(), "crate" | "super" | "self")
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && !(i > 0 && tokens[i - 1] == "::")
        {
            let mut path = vec![tokens[i].clone()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|t| t == "::")
                && tokens.get(j + 1).is_some_and(|t| is_ident(t))
            {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            out.push(path);
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

fn tokenize(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Expands one `use` tree (tokens between `use` and `;`) into full paths.
fn expand_use(tokens: &[String], prefix: &[String], out: &mut Vec<Vec<String>>) {
    // Split at top-level commas; each part is `a::b::c`, `a::{...}` or `a as b`.
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (k, t) in tokens.iter().enumerate() {
        match t.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 0 => {
                parts.push(&tokens[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    for part in parts {
        let mut path = prefix.to_vec();
        let mut k = 0;
        while k < part.len() {
            match part[k].as_str() {
                "::" | "pub" => k += 1,
                "{" => {
                    let inner = &part[k + 1..part.len().saturating_sub(1)];
                    expand_use(inner, &path, out);
                    path.clear();
                    break;
                }
                "as" => break,
                "(" => {
                    // `pub(crate) use`: skip the visibility.
                    k = part[k..]
                        .iter()
                        .position(|t| t == ")")
                        .map_or(part.len(), |p| k + p + 1);
                }
                t if is_ident(t) => {
                    path.push(t.to_owned());
                    k += 1;
                }
                _ => k += 1,
            }
        }
        if !path.is_empty() && matches!(path[0].as_str(), "crate" | "super" | "self") {
            out.push(path);
        }
    }
}

/// The module file a path lands in, seen from module `from`: the longest known module that is a
/// prefix of the resolved path.
fn resolve(from: &Module, path: &[String], files: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut base: Module = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" => from.clone(),
        "super" => {
            let mut b = from.clone();
            b.pop();
            b
        }
        _ => return None,
    };
    let mut rest = &path[1..];
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut full = base;
    full.extend(rest.iter().cloned());
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| files.contains_key(m))
}

/// A file's path from the repository root.
fn shown(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap_or(root);
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}
