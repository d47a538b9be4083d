//! Money: integer minor units with an ISO 4217 currency, never floats.

/// The ISO 4217 codes of the currencies in circulation.
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN \
     BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD \
     GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR \
     LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP \
     PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP \
     TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// Whether `code` is an ISO 4217 currency code in circulation (upper case).
pub fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) && CURRENCIES.split_whitespace().any(|c| c == code)
}

/// How many digits follow the decimal point in `currency`'s amounts: 2 for most, 0 for the
/// yen, 3 for the dinars.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "VND" | "VUV"
        | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// `amount` minor units as a plain decimal, as structured data writes prices: "1234.50".
pub fn decimal(amount: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let scale = 10_u64.pow(digits);
    let (major, minor) = (amount.unsigned_abs() / scale, amount.unsigned_abs() % scale);
    let sign = if amount < 0 { "-" } else { "" };
    if digits == 0 {
        format!("{sign}{major}")
    } else {
        format!("{sign}{major}.{minor:0width$}", width = digits as usize)
    }
}

/// `amount` minor units written for people: "1,234.50 EUR", "1,200 JPY".
pub fn format(amount: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let scale = 10_i64.pow(digits);
    let (major, minor) = (amount.unsigned_abs() / scale as u64, amount.unsigned_abs() % scale as u64);
    let grouped = major
        .to_string()
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let sign = if amount < 0 { "-" } else { "" };
    if digits == 0 {
        format!("{sign}{grouped} {currency}")
    } else {
        format!("{sign}{grouped}.{minor:0width$} {currency}", width = digits as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_the_currency_s_places() {
        assert_eq!(decimal(123450, "EUR"), "1234.50");
        assert_eq!(decimal(5, "USD"), "0.05");
        assert_eq!(decimal(1200, "JPY"), "1200");
        assert_eq!(decimal(-1500, "KWD"), "-1.500");
    }

    #[test]
    fn currencies_are_iso_codes() {
        assert!(is_currency("EUR") && is_currency("JPY") && is_currency("USD"));
        assert!(!is_currency("eur") && !is_currency("EURO") && !is_currency("XXX") && !is_currency(""));
    }

    #[test]
    fn amounts_are_written_with_the_currency_s_digits() {
        assert_eq!(format(123_450, "EUR"), "1,234.50 EUR");
        assert_eq!(format(5, "USD"), "0.05 USD");
        assert_eq!(format(1_200, "JPY"), "1,200 JPY");
        assert_eq!(format(1_234, "KWD"), "1.234 KWD");
        assert_eq!(format(-250, "GBP"), "-2.50 GBP");
    }
}
