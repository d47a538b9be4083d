//! Words as search sees them: lowercased, accents folded (`Crème` is `creme`), split on
//! everything but letters and digits; and how far apart two words are.

/// A lowercase character with its accent folded away: `é` gives `e`, `ß` gives `ss`;
/// `None` for a character that separates words.
pub fn fold(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'ī' => "i",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => "o",
        'œ' => "oe",
        'ß' => "ss",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' => "u",
        'ý' | 'ÿ' => "y",
        'ž' | 'ź' | 'ż' => "z",
        'š' | 'ś' => "s",
        'ł' => "l",
        'ř' => "r",
        'đ' | 'ď' => "d",
        'ť' => "t",
        _ => return None,
    })
}

/// The words of `text`, folded, in order, each at most 40 characters (longer runs are cut).
pub fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if !word.is_empty() {
            let cut: String = word.chars().take(40).collect();
            words.push(cut);
            word.clear();
        }
    };
    for c in text.chars().flat_map(char::to_lowercase) {
        if let Some(folded) = fold(c) {
            word.push_str(folded);
        } else if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word);
        }
    }
    flush(&mut word);
    words
}

/// How many typos a query word may carry and still match: none under 5 letters, one from
/// 5, two from 9.
pub fn typos_allowed(word: &str) -> usize {
    match word.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// The edit distance between `a` and `b` (insertions, deletions, substitutions and swaps of
/// neighbours each count one), or `None` when it is above `max`.
pub fn distance_within(a: &[char], b: &[char], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    // Words are at most 40 characters (see `words`): three rows on the stack do.
    const ROW: usize = 64;
    if b.len() >= ROW {
        return None;
    }
    let width = b.len() + 1;
    let mut before = [0usize; ROW];
    let mut previous = [0usize; ROW];
    let mut current = [0usize; ROW];
    for (j, cell) in previous.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = current[0];
        for j in 1..width {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
            row_min = row_min.min(best);
        }
        if row_min > max {
            return None;
        }
        before = previous;
        previous = current;
    }
    let distance = previous[b.len()];
    (distance <= max).then_some(distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn words_are_folded_and_split() {
        assert_eq!(words("Café Crème, 2-pack!"), ["cafe", "creme", "2", "pack"]);
        assert_eq!(words("STRASSE Straße"), ["strasse", "strasse"]);
        assert!(words("  ...  ").is_empty());
    }

    #[test]
    fn distances_count_edits_and_swaps() {
        assert_eq!(distance_within(&chars("jacket"), &chars("jacket"), 1), Some(0));
        assert_eq!(distance_within(&chars("jakcet"), &chars("jacket"), 1), Some(1));
        assert_eq!(distance_within(&chars("jaket"), &chars("jacket"), 1), Some(1));
        assert_eq!(distance_within(&chars("jxckex"), &chars("jacket"), 1), None);
        assert_eq!(distance_within(&chars("sweatshrt"), &chars("sweatshirt"), 2), Some(1));
        assert_eq!(distance_within(&chars("a"), &chars("abcd"), 2), None);
        assert_eq!(typos_allowed("coat"), 0);
        assert_eq!(typos_allowed("jacket"), 1);
        assert_eq!(typos_allowed("sweatshirt"), 2);
    }
}
