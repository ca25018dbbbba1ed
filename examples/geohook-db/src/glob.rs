//! Glob matching in time linear in the text: a bit-parallel simulation of the
//! pattern's automaton, `O(len(text) × ⌈len(pattern) / 64⌉)` word operations
//! and `O(len(pattern))` memory, with no backtracking whatever the input.
//!
//! A backtracking matcher (even the classic one with a single star
//! backtrack point) costs `O(len(text) × len(pattern))` character
//! comparisons on patterns such as `*a*a*a…b`; this one keeps, for every
//! position of the pattern, one bit saying whether the text read so far can
//! end there, and advances all positions at once for each character.

use std::collections::HashMap;

/// One element of a compiled pattern.
#[derive(Debug, Clone)]
enum Atom {
    /// Any sequence of characters, the empty one included.
    Star,
    /// Exactly this character.
    Lit(char),
    /// Any one character.
    Any,
    /// One character in (or, when negated, not in) the ranges.
    Class(Class),
}

/// A character class: inclusive ranges, possibly negated.
#[derive(Debug, Clone)]
struct Class {
    negate: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negate
    }
}

/// A compiled glob pattern.
///
/// [`Glob::new`] reads Tile38's MATCH syntax: `*` and `?`, every other
/// character literal. [`Glob::with_classes`] reads Redis's syntax, which
/// adds `[abc]`, `[a-z]`, `[^x]` / `[!x]` and `\` escapes.
#[derive(Debug, Clone)]
pub struct Glob {
    /// Number of atoms; bit `j` of a state means "the first `j` atoms
    /// matched the text read so far".
    len: usize,
    /// Words per state (`len + 1` bits).
    words: usize,
    /// Bits of the atoms that are stars.
    stars: Vec<u64>,
    /// Bits of the atoms that match any one character.
    any: Vec<u64>,
    /// Bits of each literal character's atoms.
    lits: HashMap<char, Vec<u64>>,
    /// The class atoms, by position, tested per character.
    classes: Vec<(usize, Class)>,
}

impl Glob {
    /// Compiles a pattern with `*` and `?` (Tile38's MATCH).
    pub fn new(pattern: &str) -> Glob {
        let atoms = pattern
            .chars()
            .map(|c| match c {
                '*' => Atom::Star,
                '?' => Atom::Any,
                c => Atom::Lit(c),
            })
            .collect();
        Glob::compile(atoms)
    }

    /// Compiles a pattern in Redis's syntax (`CONFIG GET`, `KEYS`): `*`, `?`,
    /// `[abc]`, `[a-z]`, `[^x]` / `[!x]` and `\` escapes. An unterminated
    /// `[` is a literal `[`.
    pub fn with_classes(pattern: &str) -> Glob {
        let p: Vec<char> = pattern.chars().collect();
        let mut atoms = Vec::with_capacity(p.len());
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                '*' => atoms.push(Atom::Star),
                '?' => atoms.push(Atom::Any),
                '\\' if i + 1 < p.len() => {
                    i += 1;
                    atoms.push(Atom::Lit(p[i]));
                }
                '[' => match class(&p, i) {
                    Some((class, next)) => {
                        atoms.push(Atom::Class(class));
                        i = next;
                        continue;
                    }
                    None => atoms.push(Atom::Lit('[')),
                },
                c => atoms.push(Atom::Lit(c)),
            }
            i += 1;
        }
        Glob::compile(atoms)
    }

    fn compile(mut atoms: Vec<Atom>) -> Glob {
        // Consecutive stars are one star; this keeps the closure one step.
        atoms.dedup_by(|a, b| matches!((a, b), (Atom::Star, Atom::Star)));
        let len = atoms.len();
        let words = len / 64 + 1;
        let mut g = Glob {
            len,
            words,
            stars: vec![0; words],
            any: vec![0; words],
            lits: HashMap::new(),
            classes: Vec::new(),
        };
        for (j, a) in atoms.into_iter().enumerate() {
            match a {
                Atom::Star => set(&mut g.stars, j),
                Atom::Any => set(&mut g.any, j),
                Atom::Lit(c) => set(g.lits.entry(c).or_insert_with(|| vec![0; words]), j),
                Atom::Class(class) => g.classes.push((j, class)),
            }
        }
        g
    }

    /// True when the whole of `text` matches the pattern.
    pub fn is_match(&self, text: &str) -> bool {
        let w = self.words;
        let mut state = vec![0u64; w];
        let mut next = vec![0u64; w];
        let mut step = vec![0u64; w];
        state[0] = 1;
        self.close(&mut state);
        for c in text.chars() {
            // Atoms that consume `c`: `?`, this literal, matching classes.
            step.copy_from_slice(&self.any);
            if let Some(l) = self.lits.get(&c) {
                for (s, b) in step.iter_mut().zip(l) {
                    *s |= b;
                }
            }
            for (j, class) in &self.classes {
                if class.matches(c) {
                    set(&mut step, *j);
                }
            }
            // next = ((state & step) << 1) | (state & stars)
            let mut carry = 0u64;
            let mut alive = 0u64;
            let words = next.iter_mut().zip(&state).zip(&step).zip(&self.stars);
            for (((n, &st), &sp), &stars) in words {
                let moved = st & sp;
                *n = (moved << 1) | carry | (st & stars);
                carry = moved >> 63;
                alive |= *n;
            }
            if alive == 0 {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut state, &mut next);
        }
        state[self.len / 64] >> (self.len % 64) & 1 == 1
    }

    /// Adds the positions reached by skipping a star: `s |= (s & stars) << 1`.
    /// One step suffices because no two stars are adjacent.
    fn close(&self, s: &mut [u64]) {
        let mut carry = 0u64;
        for (word, stars) in s.iter_mut().zip(&self.stars) {
            let skip = *word & stars;
            *word |= (skip << 1) | carry;
            carry = skip >> 63;
        }
    }
}

fn set(bits: &mut [u64], j: usize) {
    bits[j / 64] |= 1 << (j % 64);
}

/// Reads the class that starts at `p[start] == '['`, and the index after
/// its `]`; `None` if it is unterminated.
/// A `]` right after the opening (or the negation) is a member.
fn class(p: &[char], start: usize) -> Option<(Class, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && (p[i] == '^' || p[i] == '!');
    if negate {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < p.len() && (p[i] != ']' || first) {
        first = false;
        let lo = if p[i] == '\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            p[i]
        };
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            ranges.push((lo, p[i + 2]));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    Some((Class { negate, ranges }, i + 1))
}

#[cfg(test)]
mod tests {
    use super::Glob;
    use proptest::prelude::*;

    #[test]
    fn table() {
        for (pat, s, want) in [
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("**", "abc", true),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("truck*", "truck1", true),
            ("truck*", "bus1", false),
            ("t?uck", "truck", true),
            ("t?uck", "tuck", false),
            ("*a*b*c", "xaybzc", true),
            ("*a*b*c", "xaybzcq", false),
            ("a[b]c", "a[b]c", true),
            ("é*", "éa", true),
        ] {
            assert_eq!(Glob::new(pat).is_match(s), want, "{pat} vs {s}");
            assert_eq!(
                wildmatch::WildMatch::new(pat).matches(s),
                want,
                "{pat} vs {s}"
            );
        }
        // Patterns longer than one word of state.
        let long = "a*".repeat(100) + "b";
        assert!(Glob::new(&long).is_match(&("a".repeat(100) + "b")));
        assert!(!Glob::new(&long).is_match(&"a".repeat(300)));
    }

    #[test]
    fn classes_and_escapes() {
        for (pat, s, want) in [
            ("mykey[^3]*", "mykey31", false),
            ("mykey[^3]*", "mykey42", true),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aee", false),
            ("a[!b]c", "abc", false),
            ("a[]]c", "a]c", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("a[bc", "a[bc", true),
            ("*aof*", "aofshrink-min-size", true),
        ] {
            assert_eq!(Glob::with_classes(pat).is_match(s), want, "{pat} vs {s}");
        }
    }

    #[test]
    fn a_hostile_pattern_costs_one_pass() {
        // 20,000 stars and letters against 40,000 letters: a backtracking
        // matcher makes hundreds of millions of comparisons here; this
        // one makes 40,000 steps of 626 words. No time is asserted: the test
        // only has to finish.
        let pat = "*a".repeat(10_000) + "b";
        let text = "a".repeat(40_000);
        assert!(!Glob::new(&pat).is_match(&text));
        assert!(Glob::new(&pat).is_match(&(text + "b")));
    }

    proptest! {
        #[test]
        fn agrees_with_wildmatch(
            pat in "[ab*?]{0,12}",
            text in "[abc]{0,16}",
        ) {
            prop_assert_eq!(
                Glob::new(&pat).is_match(&text),
                wildmatch::WildMatch::new(&pat).matches(&text)
            );
        }

        #[test]
        fn long_patterns_agree_with_wildmatch(
            pat in "[ab*?]{60,140}",
            text in "[ab]{0,200}",
        ) {
            prop_assert_eq!(
                Glob::new(&pat).is_match(&text),
                wildmatch::WildMatch::new(&pat).matches(&text)
            );
        }
    }
}
