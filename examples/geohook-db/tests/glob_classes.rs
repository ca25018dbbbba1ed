//! `Glob::with_classes` (Redis's syntax: `*`, `?`, `[abc]`, `[a-z]`,
//! `[^x]` / `[!x]`, `\` escapes) against the backtracking matcher it
//! replaced in the server, kept here as the oracle, and a hostile pattern
//! answered in linear time.

use geohook_db::Glob;
use proptest::prelude::*;

fn matches(pat: &str, s: &str) -> bool {
    Glob::with_classes(pat).is_match(s)
}

/// The backtracking matcher this module used before: the oracle.
fn naive(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`, so a
    // hostile pattern cannot make it exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class(&p, pi, t[ti]) {
                        if ok {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() => {}
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns the
/// result and the index after `]`, or `None` if the class is unterminated.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && (p[i] == '^' || p[i] == '!');
    if negate {
        i += 1;
    }
    let mut hit = false;
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
            let hi = p[i + 2];
            if lo <= c && c <= hi {
                hit = true;
            }
            i += 3;
        } else {
            if lo == c {
                hit = true;
            }
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    Some((hit != negate, i + 1))
}

#[test]
fn table() {
    for (pat, s, want) in [
        ("*", "", true),
        ("*", "abc", true),
        ("mykey*1", "mykey11", true),
        ("mykey*1", "mykey310", false),
        ("mykey", "mykey11", false),
        ("mykey[^3]*", "mykey31", false),
        ("mykey[^3]*", "mykey42", true),
        ("a?c", "abc", true),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aee", false),
        ("truck*", "truck1", true),
        ("*aof*", "aofshrink-min-size", true),
        ("a\\*", "a*", true),
        ("a\\*", "ab", false),
    ] {
        assert_eq!(matches(pat, s), want, "{pat} vs {s}");
    }
}

proptest! {
    #[test]
    fn agrees_with_the_backtracking_matcher(
        pat in "[ab*?\\[\\]^!\\\\-]{0,10}",
        s in "[ab\\[\\]*-]{0,12}",
    ) {
        prop_assert_eq!(matches(&pat, &s), naive(&pat, &s), "{} vs {}", pat, s);
    }
}

#[test]
fn a_hostile_pattern_is_answered() {
    let pat = "*a".repeat(5_000) + "b";
    assert!(!matches(&pat, &"a".repeat(20_000)));
}
