//! BERT WordPiece tokenizer for all-MiniLM-L6-v2 (uncased), written to give
//! exactly the ids that HuggingFace `tokenizers` gives with the model's
//! `tokenizer.json` (checked on a fixture of HF output, `tests/hf_equality.rs`).
//!
//! The pipeline, in HF's order:
//!
//! 1. **Special tokens** `[PAD] [UNK] [CLS] [SEP] [MASK]` are cut out of the
//!    *raw* text first (case-sensitive, leftmost match) and become their ids;
//!    the pieces between them go through the rest.
//! 2. **BertNormalizer**, char by char: drop `\0`, U+FFFD and Cc/Cf/Co
//!    characters except `\t \n \r`; turn whitespace into `' '`; put spaces
//!    around CJK ideographs; NFD and drop nonspacing marks (Mn); lowercase
//!    each char with [`char::to_lowercase`] (so `Σ` is always `σ`; `İ` is
//!    decomposed before, so it becomes plain `i`).
//! 3. **BertPreTokenizer**: split on whitespace, and isolate every
//!    punctuation char (ASCII punctuation, or Unicode category P*).
//! 4. **WordPiece**: greedy longest match, continuations prefixed `##`; a
//!    word with an unmatchable rest, or of more than 100 chars, is one `[UNK]`.
//! 5. `[CLS] … [SEP]`, keeping the first `max_len - 2` tokens; then padding
//!    with `[PAD]` on the right, by [`Tokenizer::encode_batch`].
//!
//! Unicode versions matter: HF classifies characters with the crates
//! `unicode_categories` and `unicode-normalization-alignments`, whose tables
//! are Unicode 9.0 (2016). Newer tables differ on hundreds of code points
//! (marks, punctuation and format characters added since), so this crate uses
//! those same two crates. Whitespace and lowercasing come from Rust's `char`,
//! as in HF, so they follow the compiler's Unicode version.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

/// all-MiniLM-L6-v2's sequence length: `tokenizer.json` truncates to and pads
/// to 128 tokens, `[CLS]` and `[SEP]` included.
pub const MAX_LEN: usize = 128;

/// Words (after normalization) of more characters than this become `[UNK]`.
pub const MAX_WORD_CHARS: usize = 100;

/// The literal tokens cut out of raw text, when the vocab has them.
const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// How [`Tokenizer::encode_batch`] pads its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// To the longest row of the batch: fewest columns, fastest inference.
    Longest,
    /// To this many columns, as `tokenizer.json` says (`Fixed(128)`). A row
    /// longer than that is not cut (HF does not truncate when padding), so
    /// the batch is then as wide as its longest row.
    Fixed(usize),
}

/// Encoded texts as row-major `rows × cols` matrices, ready for ONNX inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Token ids, `[PAD]` (0) after each row's `[SEP]`.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    pub rows: usize,
    pub cols: usize,
}

impl Batch {
    /// BERT's `token_type_ids`: all 0 for single sequences.
    pub fn token_type_ids(&self) -> Vec<i64> {
        vec![0; self.rows * self.cols]
    }

    /// Row `i` of `input_ids`.
    pub fn ids(&self, i: usize) -> &[i64] {
        &self.input_ids[i * self.cols..(i + 1) * self.cols]
    }

    /// Row `i` of `attention_mask`.
    pub fn mask(&self, i: usize) -> &[i64] {
        &self.attention_mask[i * self.cols..(i + 1) * self.cols]
    }
}

/// A vocab that cannot be used: unreadable, empty, or missing a token BERT
/// needs. Names the file when it came from one.
#[derive(Debug)]
pub struct VocabError {
    path: Option<PathBuf>,
    problem: String,
    source: Option<std::io::Error>,
}

impl fmt::Display for VocabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "vocab {}: {}", path.display(), self.problem),
            None => write!(f, "vocab: {}", self.problem),
        }
    }
}

impl std::error::Error for VocabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// A WordPiece vocab with BERT's uncased normalization. Cheap to share
/// between threads; encoding only reads it.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Every vocab line, by its text (a repeated line keeps its last index).
    words: HashMap<Box<str>, u32>,
    /// The `##` lines, by their text after `##`.
    pieces: HashMap<Box<str>, u32>,
    /// Longest key of `words` and of `pieces`, in bytes: longer candidates
    /// cannot match, so the greedy search starts at that length.
    longest_word: usize,
    longest_piece: usize,
    /// Line `i` of the vocab is token `i`.
    tokens: Vec<Box<str>>,
    /// Special tokens found in the vocab, all starting with `[`.
    specials: Vec<(&'static str, u32)>,
    cls: u32,
    sep: u32,
    pad: u32,
    unk: u32,
    max_len: usize,
}

impl Tokenizer {
    /// Reads a `vocab.txt` (one token a line, the line number is the id).
    /// Encodings are cut to [`MAX_LEN`] tokens; see [`Tokenizer::with_max_len`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, VocabError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| VocabError {
            path: Some(path.to_owned()),
            problem: format!("cannot read: {e}"),
            source: Some(e),
        })?;
        Self::parse(&text).map_err(|problem| VocabError {
            path: Some(path.to_owned()),
            problem,
            source: None,
        })
    }

    /// Like [`Tokenizer::from_file`], from the text of a `vocab.txt`.
    pub fn from_vocab(text: &str) -> Result<Self, VocabError> {
        Self::parse(text).map_err(|problem| VocabError {
            path: None,
            problem,
            source: None,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        // As HF's WordPiece::read_file: lines without trailing whitespace.
        let mut words = HashMap::new();
        let mut pieces = HashMap::new();
        let mut tokens = Vec::new();
        for (id, line) in text.lines().enumerate() {
            let token = line.trim_end();
            let id = u32::try_from(id).map_err(|_| "has too many lines".to_owned())?;
            words.insert(Box::from(token), id);
            if let Some(rest) = token.strip_prefix("##") {
                pieces.insert(Box::from(rest), id);
            }
            tokens.push(Box::from(token));
        }
        if tokens.is_empty() {
            return Err("is empty".to_owned());
        }
        let need = |token: &str| {
            words.get(token).copied().ok_or_else(|| {
                format!("has no {token} line (a BERT vocab has [PAD], [UNK], [CLS] and [SEP])")
            })
        };
        let (pad, unk, cls, sep) = (
            need("[PAD]")?,
            need("[UNK]")?,
            need("[CLS]")?,
            need("[SEP]")?,
        );
        let specials = SPECIALS
            .iter()
            .filter_map(|&s| words.get(s).map(|&id| (s, id)))
            .collect();
        let longest = |m: &HashMap<Box<str>, u32>| m.keys().map(|k| k.len()).max().unwrap_or(0);
        Ok(Self {
            longest_word: longest(&words),
            longest_piece: longest(&pieces),
            words,
            pieces,
            tokens,
            specials,
            cls,
            sep,
            pad,
            unk,
            max_len: MAX_LEN,
        })
    }

    /// Truncates encodings to `max_len` tokens, `[CLS]` and `[SEP]` included.
    ///
    /// # Panics
    /// If `max_len < 2`: there would be no room for `[CLS]` and `[SEP]`.
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        assert!(
            max_len >= 2,
            "max_len {max_len} leaves no room for [CLS] and [SEP]"
        );
        self.max_len = max_len;
        self
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of vocab lines (ids are below this).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a vocab entry, as written in `vocab.txt` (`"##ing"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.words.get(token).copied()
    }

    /// `[CLS] tokens… [SEP]`, at most [`Tokenizer::max_len`] ids, no padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        self.encode_into(text, &mut ids, &mut String::new());
        ids
    }

    /// The vocab strings of [`Tokenizer::encode`]'s ids, for debugging.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        self.encode(text)
            .into_iter()
            .map(|id| self.tokens[id as usize].to_string())
            .collect()
    }

    /// Encodes every text and pads the rows to one width.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S], padding: Padding) -> Batch {
        let mut word = String::new();
        let encoded: Vec<Vec<u32>> = texts
            .iter()
            .map(|text| {
                let mut ids = Vec::new();
                self.encode_into(text.as_ref(), &mut ids, &mut word);
                ids
            })
            .collect();
        let longest = encoded.iter().map(Vec::len).max().unwrap_or(0);
        let cols = match padding {
            Padding::Longest => longest,
            Padding::Fixed(n) => n.max(longest),
        };
        let rows = encoded.len();
        let mut input_ids = vec![i64::from(self.pad); rows * cols];
        let mut attention_mask = vec![0; rows * cols];
        for (row, ids) in encoded.iter().enumerate() {
            let at = row * cols;
            for (slot, &id) in input_ids[at..].iter_mut().zip(ids) {
                *slot = i64::from(id);
            }
            attention_mask[at..at + ids.len()].fill(1);
        }
        Batch {
            input_ids,
            attention_mask,
            rows,
            cols,
        }
    }

    /// Encodes `text` into `ids` (cleared first); `word` is scratch space.
    fn encode_into(&self, text: &str, ids: &mut Vec<u32>, word: &mut String) {
        ids.clear();
        ids.push(self.cls);
        // Room for [CLS] and the kept tokens; [SEP] goes after.
        let limit = self.max_len - 1;
        let mut rest = text;
        while ids.len() < limit {
            let (before, special) = self.next_special(rest);
            self.encode_segment(before, ids, word, limit);
            match special {
                Some((id, after)) if ids.len() < limit => {
                    ids.push(id);
                    rest = after;
                }
                _ => break,
            }
        }
        ids.truncate(limit);
        ids.push(self.sep);
    }

    /// Splits `text` at its first special token: the text before it, and the
    /// token's id with the text after it. As HF's leftmost-longest match; the
    /// specials all start with `[` and end at their first `]`, so at most one
    /// matches at a given place and matches never overlap.
    fn next_special<'t>(&self, text: &'t str) -> (&'t str, Option<(u32, &'t str)>) {
        for (at, _) in text.match_indices('[') {
            let tail = &text[at..];
            if let Some(&(s, id)) = self.specials.iter().find(|(s, _)| tail.starts_with(s)) {
                return (&text[..at], Some((id, &tail[s.len()..])));
            }
        }
        (text, None)
    }

    /// Normalizes, pre-tokenizes and WordPieces text without special tokens,
    /// appending to `ids` until they reach `limit`.
    fn encode_segment(&self, text: &str, ids: &mut Vec<u32>, word: &mut String, limit: usize) {
        if text.is_ascii() {
            // Nothing to decompose, strip or space out in ASCII.
            let chars = text
                .chars()
                .filter_map(clean)
                .map(|c| c.to_ascii_lowercase());
            self.split_words(chars, ids, word, limit);
        } else {
            self.split_words(normalize(text), ids, word, limit);
        }
    }

    /// BertPreTokenizer on normalized chars, each word through WordPiece.
    fn split_words(
        &self,
        chars: impl Iterator<Item = char>,
        ids: &mut Vec<u32>,
        word: &mut String,
        limit: usize,
    ) {
        word.clear();
        for c in chars {
            if c.is_whitespace() {
                self.flush(word, ids);
            } else if is_punctuation(c) {
                self.flush(word, ids);
                word.push(c);
                self.flush(word, ids);
            } else {
                word.push(c);
                continue;
            }
            if ids.len() >= limit {
                return;
            }
        }
        self.flush(word, ids);
    }

    fn flush(&self, word: &mut String, ids: &mut Vec<u32>) {
        if !word.is_empty() {
            self.word_piece(word, ids);
            word.clear();
        }
    }

    /// Greedy longest-match-first WordPiece of one word.
    fn word_piece(&self, word: &str, ids: &mut Vec<u32>) {
        // Bytes ≥ chars, so the count is only needed for long words.
        if word.len() > MAX_WORD_CHARS && word.chars().count() > MAX_WORD_CHARS {
            ids.push(self.unk);
            return;
        }
        let first = ids.len();
        let mut start = 0;
        while start < word.len() {
            let (vocab, longest) = if start == 0 {
                (&self.words, self.longest_word)
            } else {
                (&self.pieces, self.longest_piece)
            };
            let mut end = word.len().min(start + longest);
            while !word.is_char_boundary(end) {
                end -= 1;
            }
            loop {
                if end == start {
                    // Some rest matches nothing: the whole word is unknown.
                    ids.truncate(first);
                    ids.push(self.unk);
                    return;
                }
                if let Some(&id) = vocab.get(&word[start..end]) {
                    ids.push(id);
                    break;
                }
                end -= word[..end].chars().next_back().map_or(1, char::len_utf8);
            }
            start = end;
        }
    }
}

/// BertNormalizer (clean text, space CJK, strip accents, lowercase) as one
/// lazy pass over the chars.
fn normalize(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars()
        .filter_map(clean)
        .flat_map(space_chinese)
        .nfd()
        .map(|(c, _)| c)
        .filter(|&c| c.is_ascii() || !c.is_mark_nonspacing())
        .flat_map(char::to_lowercase)
}

/// Clean text: drops NUL, U+FFFD and control chars (Cc, Cf, Co in Unicode
/// 9.0, but not `\t \n \r`), and maps whitespace to `' '`. Controls go before
/// whitespace, so `\x0B`, `\x0C` and U+0085 vanish rather than split.
fn clean(c: char) -> Option<char> {
    match c {
        '\t' | '\n' | '\r' => Some(' '),
        _ if c.is_ascii() => (!c.is_ascii_control()).then_some(c),
        '\u{FFFD}' => None,
        _ if c.is_other() => None,
        _ if c.is_whitespace() => Some(' '),
        _ => Some(c),
    }
}

/// `' ' c ' '` for a CJK ideograph (HF's block list), else `c`.
fn space_chinese(c: char) -> impl Iterator<Item = char> {
    let (chars, n) = if is_chinese(c) {
        ([' ', c, ' '], 3)
    } else {
        ([c; 3], 1)
    };
    chars.into_iter().take(n)
}

/// HF's "Chinese character": CJK Unified Ideographs, extensions A–E and the
/// compatibility blocks (not kana, not hangul, not extensions F and later,
/// and with a gap at U+2B820–U+2B91F inside extension E).
fn is_chinese(c: char) -> bool {
    matches!(
        u32::from(c),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// BERT punctuation: ASCII punctuation (which includes symbols such as `$`,
/// `+`, `^`, `|`) or a Unicode 9.0 P* category.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_punctuation()
    } else {
        c.is_punctuation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocab: the BERT specials, a few words and continuations.
    fn toy() -> Tokenizer {
        let vocab = "[PAD]\n[unused0]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n\
                     hello\nworld\n!\n,\n.\n[\n]\nun\n##aff\n##able\n#\n##s\ncafe\ni\n\
                     ##stanbul\nσ\n##ας\n##α\n##σ\n一\n二\na\n##a\n";
        Tokenizer::from_vocab(vocab).unwrap()
    }

    #[test]
    fn punctuation_is_split_and_isolated() {
        let t = toy();
        assert_eq!(
            t.tokens("Hello,world!!"),
            ["[CLS]", "hello", ",", "world", "!", "!", "[SEP]"]
        );
        // `#` is ASCII punctuation, so "##s" in text is three words.
        assert_eq!(t.tokens("##s"), ["[CLS]", "#", "#", "[UNK]", "[SEP]"]);
    }

    #[test]
    fn continuations_use_the_prefix() {
        let t = toy();
        assert_eq!(
            t.tokens("unaffable UNAFFABLES"),
            [
                "[CLS]", "un", "##aff", "##able", "un", "##aff", "##able", "##s", "[SEP]"
            ]
        );
        // A word whose rest matches nothing is one [UNK], not a partial match.
        assert_eq!(t.tokens("unaffx"), ["[CLS]", "[UNK]", "[SEP]"]);
    }

    #[test]
    fn long_words_are_unknown() {
        let t = toy();
        let a100 = "a".repeat(100);
        assert_eq!(t.encode(&a100).len(), 2 + 100);
        assert_eq!(t.tokens(&format!("{a100}a")), ["[CLS]", "[UNK]", "[SEP]"]);
        // Counted in chars after normalization: 100 × "á" is 100 × "a".
        let accented = "\u{e1}".repeat(100);
        assert_eq!(t.encode(&accented).len(), 2 + 100);
    }

    #[test]
    fn normalization_follows_hf() {
        let t = toy();
        // Accents stripped, controls dropped, NBSP and tabs split words.
        assert_eq!(
            t.tokens("Café\u{200b}\u{0}\u{a0}WORLD\tcafe\u{301}"),
            ["[CLS]", "cafe", "world", "cafe", "[SEP]"]
        );
        // Vertical tab is a control char, dropped before it could split.
        assert_eq!(t.tokens("hel\u{b}lo"), ["[CLS]", "hello", "[SEP]"]);
        // İ decomposes to I + U+0307 before lowercasing: plain i.
        assert_eq!(t.tokens("İSTANBUL"), ["[CLS]", "i", "##stanbul", "[SEP]"]);
        // Char-wise lowercasing: no final sigma.
        assert_eq!(t.tokens("ΣΑΣ"), ["[CLS]", "σ", "##α", "##σ", "[SEP]"]);
        // CJK ideographs are words of their own.
        assert_eq!(t.tokens("a一二a"), ["[CLS]", "a", "一", "二", "a", "[SEP]"]);
    }

    #[test]
    fn special_tokens_come_from_raw_text() {
        let t = toy();
        // Exact, case-sensitive matches in the raw text; "[cls]" is text.
        assert_eq!(
            t.tokens("hello[MASK]world [cls] [[SEP"),
            [
                "[CLS]", "hello", "[MASK]", "world", "[", "[UNK]", "]", "[", "[", "[UNK]", "[SEP]"
            ]
        );
        assert_eq!(t.tokens("[CLS][PAD]"), ["[CLS]", "[CLS]", "[PAD]", "[SEP]"]);
        assert_eq!(t.tokens(""), ["[CLS]", "[SEP]"]);
    }

    #[test]
    fn truncation_keeps_sep_last() {
        let t = toy().with_max_len(5);
        assert_eq!(
            t.tokens("hello world hello world"),
            ["[CLS]", "hello", "world", "hello", "[SEP]"]
        );
        // Cut inside a word's pieces, and at a special token.
        assert_eq!(
            t.tokens("a unaffable"),
            ["[CLS]", "a", "un", "##aff", "[SEP]"]
        );
        assert_eq!(t.tokens("a a a[MASK]"), ["[CLS]", "a", "a", "a", "[SEP]"]);
        assert_eq!(
            t.tokens("a a[MASK]a"),
            ["[CLS]", "a", "a", "[MASK]", "[SEP]"]
        );
        let long = "hello ".repeat(500);
        let full = toy().encode(&long);
        assert_eq!(full.len(), MAX_LEN);
        assert_eq!(full[MAX_LEN - 1], full[full.len() - 1]);
        assert_eq!(*full.last().unwrap(), t.token_id("[SEP]").unwrap());
    }

    #[test]
    fn batch_pads_to_the_longest_or_fixed() {
        let t = toy();
        let texts = ["hello", "hello world !", ""];
        let b = t.encode_batch(&texts, Padding::Longest);
        assert_eq!((b.rows, b.cols), (3, 5));
        let id = |s| i64::from(t.token_id(s).unwrap());
        let (cls, sep, hello, world, bang) =
            (id("[CLS]"), id("[SEP]"), id("hello"), id("world"), id("!"));
        assert_eq!(b.ids(0), [cls, hello, sep, 0, 0]);
        assert_eq!(b.ids(1), [cls, hello, world, bang, sep]);
        assert_eq!(b.ids(2), [cls, sep, 0, 0, 0]);
        assert_eq!(b.mask(0), [1, 1, 1, 0, 0]);
        assert_eq!(b.mask(2), [1, 1, 0, 0, 0]);
        assert_eq!(b.token_type_ids(), vec![0; 15]);
        let fixed = t.encode_batch(&texts, Padding::Fixed(8));
        assert_eq!((fixed.rows, fixed.cols), (3, 8));
        assert_eq!(fixed.ids(1)[..5], b.ids(1)[..]);
        assert_eq!(fixed.mask(1), [1, 1, 1, 1, 1, 0, 0, 0]);
        let empty = t.encode_batch::<&str>(&[], Padding::Longest);
        assert_eq!((empty.rows, empty.cols), (0, 0));
    }

    #[test]
    fn vocab_errors_say_what_is_wrong() {
        let err = Tokenizer::from_vocab("").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = Tokenizer::from_vocab("[PAD]\n[UNK]\n[CLS]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no [SEP]"), "{err}");
        let err = Tokenizer::from_file("/nonexistent/vocab.txt")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/vocab.txt"), "{err}");
        // Like HF: trailing whitespace trimmed, a repeated line keeps the last id.
        let t = Tokenizer::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\nx \r\nx\n").unwrap();
        assert_eq!((t.token_id("x"), t.vocab_size()), (Some(5), 6));
    }
}
