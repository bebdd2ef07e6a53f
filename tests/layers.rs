//! The shape of `src/` stays as built: no import cycle between its files, and
//! no dependency pointing up the layers.
//!
//! ```text
//!   operator ──► proxy ──► dns ──► wire ──► config ──► sip
//!        (each layer may use the ones to its right, never one to its left)
//!   admin, telemetry, heap, lab: leaves, usable by every layer, using none
//! ```
//!
//! Every file of `src/` is read as Rust tokens (a small lexer below, so
//! strings, comments and doc text never count) and every path that names a module of
//! the crate — `crate::…`, `super::…`, `self::…`, a child module declared with
//! `mod x;`, including paths inside `use` trees and macro arguments — becomes
//! an edge from the file to the file that defines the longest module prefix of
//! the path. A path through a folder's `mod.rs` facade (`crate::sip::Message`)
//! is an edge to that `mod.rs`: files inside a folder name their siblings
//! directly, or they would form a cycle with the facade that re-exports them.
//!
//! Two checks on that graph: the strongly connected components (Tarjan) must
//! all be single files, and every edge between top-level modules must follow
//! [`LAYERS`]. A module missing from the table fails too, so a new one is
//! placed on purpose. The unit tests at the end plant a cycle, an upward
//! import and a stray module in a made-up tree and watch each get reported.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The layers from the bottom up: a module may use its own layer and the ones
/// below it.
const LAYERS: &[&str] = &["sip", "config", "wire", "dns", "proxy", "operator"];
/// Usable by every layer; a leaf uses other leaves only.
const LEAVES: &[&str] = &["admin", "telemetry", "heap", "lab"];

#[test]
fn src_has_no_import_cycle_and_no_upward_dependency() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&root);
    assert!(
        files.len() > 20,
        "read {} files under {root:?}",
        files.len()
    );
    let graph = Graph::build(&files).unwrap_or_else(|e| panic!("{e}"));
    let problems = graph.problems();
    assert!(
        problems.is_empty(),
        "the module structure of src/ broke ({} problems):\n{}\n\n\
         Layers, bottom up: {}; leaves: {}. See tests/layers.rs.",
        problems.len(),
        problems.join("\n"),
        LAYERS.join(" <- "),
        LEAVES.join(", ")
    );
}

/// Every `.rs` file under `root` except the binary's `main.rs`, as
/// (path relative to `root`, text).
fn read_tree(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                if rel != Path::new("main.rs") {
                    let text =
                        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                    out.push((rel, text));
                }
            }
        }
    }
    out.sort();
    out
}

/// A module path below the crate root: `["proxy", "call"]`.
type ModPath = Vec<String>;

/// `lib.rs` → `[]`, `sip/mod.rs` → `["sip"]`, `sip/uri.rs` → `["sip", "uri"]`.
fn module_of(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    parts
}

/// One use of another file: where, and the path as written.
#[derive(Clone, Debug)]
struct Use {
    line: usize,
    path: String,
}

struct Graph {
    /// File module → its file (for messages).
    files: BTreeMap<ModPath, PathBuf>,
    /// from → to → the first use that makes the edge.
    edges: BTreeMap<ModPath, BTreeMap<ModPath, Use>>,
}

impl Graph {
    fn build(files: &[(PathBuf, String)]) -> Result<Graph, String> {
        let modules: BTreeMap<ModPath, PathBuf> = files
            .iter()
            .map(|(rel, _)| (module_of(rel), rel.clone()))
            .collect();
        let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, Use>> = BTreeMap::new();
        for (rel, text) in files {
            let me = module_of(rel);
            let tokens = lex(text).map_err(|e| format!("src/{}: {e}", rel.display()))?;
            let children = declared_children(&tokens);
            let mut scan = Scan {
                file: &me,
                children: &children,
                found: Vec::new(),
            };
            scan.walk(&tokens, &me);
            let out = edges.entry(me.clone()).or_default();
            for (target, u) in scan.found {
                let Some(to) = longest_module(&modules, &target) else {
                    continue;
                };
                if to != me {
                    out.entry(to).or_insert(u);
                }
            }
        }
        Ok(Graph {
            files: modules,
            edges,
        })
    }

    fn name(&self, m: &ModPath) -> String {
        self.files
            .get(m)
            .map(|p| format!("src/{}", p.display()))
            .unwrap_or_else(|| format!("crate::{}", m.join("::")))
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in self.files.keys() {
            if let Some(top) = m.first()
                && rank(top).is_none()
            {
                out.push(format!(
                    "{}: top-level module `{top}` is in neither LAYERS nor LEAVES",
                    self.name(m)
                ));
            }
        }
        for (from, tos) in &self.edges {
            for (to, u) in tos {
                if let Some(why) = layer_violation(from, to) {
                    out.push(format!(
                        "{}:{}: `{}` — {why}",
                        self.name(from),
                        u.line,
                        u.path
                    ));
                }
            }
        }
        for component in self.cycles() {
            let mut lines = vec![format!("import cycle between {} files:", component.len())];
            for from in &component {
                for (to, u) in self.edges.get(from).into_iter().flatten() {
                    if component.contains(to) {
                        lines.push(format!(
                            "    {}:{}: `{}` -> {}",
                            self.name(from),
                            u.line,
                            u.path,
                            self.name(to)
                        ));
                    }
                }
            }
            out.push(lines.join("\n"));
        }
        out
    }

    /// Strongly connected components with more than one file (Tarjan).
    fn cycles(&self) -> Vec<BTreeSet<ModPath>> {
        struct Tarjan<'a> {
            g: &'a Graph,
            index: BTreeMap<&'a ModPath, usize>,
            low: BTreeMap<&'a ModPath, usize>,
            stack: Vec<&'a ModPath>,
            on_stack: BTreeSet<&'a ModPath>,
            out: Vec<BTreeSet<ModPath>>,
        }
        impl<'a> Tarjan<'a> {
            fn visit(&mut self, v: &'a ModPath) {
                let i = self.index.len();
                self.index.insert(v, i);
                self.low.insert(v, i);
                self.stack.push(v);
                self.on_stack.insert(v);
                for w in self.g.edges.get(v).into_iter().flat_map(|m| m.keys()) {
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let lw = self.low[w];
                        let lv = self.low.get_mut(v).expect("visited");
                        *lv = (*lv).min(lw);
                    } else if self.on_stack.contains(w) {
                        let iw = self.index[w];
                        let lv = self.low.get_mut(v).expect("visited");
                        *lv = (*lv).min(iw);
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut component = BTreeSet::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack.remove(w);
                        component.insert(w.clone());
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        self.out.push(component);
                    }
                }
            }
        }
        let mut t = Tarjan {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            out: Vec::new(),
        };
        for v in self.files.keys() {
            if !t.index.contains_key(v) {
                t.visit(v);
            }
        }
        t.out
    }
}

/// Position in [`LAYERS`], or `usize::MAX` for a leaf.
fn rank(top: &str) -> Option<usize> {
    if LEAVES.contains(&top) {
        return Some(usize::MAX);
    }
    LAYERS.iter().position(|l| *l == top)
}

/// Why an edge between two files breaks the layering, if it does.
fn layer_violation(from: &ModPath, to: &ModPath) -> Option<String> {
    let (Some(a), Some(b)) = (from.first(), to.first()) else {
        // The crate root only declares modules; nothing imports it.
        return to
            .is_empty()
            .then(|| "uses the crate root (lib.rs); name the module instead".to_owned());
    };
    if a == b {
        return None;
    }
    match (rank(a), rank(b)) {
        (_, Some(usize::MAX)) => None,
        (Some(usize::MAX), _) => Some(format!("leaf `{a}` depends on layer `{b}`")),
        (Some(ra), Some(rb)) if rb > ra => Some(format!("`{a}` depends upward on `{b}`")),
        _ => None,
    }
}

/// The module of `path` that a file defines: its longest prefix in `modules`.
fn longest_module(modules: &BTreeMap<ModPath, PathBuf>, path: &[String]) -> Option<ModPath> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains_key(p))
}

/// Names declared as `mod name;` at the top of a file (its child files).
fn declared_children(tokens: &[Tok]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for w in tokens.windows(3) {
        if let [Tok::Ident(m, _), Tok::Ident(name, _), Tok::Punct(';')] = w
            && m == "mod"
        {
            out.insert(name.clone());
        }
    }
    out
}

/// Just enough of Rust's lexical grammar to find paths: identifiers, `::`,
/// punctuation and bracketed groups. Comments (doc comments included) vanish;
/// string, char and number literals become an opaque [`Tok::Lit`].
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String, usize),
    /// `::`
    Sep,
    Punct(char),
    Lit,
    /// Opening bracket, contents, line.
    Group(char, Vec<Tok>),
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut lexer = Lexer {
        c: &chars,
        i: 0,
        line: 1,
    };
    let toks = lexer.group(None)?;
    Ok(toks)
}

struct Lexer<'a> {
    c: &'a [char],
    i: usize,
    line: usize,
}

impl Lexer<'_> {
    fn at(&self, k: usize) -> Option<char> {
        self.c.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.at(0)?;
        if ch == '\n' {
            self.line += 1;
        }
        self.i += 1;
        Some(ch)
    }

    /// Tokens up to the `close` bracket (or the end of input when `None`).
    fn group(&mut self, close: Option<char>) -> Result<Vec<Tok>, String> {
        let mut out = Vec::new();
        loop {
            let Some(ch) = self.at(0) else {
                return match close {
                    None => Ok(out),
                    Some(c) => Err(format!(
                        "line {}: unclosed group, expected {c:?}",
                        self.line
                    )),
                };
            };
            match ch {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '/' if self.at(1) == Some('/') => {
                    while self.at(0).is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                '/' if self.at(1) == Some('*') => self.block_comment()?,
                '(' | '[' | '{' => {
                    self.bump();
                    let end = match ch {
                        '(' => ')',
                        '[' => ']',
                        _ => '}',
                    };
                    let inner = self.group(Some(end))?;
                    out.push(Tok::Group(ch, inner));
                }
                ')' | ']' | '}' => {
                    self.bump();
                    return if close == Some(ch) {
                        Ok(out)
                    } else {
                        Err(format!("line {}: unexpected {ch:?}", self.line))
                    };
                }
                '"' => {
                    self.string()?;
                    out.push(Tok::Lit);
                }
                '\'' => {
                    if let Some(t) = self.quote()? {
                        out.push(t);
                    }
                }
                ':' if self.at(1) == Some(':') => {
                    self.bump();
                    self.bump();
                    out.push(Tok::Sep);
                }
                c if c.is_ascii_digit() => {
                    while self.at(0).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        self.bump();
                    }
                    out.push(Tok::Lit);
                }
                c if c.is_alphabetic() || c == '_' => out.push(self.word()?),
                c => {
                    self.bump();
                    out.push(Tok::Punct(c));
                }
            }
        }
    }

    fn block_comment(&mut self) -> Result<(), String> {
        let line = self.line;
        let mut depth = 0;
        loop {
            match (self.at(0), self.at(1)) {
                (Some('/'), Some('*')) => {
                    depth += 1;
                    self.i += 2;
                }
                (Some('*'), Some('/')) => {
                    depth -= 1;
                    self.i += 2;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => {
                    self.bump();
                }
                (None, _) => return Err(format!("line {line}: unterminated block comment")),
            }
        }
    }

    /// A `"…"` string with escapes, from its opening quote.
    fn string(&mut self) -> Result<(), String> {
        let line = self.line;
        self.bump();
        loop {
            match self.bump() {
                Some('\\') => {
                    self.bump();
                }
                Some('"') => return Ok(()),
                Some(_) => {}
                None => return Err(format!("line {line}: unterminated string")),
            }
        }
    }

    /// `r"…"`, `r#"…"#` …, from the `#`s or the quote after the prefix.
    fn raw_string(&mut self) -> Result<(), String> {
        let line = self.line;
        let mut hashes = 0;
        while self.at(0) == Some('#') {
            hashes += 1;
            self.bump();
        }
        if self.bump() != Some('"') {
            return Err(format!("line {line}: malformed raw string"));
        }
        loop {
            match self.bump() {
                Some('"') if (0..hashes).all(|k| self.at(k) == Some('#')) => {
                    self.i += hashes;
                    return Ok(());
                }
                Some(_) => {}
                None => return Err(format!("line {line}: unterminated raw string")),
            }
        }
    }

    /// A char literal, or a lifetime / label (nothing a path cares about).
    fn quote(&mut self) -> Result<Option<Tok>, String> {
        let line = self.line;
        match (self.at(1), self.at(2)) {
            (Some('\\'), _) => {
                self.bump();
                self.bump();
                self.bump();
                while self.at(0).is_some_and(|c| c != '\'') {
                    self.bump();
                }
                if self.bump().is_none() {
                    return Err(format!("line {line}: unterminated char literal"));
                }
                Ok(Some(Tok::Lit))
            }
            (Some(_), Some('\'')) => {
                self.i += 3;
                Ok(Some(Tok::Lit))
            }
            _ => {
                // 'a, 'static, 'outer: skip the quote and the name.
                self.bump();
                while self.at(0).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.bump();
                }
                Ok(None)
            }
        }
    }

    /// An identifier, a raw identifier, or a prefixed literal (`b"…"`, `r#"…"#`, `b'x'`).
    fn word(&mut self) -> Result<Tok, String> {
        let line = self.line;
        let start = self.i;
        while self.at(0).is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.bump();
        }
        let w: String = self.c[start..self.i].iter().collect();
        match (w.as_str(), self.at(0), self.at(1)) {
            ("r" | "br" | "cr", Some('"'), _) | ("r" | "br" | "cr", Some('#'), Some('"' | '#')) => {
                self.raw_string()?;
                Ok(Tok::Lit)
            }
            ("r", Some('#'), Some(c)) if c.is_alphabetic() || c == '_' => {
                self.bump();
                match self.word()? {
                    Tok::Ident(name, _) => Ok(Tok::Ident(name, line)),
                    other => Ok(other),
                }
            }
            ("b" | "c", Some('"'), _) => {
                self.string()?;
                Ok(Tok::Lit)
            }
            ("b", Some('\''), _) => {
                self.quote()?;
                Ok(Tok::Lit)
            }
            _ => Ok(Tok::Ident(w, line)),
        }
    }
}

struct Scan<'a> {
    /// The module of the file being read.
    file: &'a ModPath,
    children: &'a BTreeSet<String>,
    /// Absolute module paths named, with where.
    found: Vec<(ModPath, Use)>,
}

fn ident(t: Option<&Tok>) -> Option<(&str, usize)> {
    match t {
        Some(Tok::Ident(s, line)) => Some((s.as_str(), *line)),
        _ => None,
    }
}

impl Scan<'_> {
    /// Reads `tokens` in module scope `scope` (the file's module, or an inline
    /// `mod name { … }` inside it).
    fn walk(&mut self, tokens: &[Tok], scope: &ModPath) {
        let mut i = 0;
        while i < tokens.len() {
            // `mod name { … }`: same file, deeper scope.
            if let (Some(("mod", _)), Some((name, _)), Some(Tok::Group('{', body))) = (
                ident(tokens.get(i)),
                ident(tokens.get(i + 1)),
                tokens.get(i + 2),
            ) {
                let mut inner = scope.clone();
                inner.push(name.to_owned());
                self.walk(body, &inner);
                i += 3;
                continue;
            }
            // `pub(in crate::a)` names a scope, not a dependency.
            if let (Some(("pub", _)), Some(Tok::Group('(', _))) =
                (ident(tokens.get(i)), tokens.get(i + 1))
            {
                i += 2;
                continue;
            }
            // A path, not the tail of another path or a method call.
            let after = i.checked_sub(1).and_then(|k| tokens.get(k));
            let tail = matches!(after, Some(Tok::Sep | Tok::Punct('.')));
            if !tail
                && let Some((start, line)) = ident(tokens.get(i))
                && tokens.get(i + 1) == Some(&Tok::Sep)
                && let Some(base) = self.base(start, scope)
            {
                i = self.path(tokens, i + 2, base, start.to_owned(), line);
                continue;
            }
            if let Tok::Group(_, body) = &tokens[i] {
                self.walk(body, scope);
            }
            i += 1;
        }
    }

    /// Where a path starting with `start` points, when it is one of ours.
    fn base(&self, start: &str, scope: &ModPath) -> Option<ModPath> {
        match start {
            "crate" => Some(Vec::new()),
            "self" => Some(scope.clone()),
            "super" => {
                let mut p = scope.clone();
                p.pop()?;
                Some(p)
            }
            child if self.children.contains(child) => {
                let mut p = self.file.clone();
                p.push(child.to_owned());
                Some(p)
            }
            _ => None,
        }
    }

    /// Reads the rest of a path from `i` (just past a `::`), records it, and
    /// returns the index after it. Use-tree groups `{a, b::c}` branch.
    fn path(
        &mut self,
        tokens: &[Tok],
        mut i: usize,
        mut at: ModPath,
        mut text: String,
        line: usize,
    ) -> usize {
        loop {
            match tokens.get(i) {
                Some(Tok::Ident(s, _)) => {
                    text.push_str("::");
                    text.push_str(s);
                    match s.as_str() {
                        "super" => {
                            at.pop();
                        }
                        "self" => {}
                        _ => at.push(s.clone()),
                    }
                    i += 1;
                    if tokens.get(i) == Some(&Tok::Sep) {
                        i += 1;
                        continue;
                    }
                    break;
                }
                Some(Tok::Group('{', body)) => {
                    for item in body.split(|t| *t == Tok::Punct(',')) {
                        let text = text.clone();
                        match item {
                            [] => {}
                            // `self` or `*` in a group names the prefix itself.
                            [Tok::Punct('*')] => self.record(at.clone(), text, line),
                            [Tok::Ident(s, _)] if s == "self" => {
                                self.record(at.clone(), text, line)
                            }
                            _ => {
                                self.path(item, 0, at.clone(), text, line);
                            }
                        }
                    }
                    return i + 1;
                }
                _ => break,
            }
        }
        self.record(at, text, line);
        i
    }

    fn record(&mut self, at: ModPath, path: String, line: usize) {
        self.found.push((at, Use { line, path }));
    }
}

#[cfg(test)]
mod planted {
    //! The checks fail on what they are meant to catch, in made-up trees.

    use super::*;

    fn tree(files: &[(&str, &str)]) -> Vec<String> {
        let files: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
            .collect();
        Graph::build(&files).expect("tokens").problems()
    }

    const LIB: &str = "pub mod sip; pub mod config; pub mod proxy; pub mod admin;";

    /// A tree of the crate root, `sip`, `config` and `proxy` (the last two empty
    /// unless given) must pass.
    fn assert_clean(sip: &str, more: &[(&str, &str)]) {
        let mut files = vec![
            ("lib.rs", LIB),
            ("sip/mod.rs", sip),
            ("config/mod.rs", ""),
            ("proxy/mod.rs", ""),
        ];
        for (path, text) in more {
            files.retain(|(p, _)| p != path);
            files.push((path, text));
        }
        let p = tree(&files);
        assert!(p.is_empty(), "{p:#?}");
    }

    #[test]
    fn a_clean_tree_passes() {
        assert_clean(
            "mod error; mod message; pub use message::Message;",
            &[
                ("sip/error.rs", "pub struct ParseError;"),
                (
                    "sip/message.rs",
                    "use super::error::ParseError; pub struct Message;",
                ),
                (
                    "config/mod.rs",
                    "use crate::sip::Message; use crate::admin::x;",
                ),
                ("proxy/mod.rs", "use crate::{config, sip::{self, Message}};"),
                ("admin/mod.rs", "pub fn x() {}"),
            ],
        );
    }

    #[test]
    fn a_cycle_through_a_facade_is_reported_with_its_lines() {
        let p = tree(&[
            ("lib.rs", LIB),
            (
                "sip/mod.rs",
                "mod error;\nmod message;\npub use message::Message;",
            ),
            (
                "sip/error.rs",
                "use crate::sip::Message;\npub struct ParseError;",
            ),
            ("sip/message.rs", "use super::error::ParseError;"),
        ]);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].starts_with("import cycle between 3 files"), "{}", p[0]);
        assert!(
            p[0].contains("src/sip/error.rs:1: `crate::sip::Message`"),
            "{}",
            p[0]
        );
        assert!(
            p[0].contains("src/sip/mod.rs:3: `message::Message`"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn a_two_file_cycle_in_a_use_group_inside_a_function() {
        let p = tree(&[
            ("lib.rs", LIB),
            ("proxy/mod.rs", "mod a; mod b;"),
            ("proxy/a.rs", "fn f() { super::b::g(); }"),
            ("proxy/b.rs", "use super::{a::{self}, mod_x};"),
        ]);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("src/proxy/a.rs:1: `super::b::g`"), "{}", p[0]);
        assert!(p[0].contains("src/proxy/b.rs:1"), "{}", p[0]);
    }

    #[test]
    fn upward_and_leaf_dependencies_are_reported() {
        let p = tree(&[
            ("lib.rs", LIB),
            (
                "sip/mod.rs",
                "pub fn f() { let _ = crate::config::Codec::PCMA; }",
            ),
            ("config/mod.rs", "pub enum Codec { PCMA }"),
            ("admin/mod.rs", "use crate::proxy::Core;"),
            ("proxy/mod.rs", "pub struct Core;"),
        ]);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(
            p.iter().any(|m| m.contains("src/sip/mod.rs:1")
                && m.contains("`sip` depends upward on `config`")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("leaf `admin` depends on layer `proxy`")),
            "{p:#?}"
        );
    }

    #[test]
    fn comments_strings_docs_and_inline_test_modules_do_not_count() {
        assert_clean(
            "//! [`crate::config::X`]\n/// crate::proxy::Y\nconst S: &str = \"crate::proxy::Z\";\n\
             // crate::proxy::W\n#[cfg(test)] mod tests { use super::*; fn t() { self::f(); } }\n\
             pub(in crate::proxy) struct V; pub(crate) fn g() {}",
            &[],
        );
    }

    #[test]
    fn literals_lifetimes_and_nested_comments_are_skipped() {
        let p = tree(&[
            ("lib.rs", LIB),
            (
                "sip/mod.rs",
                "/* outer /* crate::proxy::A */ crate::proxy::B */\n\
                 fn f<'a>(x: &'a str) -> char { let _ = r#\"crate::proxy::C \" \"#; \
                 let _ = b\"crate::proxy::D\"; let _ = '\\''; let _ = b'x'; 'outer: loop { break 'outer; } '{' }\n\
                 fn g() { crate::config::x(); }",
            ),
            ("config/mod.rs", ""),
            ("proxy/mod.rs", ""),
        ]);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("src/sip/mod.rs:3: `crate::config::x`"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn a_module_outside_the_table_is_reported() {
        let p = tree(&[("lib.rs", "pub mod misc;"), ("misc/mod.rs", "")]);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains("`misc` is in neither LAYERS nor LEAVES"),
            "{}",
            p[0]
        );
    }
}
