//! The segment tree routes are stored in (Pistache's `SegmentTreeNode`).
//!
//! A route pattern is split on `/` into segments; each segment is one edge
//! of the tree:
//!
//! * a fixed segment (`users`) is a hash-map edge, so finding it costs the
//!   same with 10 or 10 000 siblings;
//! * `:name` matches any one segment and captures it;
//! * `:name?` matches one segment or none;
//! * `*` matches any one segment and captures it as a splat.
//!
//! Lookup walks the request path one segment at a time and tries, at every
//! node, fixed > parameter > optional > splat, backtracking when a branch
//! leads nowhere. Its cost depends on the number of segments of the path
//! (and on how many *different kinds* of edges leave each node), never on
//! the number of routes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One parsed segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches exactly this text.
    Fixed(String),
    /// `:name`: matches and captures any one segment.
    Param(Arc<str>),
    /// `:name?`: matches one segment or none.
    Optional(Arc<str>),
    /// `*`: matches any one segment, captured as a splat.
    Splat,
}

/// Splits a path into its non-empty segments: repeated slashes collapse and
/// leading or trailing slashes do not count (Pistache's `sanitizeResource`).
pub(crate) fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Parses a route pattern such as `/users/:id/files/*` into segments.
pub(crate) fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    if !pattern.starts_with('/') {
        return Err(format!("route {pattern:?} must start with '/'"));
    }
    let mut names: Vec<&str> = Vec::new();
    let mut segments = Vec::new();
    for seg in split_path(pattern) {
        let parsed = if seg == "*" {
            Segment::Splat
        } else if let Some(name) = seg.strip_prefix(':') {
            let (name, optional) = match name.strip_suffix('?') {
                Some(n) => (n, true),
                None => (name, false),
            };
            if name.is_empty() || name.contains([':', '?', '*']) {
                return Err(format!("route {pattern:?}: bad parameter segment {seg:?}"));
            }
            if names.contains(&name) {
                return Err(format!(
                    "route {pattern:?}: parameter :{name} appears twice"
                ));
            }
            names.push(name);
            if optional {
                Segment::Optional(name.into())
            } else {
                Segment::Param(name.into())
            }
        } else {
            Segment::Fixed(seg.to_owned())
        };
        segments.push(parsed);
    }
    Ok(segments)
}

/// What a successful lookup captured. Names borrow from the tree, values
/// from the path.
#[derive(Debug, Default)]
pub(crate) struct Captures<'t, 'p> {
    /// `(name, raw value)` of each matched parameter, in path order.
    pub(crate) params: Vec<(&'t Arc<str>, &'p str)>,
    /// The raw segments matched by `*`, in path order.
    pub(crate) splats: Vec<&'p str>,
}

/// A node of the segment tree; `T` is what a complete route stores.
pub(crate) struct Node<T> {
    value: Option<T>,
    fixed: HashMap<String, Node<T>>,
    params: Vec<(Arc<str>, Node<T>)>,
    optionals: Vec<(Arc<str>, Node<T>)>,
    splat: Option<Box<Node<T>>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            value: None,
            fixed: HashMap::new(),
            params: Vec::new(),
            optionals: Vec::new(),
            splat: None,
        }
    }
}

impl<T> fmt::Debug for Node<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("has_value", &self.value.is_some())
            .field("fixed", &self.fixed.keys().collect::<Vec<_>>())
            .field(
                "params",
                &self.params.iter().map(|p| &p.0).collect::<Vec<_>>(),
            )
            .field(
                "optionals",
                &self.optionals.iter().map(|p| &p.0).collect::<Vec<_>>(),
            )
            .field("splat", &self.splat.is_some())
            .finish()
    }
}

impl<T> Node<T> {
    /// The value slot of the node reached by `segments`, creating the path.
    pub(crate) fn entry(&mut self, segments: &[Segment]) -> &mut Option<T> {
        let Some((first, rest)) = segments.split_first() else {
            return &mut self.value;
        };
        let child = match first {
            Segment::Fixed(text) => self.fixed.entry(text.clone()).or_default(),
            Segment::Param(name) => named_child(&mut self.params, name),
            Segment::Optional(name) => named_child(&mut self.optionals, name),
            Segment::Splat => self.splat.get_or_insert_with(Box::default),
        };
        child.entry(rest)
    }

    /// The value slot of the node reached by `segments`, if it exists.
    pub(crate) fn get_mut(&mut self, segments: &[Segment]) -> Option<&mut Option<T>> {
        let Some((first, rest)) = segments.split_first() else {
            return Some(&mut self.value);
        };
        let child = match first {
            Segment::Fixed(text) => self.fixed.get_mut(text.as_str())?,
            Segment::Param(name) => find_named(&mut self.params, name)?,
            Segment::Optional(name) => find_named(&mut self.optionals, name)?,
            Segment::Splat => self.splat.as_deref_mut()?,
        };
        child.get_mut(rest)
    }

    /// Drops the branches that no longer lead to any value.
    pub(crate) fn prune(&mut self) -> bool {
        self.fixed.retain(|_, child| !child.prune());
        self.params.retain_mut(|(_, child)| !child.prune());
        self.optionals.retain_mut(|(_, child)| !child.prune());
        if self.splat.as_deref_mut().is_some_and(Node::prune) {
            self.splat = None;
        }
        self.is_empty()
    }

    fn is_empty(&self) -> bool {
        self.value.is_none()
            && self.fixed.is_empty()
            && self.params.is_empty()
            && self.optionals.is_empty()
            && self.splat.is_none()
    }

    /// Finds the value for `segments` (a sanitised request path) that
    /// `accept` agrees to, trying fixed > param > optional > splat at each
    /// node and backtracking.
    pub(crate) fn find<'t, 'p>(
        &'t self,
        segments: &[&'p str],
        accept: &dyn Fn(&T) -> bool,
        captures: &mut Captures<'t, 'p>,
    ) -> Option<&'t T> {
        let Some((&segment, rest)) = segments.split_first() else {
            if let Some(value) = self.value.as_ref().filter(|v| accept(v)) {
                return Some(value);
            }
            // Trailing optional parameters may all be absent.
            return self
                .optionals
                .iter()
                .find_map(|(_, child)| child.find(segments, accept, captures));
        };
        if let Some(child) = self.fixed.get(segment) {
            if let Some(found) = child.find(rest, accept, captures) {
                return Some(found);
            }
        }
        for (name, child) in &self.params {
            captures.params.push((name, segment));
            if let Some(found) = child.find(rest, accept, captures) {
                return Some(found);
            }
            captures.params.pop();
        }
        for (name, child) in &self.optionals {
            captures.params.push((name, segment));
            if let Some(found) = child.find(rest, accept, captures) {
                return Some(found);
            }
            captures.params.pop();
            // The optional segment may be absent: the same path continues
            // below it.
            if let Some(found) = child.find(segments, accept, captures) {
                return Some(found);
            }
        }
        if let Some(child) = &self.splat {
            captures.splats.push(segment);
            if let Some(found) = child.find(rest, accept, captures) {
                return Some(found);
            }
            captures.splats.pop();
        }
        None
    }

    /// Every value in the tree.
    pub(crate) fn values(&self) -> Vec<&T> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'t>(&'t self, out: &mut Vec<&'t T>) {
        out.extend(self.value.as_ref());
        let mut fixed: Vec<_> = self.fixed.iter().collect();
        fixed.sort_by(|a, b| a.0.cmp(b.0));
        for (_, child) in fixed {
            child.collect(out);
        }
        for (_, child) in self.params.iter().chain(&self.optionals) {
            child.collect(out);
        }
        if let Some(child) = &self.splat {
            child.collect(out);
        }
    }
}

fn named_child<'a, T>(
    children: &'a mut Vec<(Arc<str>, Node<T>)>,
    name: &Arc<str>,
) -> &'a mut Node<T> {
    let index = match children.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            children.push((Arc::clone(name), Node::default()));
            children.len() - 1
        }
    };
    &mut children[index].1
}

fn find_named<'a, T>(
    children: &'a mut [(Arc<str>, Node<T>)],
    name: &Arc<str>,
) -> Option<&'a mut Node<T>> {
    children
        .iter_mut()
        .find(|(n, _)| n == name)
        .map(|(_, child)| child)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of patterns whose values are the patterns themselves.
    fn tree(patterns: &[&str]) -> Node<String> {
        let mut root = Node::default();
        for p in patterns {
            let slot = root.entry(&parse_pattern(p).unwrap());
            assert!(slot.is_none(), "duplicate {p}");
            *slot = Some((*p).to_owned());
        }
        root
    }

    /// `(pattern, params, splats)` matched by a path.
    type Found = (String, Vec<(String, String)>, Vec<String>);

    /// What `path` matches.
    fn lookup(root: &Node<String>, path: &str) -> Option<Found> {
        let segments: Vec<&str> = split_path(path).collect();
        let mut captures = Captures::default();
        let found = root.find(&segments, &|_| true, &mut captures)?;
        Some((
            found.clone(),
            captures
                .params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            captures.splats.iter().map(|s| s.to_string()).collect(),
        ))
    }

    fn pattern_of(root: &Node<String>, path: &str) -> Option<String> {
        lookup(root, path).map(|(p, _, _)| p)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn patterns_parse() {
        assert_eq!(
            parse_pattern("//a/:b/:c?/*/").unwrap(),
            vec![
                Segment::Fixed("a".into()),
                Segment::Param("b".into()),
                Segment::Optional("c".into()),
                Segment::Splat,
            ]
        );
        assert_eq!(parse_pattern("/").unwrap(), vec![]);
        assert!(parse_pattern("no-slash").is_err());
        assert!(parse_pattern("/a/:").is_err());
        assert!(parse_pattern("/a/:?").is_err());
        assert!(parse_pattern("/:a/:a").is_err());
        assert!(parse_pattern("/:a:b").is_err());
    }

    #[test]
    fn fixed_routes() {
        let root = tree(&["/v1/hello", "/a/b/c", "/"]);
        assert_eq!(pattern_of(&root, "/v1/hello").as_deref(), Some("/v1/hello"));
        assert_eq!(pattern_of(&root, "/v2/hello"), None);
        assert_eq!(pattern_of(&root, "/v1/hell0"), None);
        assert_eq!(pattern_of(&root, "/v1"), None);
        assert_eq!(pattern_of(&root, "/v1/hello/there"), None);
        assert_eq!(pattern_of(&root, "/a/b/c").as_deref(), Some("/a/b/c"));
        assert_eq!(pattern_of(&root, "/").as_deref(), Some("/"));
        assert_eq!(pattern_of(&root, "").as_deref(), Some("/"));
    }

    #[test]
    fn parameters() {
        let root = tree(&["/v1/hello/:name/", "/greetings/:from/:to"]);
        let (_, params, _) = lookup(&root, "/v1/hello/joe").unwrap();
        assert_eq!(params, pairs(&[("name", "joe")]));
        let (_, params, _) = lookup(&root, "/greetings/foo/bar").unwrap();
        assert_eq!(params, pairs(&[("from", "foo"), ("to", "bar")]));
        assert_eq!(pattern_of(&root, "/greetings/foo"), None);
        assert_eq!(pattern_of(&root, "/greetings/foo/bar/baz"), None);
    }

    #[test]
    fn optional_parameters() {
        let root = tree(&["/get/:key?/bar"]);
        let (_, params, _) = lookup(&root, "/get/bar").unwrap();
        assert!(params.is_empty());
        let (_, params, _) = lookup(&root, "/get/foo/bar").unwrap();
        assert_eq!(params, pairs(&[("key", "foo")]));
        assert_eq!(pattern_of(&root, "/get/foo"), None);

        let root = tree(&["/list/:page?"]);
        let (_, params, _) = lookup(&root, "/list").unwrap();
        assert!(params.is_empty());
        let (_, params, _) = lookup(&root, "/list/3").unwrap();
        assert_eq!(params, pairs(&[("page", "3")]));
        assert_eq!(pattern_of(&root, "/list/3/4"), None);
    }

    #[test]
    fn splats() {
        let root = tree(&["/say/*/to/*"]);
        let (_, _, splats) = lookup(&root, "/say/hello/to/user").unwrap();
        assert_eq!(splats, ["hello", "user"]);
        assert_eq!(pattern_of(&root, "/say/hello/to"), None);
        assert_eq!(pattern_of(&root, "/say/hello/to/user/please"), None);
    }

    #[test]
    fn slashes_are_sanitised() {
        let root = tree(&["/path", "//a///b/"]);
        for path in ["/path", "/path/", "//path", "///path//", "path"] {
            assert_eq!(pattern_of(&root, path).as_deref(), Some("/path"), "{path}");
        }
        for path in ["/a/b", "/a//b", "/a/b/", "//a/b//"] {
            assert_eq!(
                pattern_of(&root, path).as_deref(),
                Some("//a///b/"),
                "{path}"
            );
        }
    }

    #[test]
    fn precedence_fixed_param_optional_splat() {
        let root = tree(&["/hello", "/*", "/:name", "/:opt?/x"]);
        assert_eq!(pattern_of(&root, "/hello").as_deref(), Some("/hello"));
        assert_eq!(pattern_of(&root, "/hi").as_deref(), Some("/:name"));
        assert_eq!(pattern_of(&root, "/x").as_deref(), Some("/:name"));

        let root = tree(&["/hello", "/*"]);
        assert_eq!(pattern_of(&root, "/hello").as_deref(), Some("/hello"));
        assert_eq!(pattern_of(&root, "/hi").as_deref(), Some("/*"));

        let root = tree(&["/a/:opt?", "/a/*"]);
        assert_eq!(pattern_of(&root, "/a/z").as_deref(), Some("/a/:opt?"));
        let root = tree(&["/a/:p", "/a/*"]);
        assert_eq!(pattern_of(&root, "/a/z").as_deref(), Some("/a/:p"));
    }

    #[test]
    fn backtracks_out_of_dead_ends() {
        // `/users/new` is fixed but has no `/edit` below it: the parameter
        // branch must still be tried.
        let root = tree(&["/users/new", "/users/:id/edit"]);
        let (pattern, params, _) = lookup(&root, "/users/new/edit").unwrap();
        assert_eq!(pattern, "/users/:id/edit");
        assert_eq!(params, pairs(&[("id", "new")]));
    }

    #[test]
    fn accept_filters_values() {
        let root = tree(&["/users/new", "/users/:id"]);
        let segments: Vec<&str> = split_path("/users/new").collect();
        let mut captures = Captures::default();
        let found = root.find(&segments, &|v: &String| v.contains(':'), &mut captures);
        assert_eq!(found.map(String::as_str), Some("/users/:id"));
        assert_eq!(captures.params.len(), 1);
    }

    #[test]
    fn remove_and_prune() {
        let mut root = tree(&["/a/b", "/a/:c/d"]);
        let slot = root.get_mut(&parse_pattern("/a/:c/d").unwrap()).unwrap();
        assert!(slot.take().is_some());
        root.prune();
        assert_eq!(pattern_of(&root, "/a/x/d"), None);
        assert!(root.get_mut(&parse_pattern("/a/:c/d").unwrap()).is_none());
        assert!(root.get_mut(&parse_pattern("/zzz").unwrap()).is_none());
        assert_eq!(pattern_of(&root, "/a/b").as_deref(), Some("/a/b"));
        assert_eq!(root.values().len(), 1);
    }
}
