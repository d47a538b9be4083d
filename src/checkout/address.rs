//! Postal addresses for checkout: trimmed, normalised and checked before an order uses them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const MAX_TEXT: usize = 200;
const MAX_PHONE: usize = 40;

const REQUIRED: &str = "required";
const INVALID_FORMAT: &str = "invalid_format";
const TOO_LONG: &str = "too_long";
const UNKNOWN_COUNTRY: &str = "unknown_country";
const INVALID_SUBDIVISION: &str = "invalid_subdivision";
const INVALID_POSTCODE: &str = "invalid_postcode";

/// A postal address as entered at checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[serde(default)]
    pub first_name: String,
    pub last_name: String,
    #[serde(default)]
    pub company: String,
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    /// ISO 3166-2 subdivision code without the country, e.g. "CA" for California, "ON", "NSW"; "" when none.
    #[serde(default)]
    pub subdivision: String,
    #[serde(default)]
    pub postcode: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    #[serde(default)]
    pub phone: String,
}

/// One problem: the field name (as in the struct, e.g. "postcode"), a stable code, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { field, code, message: message.into() }
    }
}

impl Address {
    /// Trims every field, upper-cases country and subdivision, normalises the postcode to the country's
    /// canonical form, then checks it. Returns the normalised address, or every problem found (not just the first).
    pub fn normalised(self) -> Result<Address, Vec<Invalid>> {
        let address = self.tidied();
        let problems = address.problems();
        if problems.is_empty() { Ok(address) } else { Err(problems) }
    }

    fn tidied(self) -> Address {
        let country = self.country.trim().to_ascii_uppercase();
        let postcode = self.postcode.trim();
        let postcode = (PostcodeRule::of(&country).parse)(postcode).unwrap_or_else(|| postcode.to_owned());
        Address {
            first_name: trimmed(&self.first_name),
            last_name: trimmed(&self.last_name),
            company: trimmed(&self.company),
            line1: trimmed(&self.line1),
            line2: trimmed(&self.line2),
            city: trimmed(&self.city),
            subdivision: self.subdivision.trim().to_ascii_uppercase(),
            postcode,
            country,
            phone: trimmed(&self.phone),
        }
    }

    fn problems(&self) -> Vec<Invalid> {
        [
            text("first_name", &self.first_name, false),
            text("last_name", &self.last_name, true),
            text("company", &self.company, false),
            text("line1", &self.line1, true),
            text("line2", &self.line2, false),
            text("city", &self.city, true),
            text("subdivision", &self.subdivision, false).or_else(|| self.subdivision_problem()),
            text("postcode", &self.postcode, false).or_else(|| self.postcode_problem()),
            text("country", &self.country, true).or_else(|| self.country_problem()),
            phone_problem(&self.phone),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn country_problem(&self) -> Option<Invalid> {
        let message = "must be an ISO 3166-1 alpha-2 country code such as GB";
        (!is_country(&self.country)).then(|| Invalid::new("country", UNKNOWN_COUNTRY, message))
    }

    fn subdivision_problem(&self) -> Option<Invalid> {
        let code = check_subdivision(&self.country, &self.subdivision).err()?;
        let message = if code == REQUIRED {
            "must not be empty for this country"
        } else {
            "is not a subdivision of this country"
        };
        Some(Invalid::new("subdivision", code, message))
    }

    fn postcode_problem(&self) -> Option<Invalid> {
        let rule = PostcodeRule::of(&self.country);
        if self.postcode.is_empty() {
            return rule.required.then(|| Invalid::new("postcode", REQUIRED, "must not be empty for this country"));
        }
        let canonical = (rule.parse)(&self.postcode);
        (canonical.as_deref() != Some(self.postcode.as_str()))
            .then(|| Invalid::new("postcode", INVALID_POSTCODE, rule.message))
    }
}

fn trimmed(value: &str) -> String {
    value.trim().to_owned()
}

/// Checks a one-line text field: present when required, no control characters, not too long.
fn text(field: &'static str, value: &str, required: bool) -> Option<Invalid> {
    if value.is_empty() {
        return required.then(|| Invalid::new(field, REQUIRED, "must not be empty"));
    }
    if !is_one_line(value) {
        return Some(Invalid::new(field, INVALID_FORMAT, "must be one line without control characters"));
    }
    too_long(field, value, MAX_TEXT)
}

fn is_one_line(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// Counts characters, not bytes.
fn too_long(field: &'static str, value: &str, max: usize) -> Option<Invalid> {
    (value.chars().count() > max).then(|| Invalid::new(field, TOO_LONG, format!("must be at most {max} characters")))
}

fn phone_problem(phone: &str) -> Option<Invalid> {
    too_long("phone", phone, MAX_PHONE).or_else(|| {
        let allowed = |c: char| c.is_ascii_digit() || " +-().".contains(c);
        (!phone.chars().all(allowed))
            .then(|| Invalid::new("phone", INVALID_FORMAT, "may contain only digits, spaces and + - ( ) ."))
    })
}

/// Whether `code` is an ISO 3166-1 alpha-2 code of a country (the full current list of 249 codes, upper case).
pub fn is_country(code: &str) -> bool {
    COUNTRIES.binary_search(&code).is_ok()
}

/// Whether the country requires a subdivision, and if so whether `code` is one of its subdivisions.
///
/// Both codes are expected in upper case. The error is the problem code.
pub fn check_subdivision(country: &str, code: &str) -> Result<(), &'static str> {
    let Some(known) = subdivisions(country) else {
        let short_code = code.len() <= 3 && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        return if short_code { Ok(()) } else { Err(INVALID_SUBDIVISION) };
    };
    if code.is_empty() {
        Err(REQUIRED)
    } else if known.contains(&code) {
        Ok(())
    } else {
        Err(INVALID_SUBDIVISION)
    }
}

/// The full list for countries that require a subdivision.
fn subdivisions(country: &str) -> Option<&'static [&'static str]> {
    match country {
        "US" => Some(&US_SUBDIVISIONS),
        "CA" => Some(&CA_SUBDIVISIONS),
        "AU" => Some(&AU_SUBDIVISIONS),
        "JP" => Some(&JP_SUBDIVISIONS),
        _ => None,
    }
}

/// Returns the canonical form of a postcode, or `None` when the input does not fit.
type Parse = fn(&str) -> Option<String>;

/// How one country writes postcodes.
struct PostcodeRule {
    required: bool,
    message: &'static str,
    parse: Parse,
}

impl PostcodeRule {
    fn of(country: &str) -> Self {
        let (required, message, parse): (bool, &'static str, Parse) = match country {
            "US" => (true, "must look like 12345 or 12345-6789", us_postcode),
            "CA" => (true, "must look like K1A 0B1", ca_postcode),
            "GB" => (true, "must look like SW1A 1AA", gb_postcode),
            "DE" | "FR" => (true, "must be 5 digits", |raw| exactly(raw, "99999")),
            "AU" => (true, "must be 4 digits", |raw| exactly(raw, "9999")),
            "JP" => (true, "must look like 100-0001", jp_postcode),
            "NL" => (true, "must look like 1234 AB", nl_postcode),
            "IE" => (false, "must look like A65 F4E2", ie_postcode),
            _ => (false, "must be at most 12 letters, digits, spaces or hyphens", other_postcode),
        };
        Self { required, message, parse }
    }
}

/// Whether `value` has the shape of `pattern`: `9` is a digit, `A` an upper-case letter, anything else itself.
fn fits(value: &str, pattern: &str) -> bool {
    value.len() == pattern.len()
        && value.bytes().zip(pattern.bytes()).all(|(v, p)| match p {
            b'9' => v.is_ascii_digit(),
            b'A' => v.is_ascii_uppercase(),
            _ => v == p,
        })
}

fn exactly(raw: &str, pattern: &str) -> Option<String> {
    fits(raw, pattern).then(|| raw.to_owned())
}

/// Upper case, without spaces.
fn compact(raw: &str) -> String {
    raw.chars().filter(|c| *c != ' ').map(|c| c.to_ascii_uppercase()).collect()
}

/// Puts `separator` after the first `at` bytes.
fn joined(value: &str, at: usize, separator: char) -> Option<String> {
    let (head, tail) = value.split_at_checked(at)?;
    Some(format!("{head}{separator}{tail}"))
}

fn us_postcode(raw: &str) -> Option<String> {
    if fits(raw, "999999999") {
        return joined(raw, 5, '-');
    }
    exactly(raw, "99999").or_else(|| exactly(raw, "99999-9999"))
}

fn jp_postcode(raw: &str) -> Option<String> {
    if fits(raw, "9999999") {
        return joined(raw, 3, '-');
    }
    exactly(raw, "999-9999")
}

/// Letters D, F, I, O, Q and U are never used; W and Z never come first.
fn ca_postcode(raw: &str) -> Option<String> {
    let code = compact(raw);
    let &[first, _, third, _, fifth, _] = code.as_bytes() else { return None };
    let usable = |letter: u8| !b"DFIOQU".contains(&letter);
    let valid = fits(&code, "A9A9A9") && usable(first) && usable(third) && usable(fifth) && !b"WZ".contains(&first);
    if !valid {
        return None;
    }
    joined(&code, 3, ' ')
}

fn gb_postcode(raw: &str) -> Option<String> {
    let code = compact(raw);
    if code == "GIR0AA" {
        return Some("GIR 0AA".to_owned());
    }
    let (outward, inward) = code.split_at_checked(code.len().checked_sub(3)?)?;
    (gb_outward(outward) && gb_inward(inward)).then(|| format!("{outward} {inward}"))
}

/// The formats A9, A99, AA9, AA99, A9A and AA9A, with the letters each position allows.
fn gb_outward(outward: &str) -> bool {
    let first = |letter: u8| !b"QVX".contains(&letter);
    let second = |letter: u8| !b"IJZ".contains(&letter);
    match *outward.as_bytes() {
        [a, _] | [a, _, _] if fits(outward, "A9") || fits(outward, "A99") => first(a),
        [a, b, _] | [a, b, _, _] if fits(outward, "AA9") || fits(outward, "AA99") => first(a) && second(b),
        [a, _, c] if fits(outward, "A9A") => first(a) && b"ABCDEFGHJKPSTUW".contains(&c),
        [a, b, _, d] if fits(outward, "AA9A") => first(a) && second(b) && b"ABEHMNPRVWXY".contains(&d),
        _ => false,
    }
}

/// The format 9AA, without C, I, K, M, O or V.
fn gb_inward(inward: &str) -> bool {
    let &[_, x, y] = inward.as_bytes() else { return false };
    fits(inward, "9AA") && !b"CIKMOV".contains(&x) && !b"CIKMOV".contains(&y)
}

/// The first digit is never 0 and the letters are never SA, SD or SS.
fn nl_postcode(raw: &str) -> Option<String> {
    let code = compact(raw);
    let (digits, letters) = code.split_at_checked(4)?;
    let valid = fits(&code, "9999AA") && !digits.starts_with('0') && !["SA", "SD", "SS"].contains(&letters);
    valid.then(|| format!("{digits} {letters}"))
}

/// An Eircode: 7 letters or digits, with a space after the routing key.
fn ie_postcode(raw: &str) -> Option<String> {
    let code = compact(raw);
    if code.len() != 7 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    joined(&code, 3, ' ')
}

fn other_postcode(raw: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == ' ' || c == '-';
    (raw.chars().count() <= 12 && raw.chars().all(allowed)).then(|| raw.to_ascii_uppercase())
}

/// ISO 3166-1 alpha-2, sorted.
const COUNTRIES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA",
    "ZM", "ZW",
];

/// The 50 states, DC, the outlying areas and the military "states".
const US_SUBDIVISIONS: [&str; 60] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME",
    "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA",
    "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC", "PR", "VI", "GU", "AS", "MP", "UM",
    "AA", "AE", "AP",
];

const CA_SUBDIVISIONS: [&str; 13] = ["AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"];

const AU_SUBDIVISIONS: [&str; 8] = ["ACT", "NSW", "NT", "QLD", "SA", "TAS", "VIC", "WA"];

const JP_SUBDIVISIONS: [&str; 47] = [
    "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19",
    "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36", "37", "38",
    "39", "40", "41", "42", "43", "44", "45", "46", "47",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn address(country: &str, subdivision: &str, postcode: &str) -> Address {
        Address {
            first_name: "Ana".into(),
            last_name: "Silva".into(),
            company: String::new(),
            line1: "1 Main Street".into(),
            line2: String::new(),
            city: "Springfield".into(),
            subdivision: subdivision.into(),
            postcode: postcode.into(),
            country: country.into(),
            phone: String::new(),
        }
    }

    fn problems(address: Address) -> Vec<(&'static str, &'static str)> {
        address.normalised().err().unwrap_or_default().iter().map(|p| (p.field, p.code)).collect()
    }

    fn postcode(country: &str, subdivision: &str, raw: &str) -> Result<String, Vec<(&'static str, &'static str)>> {
        let address = address(country, subdivision, raw);
        address.clone().normalised().map(|a| a.postcode).map_err(|_| problems(address))
    }

    fn assert_postcodes(country: &str, subdivision: &str, good: &[(&str, &str)], bad: &[&str]) {
        for (raw, canonical) in good {
            assert_eq!(postcode(country, subdivision, raw).as_deref(), Ok(*canonical), "{country} {raw:?}");
        }
        for raw in bad {
            assert_eq!(
                postcode(country, subdivision, raw),
                Err(vec![("postcode", "invalid_postcode")]),
                "{country} {raw:?}"
            );
        }
    }

    #[test]
    fn every_field_is_trimmed_and_codes_upper_cased() {
        let mut raw = address(" us ", " ca ", " 94103 ");
        raw.first_name = "  Ana\n".into();
        raw.line2 = " \t ".into();
        raw.phone = " +1 555 0100 ".into();
        let done = raw.normalised().unwrap();
        assert_eq!((done.first_name.as_str(), done.line2.as_str()), ("Ana", ""));
        assert_eq!((done.country.as_str(), done.subdivision.as_str()), ("US", "CA"));
        assert_eq!((done.postcode.as_str(), done.phone.as_str()), ("94103", "+1 555 0100"));
    }

    #[test]
    fn us_postcodes() {
        let good = [("94103", "94103"), ("94103-1234", "94103-1234"), ("941031234", "94103-1234")];
        assert_postcodes("US", "CA", &good, &["9410", "941034", "94103-123", "9410A", "94103_1234", "９４１０３"]);
        assert_eq!(postcode("US", "CA", ""), Err(vec![("postcode", "required")]));
    }

    #[test]
    fn canadian_postcodes() {
        let good = [("K1A 0B1", "K1A 0B1"), ("k1a0b1", "K1A 0B1"), ("t2w  1a1", "T2W 1A1"), ("H0H 0H0", "H0H 0H0")];
        let bad = ["D1A 0B1", "K1D 0B1", "K1A 0O1", "W1A 0B1", "Z1A 0B1", "K1A 0B", "K1A 0B1X", "1KA 0B1", "K1A-0B1"];
        assert_postcodes("CA", "ON", &good, &bad);
    }

    #[test]
    fn uk_postcodes() {
        let good = [
            ("M1 1AE", "M1 1AE"),
            ("b338th", "B33 8TH"),
            ("CR2 6XH", "CR2 6XH"),
            ("DN55 1PT", "DN55 1PT"),
            ("w1a0ax", "W1A 0AX"),
            ("Sw1A   1aA", "SW1A 1AA"),
            ("EC1A 1BB", "EC1A 1BB"),
            ("gir 0aa", "GIR 0AA"),
        ];
        let bad = [
            "SW1A",
            "SW1A 1A",
            "1W1A 1AA",
            "QA1 1AA",
            "AJ1 1AA",
            "W1I 0AX",
            "EC1Z 1BB",
            "SW1A 1CA",
            "SW1A 1AAA",
            "SWAA 1AA",
            "SW123 1AA",
            "SW1A-1AA",
            "GIR 0AB",
        ];
        assert_postcodes("GB", "", &good, &bad);
        assert_eq!(postcode("GB", "", ""), Err(vec![("postcode", "required")]));
    }

    #[test]
    fn german_french_and_australian_postcodes() {
        assert_postcodes("DE", "", &[("10115", "10115")], &["1011", "101150", "1011A", "10 115"]);
        assert_postcodes("FR", "", &[("75008", "75008")], &["7500", "F-75008"]);
        assert_postcodes("AU", "NSW", &[("2000", "2000"), ("0800", "0800")], &["200", "20000", "NSW 2000"]);
        assert_eq!(postcode("DE", "", ""), Err(vec![("postcode", "required")]));
    }

    #[test]
    fn japanese_postcodes() {
        let good = [("100-0001", "100-0001"), ("1000001", "100-0001")];
        assert_postcodes("JP", "13", &good, &["100-001", "1000-001", "100 0001", "10000011"]);
    }

    #[test]
    fn dutch_postcodes() {
        let good = [("1012 AB", "1012 AB"), ("1012ab", "1012 AB"), ("9999  zz", "9999 ZZ")];
        assert_postcodes("NL", "", &good, &["0123 AB", "1012 SA", "1012 sd", "1012SS", "1012 A", "101 AB", "1012 A1"]);
    }

    #[test]
    fn irish_eircodes_are_optional() {
        let good = [("", ""), ("A65 F4E2", "A65 F4E2"), ("a65f4e2", "A65 F4E2"), ("d6w x123", "D6W X123")];
        assert_postcodes("IE", "", &good, &["A65 F4E", "A65 F4E22", "A65-F4E2"]);
    }

    #[test]
    fn other_countries_take_any_short_postcode_or_none() {
        assert_postcodes("HK", "", &[("", "")], &[]);
        assert_postcodes("AE", "", &[("", "")], &[]);
        let good = [("", ""), ("123 45", "123 45"), ("ab-1234", "AB-1234"), ("123456789012", "123456789012")];
        assert_postcodes("SE", "", &good, &["1234567890123", "123#45", "123_45", "１２３"]);
    }

    #[test]
    fn required_fields() {
        let empty = Address {
            first_name: String::new(),
            last_name: " ".into(),
            company: String::new(),
            line1: String::new(),
            line2: String::new(),
            city: String::new(),
            subdivision: String::new(),
            postcode: String::new(),
            country: String::new(),
            phone: String::new(),
        };
        let expected =
            [("last_name", "required"), ("line1", "required"), ("city", "required"), ("country", "required")];
        assert_eq!(problems(empty), expected);
    }

    #[test]
    fn unknown_countries() {
        for country in ["XX", "USA", "U", "UK", "EU", "ÜS"] {
            assert_eq!(problems(address(country, "", "")), [("country", "unknown_country")], "{country}");
        }
        assert_eq!(COUNTRIES.len(), 249);
        assert!(COUNTRIES.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(COUNTRIES.iter().all(|c| fits(c, "AA")));
        assert_eq!(["GB", "US", "JP", "AX", "SS", "XK"].map(is_country), [true, true, true, true, true, false]);
        assert!(!is_country("gb") && !is_country(""));
    }

    #[test]
    fn subdivisions() {
        assert_eq!((US_SUBDIVISIONS.len(), CA_SUBDIVISIONS.len(), AU_SUBDIVISIONS.len()), (60, 13, 8));
        for (country, good, bad) in [
            ("US", ["CA", "DC", "PR", "AE"], ["", "ZZ", "ON", "US-CA"]),
            ("CA", ["ON", "QC", "YT", "NU"], ["", "CA", "NY", "PQ"]),
            ("AU", ["NSW", "ACT", "WA", "TAS"], ["", "SYD", "ON", "N"]),
            ("JP", ["01", "13", "47", "27"], ["", "1", "00", "48"]),
            ("DE", ["", "BY", "BE", "NW"], ["ABCD", "B-Y", "by", "東京"]),
        ] {
            for code in good {
                assert_eq!(check_subdivision(country, code), Ok(()), "{country}-{code}");
            }
            let expected =
                |code: &str| Err(if code.is_empty() && country != "DE" { "required" } else { "invalid_subdivision" });
            for code in bad {
                assert_eq!(check_subdivision(country, code), expected(code), "{country}-{code}");
            }
        }
        assert_eq!(address("us", "ny", "10001").normalised().unwrap().subdivision, "NY");
        assert_eq!(problems(address("AU", "", "2000")), [("subdivision", "required")]);
        assert_eq!(problems(address("JP", "48", "100-0001")), [("subdivision", "invalid_subdivision")]);
    }

    #[test]
    fn control_characters_are_refused() {
        for bad in ["Main\nStreet", "Main\rStreet", "Main\u{7}Street", "Main\u{85}Street", "Main\u{2028}Street"] {
            let mut raw = address("GB", "", "M1 1AE");
            raw.line1 = bad.into();
            assert_eq!(problems(raw), [("line1", "invalid_format")], "{bad:?}");
        }
        let mut raw = address("GB", "", "M1\t1AE");
        raw.company = "Acme\0".into();
        assert_eq!(problems(raw), [("company", "invalid_format"), ("postcode", "invalid_format")]);
    }

    #[test]
    fn multibyte_text_counts_characters() {
        let mut raw = address("JP", "13", "1000001");
        (raw.first_name, raw.last_name, raw.city) = ("太郎".into(), "山田".into(), "東京都".into());
        raw.line1 = "千代田区千代田1-1".into();
        raw.company = "東".repeat(200);
        let done = raw.clone().normalised().unwrap();
        assert_eq!((done.city.as_str(), done.postcode.as_str()), ("東京都", "100-0001"));

        raw.last_name = "é".repeat(201);
        raw.line2 = "🏠".repeat(201);
        assert_eq!(problems(raw), [("last_name", "too_long"), ("line2", "too_long")]);
    }

    #[test]
    fn phone_rules() {
        for good in ["", "+1 (555) 010-0199", "+44.20.7946.0958", &"1".repeat(40)] {
            let mut raw = address("FR", "", "75008");
            raw.phone = good.into();
            assert!(raw.normalised().is_ok(), "{good}");
        }
        for (bad, code) in [
            ("555-CALL", "invalid_format"),
            ("+1 555 0100 ext. 2", "invalid_format"),
            ("+33 ١٢٣", "invalid_format"),
            ("555\u{0}0100", "invalid_format"),
            (&"1".repeat(41), "too_long"),
        ] {
            let mut raw = address("FR", "", "75008");
            raw.phone = bad.into();
            assert_eq!(problems(raw), [("phone", code)], "{bad}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut raw = address("US", "ZZ", "ABCDE");
        raw.last_name = String::new();
        raw.city = "x".repeat(201);
        raw.line2 = "Flat\n2".into();
        raw.phone = "call me".into();
        let expected = [
            ("last_name", "required"),
            ("line2", "invalid_format"),
            ("city", "too_long"),
            ("subdivision", "invalid_subdivision"),
            ("postcode", "invalid_postcode"),
            ("phone", "invalid_format"),
        ];
        assert_eq!(problems(raw.clone()), expected);
        let messages = raw.normalised().unwrap_err();
        assert!(messages.iter().all(|p| !p.message.is_empty()));
        assert_eq!(problems(address("ZZ", "??", "#")).len(), 3);
    }

    #[test]
    fn odd_input_never_panics() {
        let long = "a".repeat(300);
        let samples = [
            "",
            " ",
            "\u{0}",
            "é",
            "東京都",
            "👩‍👩‍👧",
            "e\u{301}",
            "ß",
            "ﬀ",
            "İ",
            "A65é",
            "1234é",
            "SW1Aé1AA",
            "éé1AA",
            "K1Aé0B1",
            "12345-678é",
            "\u{FEFF}12345",
            "GIR 0AA",
            "1234 AB",
            &long,
        ];
        for country in ["US", "CA", "GB", "DE", "FR", "AU", "JP", "NL", "IE", "HK", "SE", "é", "ǅ"] {
            for sample in samples {
                let mut raw = address(country, sample, sample);
                raw.phone = sample.into();
                raw.city = sample.into();
                let _ = raw.normalised();
            }
        }
    }
}
