//! Comparing texts: edit distance, and what counts as "the same text" from
//! one frame to the next.

/// Levenshtein distance in characters (insertions, deletions and
/// substitutions cost 1).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `1 − distance / length of the longer`, in 0..=1; two empty texts are
/// the same (1).
pub fn similarity(a: &str, b: &str) -> f32 {
    let longer = a.chars().count().max(b.chars().count());
    if longer == 0 {
        return 1.0;
    }
    1.0 - edit_distance(a, b) as f32 / longer as f32
}

/// Whitespace runs (line breaks included) collapsed to one space, ends trimmed.
pub fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_characters_not_bytes() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("naïve", "naive"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn similarity_and_normalise() {
        assert_eq!(similarity("", ""), 1.0);
        assert_eq!(similarity("abcd", "abce"), 0.75);
        assert_eq!(
            normalise("  Invoice\t4471\n is  overdue "),
            "Invoice 4471 is overdue"
        );
    }
}
