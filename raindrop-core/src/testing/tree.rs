//! Spans arranged as trees, each span placed once: recorded spans are
//! input, and input may name a parent that loops back (a span that is its
//! own parent, two spans naming each other) or reuse one `span_id` for
//! many spans. Following parent ids naively then never ends (or, with a
//! depth cut, repeats shared subtrees exponentially); here every span is
//! visited once, so a tree costs time and memory linear in its spans.

use std::collections::HashMap;

use super::record::RecordedSpan;

/// Span trees deeper than this are cut (the spans below are counted, not
/// shown).
pub const MAX_DEPTH: usize = 64;

/// One span in a tree built by [`span_tree`], with its children.
#[derive(Debug, Clone)]
pub struct SpanNode<'a> {
    /// The span.
    pub span: &'a RecordedSpan,
    /// No root leads to it: its parent chain loops back on itself (or it
    /// hangs below such a loop). Shown at the top level, once.
    pub cycle: bool,
    /// Another span among those given has the same `span_id`: its children
    /// are shown under the first of them reached.
    pub duplicate_id: bool,
    /// Its children, by start time.
    pub children: Vec<SpanNode<'a>>,
    /// Descendants not shown because they are more than
    /// [`MAX_DEPTH`] levels deep.
    pub hidden: usize,
}

impl SpanNode<'_> {
    /// Spans shown in this tree: this one and every one below it (not the
    /// [`hidden`](SpanNode::hidden) ones).
    pub fn span_count(&self) -> usize {
        1 + self
            .children
            .iter()
            .map(SpanNode::span_count)
            .sum::<usize>()
    }
}

/// `spans` as trees: the roots (spans whose parent is not among `spans`) by
/// start time, each with its descendants; then, marked
/// [`cycle`](SpanNode::cycle), the spans no root leads to. Every span
/// appears exactly once (or is counted in a [`hidden`](SpanNode::hidden)).
///
/// ```
/// use raindrop_core::testing::{span_tree, RecordedSpan};
///
/// // Two spans with one id, each naming that id as its parent.
/// let span = |name: &str| RecordedSpan {
///     span_id: "a".into(),
///     parent_span_id: Some("a".into()),
///     name: name.into(),
///     ..Default::default()
/// };
/// let (x, y) = (span("x"), span("y"));
/// let trees = span_tree(&[&x, &y]);
/// assert_eq!(trees.len(), 1);
/// assert!(trees[0].cycle && trees[0].duplicate_id);
/// assert_eq!(trees[0].span_count(), 2, "each span once");
/// ```
pub fn span_tree<'a>(spans: &[&'a RecordedSpan]) -> Vec<SpanNode<'a>> {
    let mut ids: HashMap<&str, (usize, usize)> = HashMap::new(); // id -> (count, first index)
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        ids.entry(s.span_id.as_str()).or_insert((0, i)).0 += 1;
        if let Some(p) = s.parent_span_id.as_deref() {
            children.entry(p).or_default().push(i);
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| spans[i].start_ns);
    }
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans[i].start_ns);
    let mut b = Builder {
        spans,
        ids,
        children,
        visited: vec![false; spans.len()],
    };
    let mut trees = Vec::new();
    for &i in &order {
        let is_root = spans[i]
            .parent_span_id
            .as_deref()
            .is_none_or(|p| !b.ids.contains_key(p));
        if is_root && !b.visited[i] {
            b.visited[i] = true;
            trees.push(b.build(i, 0));
        }
    }
    // What is left is reached from no root. Walk up from it until a span
    // repeats: that span is on the loop, and every span left hangs below one.
    let mut walked = vec![false; spans.len()];
    for &i in &order {
        if b.visited[i] {
            continue;
        }
        let mut at = i;
        while !walked[at] {
            walked[at] = true;
            match spans[at]
                .parent_span_id
                .as_deref()
                .and_then(|p| b.ids.get(p))
            {
                Some(&(_, parent)) => at = parent,
                None => break,
            }
        }
        b.visited[at] = true;
        let mut tree = b.build(at, 0);
        tree.cycle = true;
        trees.push(tree);
    }
    trees
}

struct Builder<'s, 'a> {
    spans: &'s [&'a RecordedSpan],
    ids: HashMap<&'a str, (usize, usize)>,
    /// Parent id → children, taken out when first used: every child is
    /// placed then, so a second span with that id has none left.
    children: HashMap<&'a str, Vec<usize>>,
    visited: Vec<bool>,
}

impl<'a> Builder<'_, 'a> {
    /// The tree below `i` (already marked visited), `depth` levels down.
    fn build(&mut self, i: usize, depth: usize) -> SpanNode<'a> {
        let span = self.spans[i];
        let mut node = SpanNode {
            span,
            cycle: false,
            duplicate_id: self.ids.get(span.span_id.as_str()).is_some_and(|c| c.0 > 1),
            children: Vec::new(),
            hidden: 0,
        };
        for c in self.take_children(span) {
            if self.visited[c] {
                continue;
            }
            self.visited[c] = true;
            if depth >= MAX_DEPTH {
                node.hidden += 1 + self.hide_below(c);
            } else {
                node.children.push(self.build(c, depth + 1));
            }
        }
        node
    }

    /// Marks everything below `i` visited without building it (no
    /// recursion: the chain can be as long as the input); returns how many.
    fn hide_below(&mut self, i: usize) -> usize {
        let mut hidden = 0;
        let mut stack = vec![i];
        while let Some(at) = stack.pop() {
            for c in self.take_children(self.spans[at]) {
                if !self.visited[c] {
                    self.visited[c] = true;
                    hidden += 1;
                    stack.push(c);
                }
            }
        }
        hidden
    }

    fn take_children(&mut self, span: &RecordedSpan) -> Vec<usize> {
        self.children
            .remove(span.span_id.as_str())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, start: u128) -> RecordedSpan {
        RecordedSpan {
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: format!("{id}@{start}"),
            start_ns: start,
            ..Default::default()
        }
    }

    fn total(trees: &[SpanNode<'_>]) -> usize {
        trees.iter().map(|t| t.span_count() + hidden(t)).sum()
    }

    fn hidden(t: &SpanNode<'_>) -> usize {
        t.hidden + t.children.iter().map(hidden).sum::<usize>()
    }

    #[test]
    fn a_plain_tree_is_ordered_by_start() {
        let spans = [
            span("r", None, 1),
            span("b", Some("r"), 3),
            span("a", Some("r"), 2),
        ];
        let refs: Vec<&RecordedSpan> = spans.iter().collect();
        let trees = span_tree(&refs);
        assert_eq!(trees.len(), 1);
        let names: Vec<&str> = trees[0]
            .children
            .iter()
            .map(|c| c.span.span_id.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(!trees[0].cycle && !trees[0].duplicate_id);
    }

    #[test]
    fn hostile_parents_place_each_span_once() {
        // A root and two spans reusing its id, naming it as parent: the
        // naive walk doubles at every level.
        let spans = [
            span("a", None, 1),
            span("a", Some("a"), 2),
            span("a", Some("a"), 3),
        ];
        let refs: Vec<&RecordedSpan> = spans.iter().collect();
        let trees = span_tree(&refs);
        assert_eq!(total(&trees), 3);
        assert!(trees[0].duplicate_id && !trees[0].cycle);

        // A two-span loop with a third hanging below it, no root at all.
        let spans = [
            span("c", Some("b"), 1),
            span("a", Some("b"), 2),
            span("b", Some("a"), 3),
        ];
        let refs: Vec<&RecordedSpan> = spans.iter().collect();
        let trees = span_tree(&refs);
        assert_eq!(trees.len(), 1, "{trees:?}");
        assert!(trees[0].cycle);
        assert_eq!(total(&trees), 3);

        // 1,000 spans with one id, all self-parented.
        let spans: Vec<RecordedSpan> = (0..1000).map(|i| span("x", Some("x"), i)).collect();
        let refs: Vec<&RecordedSpan> = spans.iter().collect();
        let trees = span_tree(&refs);
        assert_eq!(total(&trees), 1000);
    }

    #[test]
    fn a_long_chain_is_cut_and_counted() {
        let spans: Vec<RecordedSpan> = (0..10_000u32)
            .map(|i| {
                let parent = i.checked_sub(1).map(|p| p.to_string());
                span(&i.to_string(), parent.as_deref(), u128::from(i))
            })
            .collect();
        let refs: Vec<&RecordedSpan> = spans.iter().collect();
        let trees = span_tree(&refs);
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].span_count(), MAX_DEPTH + 1);
        assert_eq!(total(&trees), 10_000);
    }
}
