//! Prices an order: line subtotals, discounts, tax, shipping and the total, in integer minor units.
//!
//! Money is `i64` minor units (cents), never floats. Rates are basis points: 2000 is 20.00%, 725 is 7.25%.
//!
//! The rules:
//! - Tax is computed per line, on the line's amount after its discount, and rounded per line to the minor
//!   unit, **half up** (0.5 rounds away from zero; amounts are never negative here). The order's tax is the
//!   sum of the lines' and the shipping's tax.
//! - Exclusive pricing (US sales tax style): `tax = round_half_up(net * rate_bps / 10000)`; the line's total
//!   is `net + tax`.
//! - Inclusive pricing (VAT style): prices already contain tax:
//!   `tax = gross - round_half_up(gross * 10000 / (10000 + rate_bps))`; the line's total is `gross` (after
//!   discount).
//! - A tax-exempt customer: exclusive → tax 0; inclusive → the included tax is taken off: the line's total is
//!   `gross - included_tax` and its tax is 0.
//! - A discount is allocated over lines in proportion to their amounts with the largest-remainder method, so
//!   the parts sum exactly to the discount; ties go to the earlier line. A discount never exceeds what it
//!   applies to (it is capped).
//!
//! Shipping is priced like one more line. Negative amounts, quantities and rates count as 0, and sums
//! saturate at `i64::MAX`, so no input can make these functions panic.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

/// Basis points in one whole: 10000 bps = 100%.
const BPS_PER_UNIT: i64 = 10_000;

/// `numerator / denominator` rounded half up, for `numerator >= 0` and `denominator > 0`.
///
/// Saturates at `i64::MAX`. A negative numerator or a denominator that is not positive gives 0.
pub fn round_half_up_div(numerator: i128, denominator: i128) -> i64 {
    if numerator <= 0 || denominator <= 0 {
        return 0;
    }
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    // `remainder >= denominator / 2`, exactly and without overflow; then `denominator >= 2`, so `+ 1` fits.
    let rounded = if remainder >= denominator - remainder { quotient + 1 } else { quotient };
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// `bps` basis points of `amount`, rounded half up; `amount >= 0` and `bps` is clamped to `0..=10000`.
pub fn percent_of(amount: i64, bps: i64) -> i64 {
    scale_by_bps(amount, bps.clamp(0, BPS_PER_UNIT))
}

/// The tax to add to a `net` price at `rate_bps`.
pub fn tax_exclusive(net: i64, rate_bps: i64) -> i64 {
    scale_by_bps(net, rate_bps.max(0))
}

/// The tax contained in a `gross` price at `rate_bps`; never more than `gross`.
pub fn tax_included(gross: i64, rate_bps: i64) -> i64 {
    let gross = gross.max(0);
    let net = round_half_up_div(
        i128::from(gross) * i128::from(BPS_PER_UNIT),
        i128::from(BPS_PER_UNIT) + i128::from(rate_bps.max(0)),
    );
    gross - net
}

fn scale_by_bps(amount: i64, bps: i64) -> i64 {
    round_half_up_div(i128::from(amount.max(0)) * i128::from(bps.max(0)), i128::from(BPS_PER_UNIT))
}

/// Splits `amount` over `weights` in proportion (largest remainder, ties to the earlier index); the result has
/// `weights.len()` parts summing to `min(amount, sum(weights))`, each part `<=` its weight. Zero or negative
/// weights get 0. Empty weights -> empty vec.
pub fn allocate(amount: i64, weights: &[i64]) -> Vec<i64> {
    let weights: Vec<i128> = weights.iter().map(|&weight| i128::from(weight.max(0))).collect();
    let total: i128 = weights.iter().sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let target = i128::from(amount.max(0)).min(total);
    let mut shares: Vec<Share> = weights
        .iter()
        .enumerate()
        .map(|(index, &weight)| Share { index, part: target * weight / total, remainder: target * weight % total })
        .collect();
    let left_over = target - shares.iter().map(|share| share.part).sum::<i128>();
    shares.sort_by_key(|share| (Reverse(share.remainder), share.index));
    for share in shares.iter_mut().take(usize::try_from(left_over).unwrap_or(0)) {
        share.part += 1;
    }
    shares.sort_by_key(|share| share.index);
    shares.into_iter().map(|share| i64::try_from(share.part).unwrap_or(i64::MAX)).collect()
}

/// One weight's whole part of the amount, and the remainder (over the total weight) left after it.
struct Share {
    index: usize,
    part: i128,
    remainder: i128,
}

/// One line of an order, as the shopper sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceLine {
    /// Price of one unit, `>= 0`.
    pub unit_amount: i64,
    /// `>= 1`.
    pub quantity: i64,
    /// `>= 0`.
    pub tax_rate_bps: i64,
    /// Total discount already allocated to this line (capped at `unit_amount * quantity`).
    pub discount: i64,
}

/// An order to price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceInput {
    pub lines: Vec<PriceLine>,
    /// Prices contain tax (VAT style) rather than having it added (sales tax style).
    pub tax_inclusive: bool,
    pub tax_exempt: bool,
    /// Price of shipping as listed (inclusive or exclusive like the lines).
    pub shipping_amount: i64,
    /// Capped at `shipping_amount` (free shipping = `shipping_amount`).
    pub shipping_discount: i64,
    /// 0 when shipping is not taxable.
    pub shipping_tax_rate_bps: i64,
}

/// The priced amounts of one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineTotals {
    /// `unit_amount * quantity`.
    pub subtotal: i64,
    /// As capped.
    pub discount: i64,
    /// The tax of this line (included tax in inclusive mode; 0 if exempt).
    pub tax: i64,
    /// What the shopper pays for the line.
    pub total: i64,
}

/// The priced order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub lines: Vec<LineTotals>,
    /// Sum of line subtotals.
    pub subtotal: i64,
    /// Sum of line discounts (not shipping).
    pub discount_total: i64,
    /// `shipping_amount`.
    pub shipping: i64,
    /// As capped.
    pub shipping_discount: i64,
    pub shipping_tax: i64,
    /// Lines' tax + `shipping_tax`.
    pub tax_total: i64,
    /// What the shopper pays in all.
    pub total: i64,
}

/// Prices every line and the shipping, and sums them up.
pub fn compute(input: &PriceInput) -> Totals {
    let mode = TaxMode { inclusive: input.tax_inclusive, exempt: input.tax_exempt };
    let lines: Vec<LineTotals> = input.lines.iter().map(|line| price_line(line, mode)).collect();
    let shipping = price_amount(input.shipping_amount, input.shipping_discount, input.shipping_tax_rate_bps, mode);
    let lines_tax = saturating_sum(lines.iter().map(|line| line.tax));
    let lines_total = saturating_sum(lines.iter().map(|line| line.total));
    Totals {
        subtotal: saturating_sum(lines.iter().map(|line| line.subtotal)),
        discount_total: saturating_sum(lines.iter().map(|line| line.discount)),
        shipping: shipping.subtotal,
        shipping_discount: shipping.discount,
        shipping_tax: shipping.tax,
        tax_total: lines_tax.saturating_add(shipping.tax),
        total: lines_total.saturating_add(shipping.total),
        lines,
    }
}

#[derive(Debug, Clone, Copy)]
struct TaxMode {
    inclusive: bool,
    exempt: bool,
}

fn price_line(line: &PriceLine, mode: TaxMode) -> LineTotals {
    let subtotal = line.unit_amount.max(0).saturating_mul(line.quantity.max(0));
    price_amount(subtotal, line.discount, line.tax_rate_bps, mode)
}

fn price_amount(amount: i64, discount: i64, rate_bps: i64, mode: TaxMode) -> LineTotals {
    let subtotal = amount.max(0);
    let discount = discount.clamp(0, subtotal);
    let (tax, total) = tax_and_total(subtotal - discount, rate_bps, mode);
    LineTotals { subtotal, discount, tax, total }
}

fn tax_and_total(discounted: i64, rate_bps: i64, mode: TaxMode) -> (i64, i64) {
    match (mode.inclusive, mode.exempt) {
        (false, false) => {
            let tax = tax_exclusive(discounted, rate_bps);
            (tax, discounted.saturating_add(tax))
        }
        (false, true) => (0, discounted),
        (true, false) => (tax_included(discounted, rate_bps), discounted),
        (true, true) => (0, discounted - tax_included(discounted, rate_bps)),
    }
}

fn saturating_sum(values: impl Iterator<Item = i64>) -> i64 {
    values.fold(0, i64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(unit_amount: i64, quantity: i64, tax_rate_bps: i64, discount: i64) -> PriceLine {
        PriceLine { unit_amount, quantity, tax_rate_bps, discount }
    }

    fn order(lines: Vec<PriceLine>, tax_inclusive: bool, tax_exempt: bool) -> PriceInput {
        PriceInput {
            lines,
            tax_inclusive,
            tax_exempt,
            shipping_amount: 0,
            shipping_discount: 0,
            shipping_tax_rate_bps: 0,
        }
    }

    #[test]
    fn rounds_half_up() {
        assert_eq!(round_half_up_div(5, 10), 1);
        assert_eq!(round_half_up_div(4, 10), 0);
        assert_eq!(round_half_up_div(15, 10), 2);
        assert_eq!(round_half_up_div(7, 2), 4);
        assert_eq!(round_half_up_div(0, 7), 0);
        assert_eq!(round_half_up_div(i128::MAX, i128::MAX), 1);
        assert_eq!(round_half_up_div(i128::MAX, 1), i64::MAX);
        assert_eq!(round_half_up_div(-5, 10), 0);
        assert_eq!(round_half_up_div(5, 0), 0);
        assert_eq!(round_half_up_div(5, -10), 0);
    }

    #[test]
    fn half_up_tax_cases() {
        assert_eq!(tax_exclusive(50, 1000), 5);
        assert_eq!(tax_exclusive(5, 1000), 1);
        assert_eq!(tax_exclusive(4, 1000), 0);
    }

    #[test]
    fn percent_of_clamps_the_rate() {
        assert_eq!(percent_of(1999, 1500), 300);
        assert_eq!(percent_of(1000, 20_000), 1000);
        assert_eq!(percent_of(1000, -5), 0);
        assert_eq!(percent_of(-1000, 500), 0);
    }

    #[test]
    fn sales_tax_on_three_items() {
        let totals = compute(&order(vec![line(1999, 3, 725, 0)], false, false));
        assert_eq!(totals.lines, vec![LineTotals { subtotal: 5997, discount: 0, tax: 435, total: 6432 }]);
        assert_eq!((totals.tax_total, totals.total), (435, 6432));
    }

    #[test]
    fn included_tax() {
        assert_eq!(tax_included(1200, 2000), 200);
        assert_eq!(tax_included(1999, 1900), 319);
        assert_eq!(tax_included(1999, 0), 0);
        let totals = compute(&order(vec![line(1200, 1, 2000, 0)], true, false));
        assert_eq!((totals.tax_total, totals.total), (200, 1200));
    }

    #[test]
    fn exempt_customers_pay_no_tax() {
        let inclusive = compute(&order(vec![line(1200, 1, 2000, 0)], true, true));
        assert_eq!(inclusive.lines, vec![LineTotals { subtotal: 1200, discount: 0, tax: 0, total: 1000 }]);
        let exclusive = compute(&order(vec![line(1999, 3, 725, 0)], false, true));
        assert_eq!((exclusive.tax_total, exclusive.total), (0, 5997));
    }

    #[test]
    fn allocates_in_proportion() {
        assert_eq!(allocate(1000, &[3000, 1000]), vec![750, 250]);
        assert_eq!(allocate(100, &[500, 500, 500]), vec![34, 33, 33]);
        assert_eq!(allocate(200, &[500, 500, 500]), vec![67, 67, 66]);
    }

    #[test]
    fn allocation_is_capped_and_skips_non_positive_weights() {
        assert_eq!(allocate(100, &[1, 1, 1]), vec![1, 1, 1]);
        assert_eq!(allocate(10, &[0, -5, 4]), vec![0, 0, 4]);
        assert_eq!(allocate(-10, &[4, 4]), vec![0, 0]);
        assert_eq!(allocate(10, &[0, 0]), vec![0, 0]);
        assert_eq!(allocate(10, &[]), Vec::<i64>::new());
        assert_eq!(allocate(i64::MAX, &[i64::MAX, i64::MAX]), vec![i64::MAX / 2 + 1, i64::MAX / 2]);
    }

    #[test]
    fn ties_go_to_the_earlier_index() {
        assert_eq!(allocate(1, &[5, 5]), vec![1, 0]);
        assert_eq!(allocate(2, &[1, 1, 1]), vec![1, 1, 0]);
        assert_eq!(allocate(1, &[2, 3, 3]), vec![0, 1, 0]);
    }

    #[test]
    fn discounts_and_shipping_in_one_order() {
        assert_eq!(allocate(1000, &[3000, 1000]), vec![750, 250]);
        let input = PriceInput {
            lines: vec![line(1500, 2, 1000, 750), line(1000, 1, 0, 250)],
            tax_inclusive: false,
            tax_exempt: false,
            shipping_amount: 500,
            shipping_discount: 100,
            shipping_tax_rate_bps: 1000,
        };
        let totals = compute(&input);
        assert_eq!(
            totals.lines,
            vec![
                LineTotals { subtotal: 3000, discount: 750, tax: 225, total: 2475 },
                LineTotals { subtotal: 1000, discount: 250, tax: 0, total: 750 },
            ]
        );
        assert_eq!((totals.subtotal, totals.discount_total), (4000, 1000));
        assert_eq!((totals.shipping, totals.shipping_discount, totals.shipping_tax), (500, 100, 40));
        assert_eq!((totals.tax_total, totals.total), (265, 3665));
    }

    #[test]
    fn discounts_are_capped() {
        let mut input = order(vec![line(1000, 1, 2000, 5000)], false, false);
        input.shipping_amount = 300;
        input.shipping_discount = 900;
        let totals = compute(&input);
        assert_eq!(totals.lines, vec![LineTotals { subtotal: 1000, discount: 1000, tax: 0, total: 0 }]);
        assert_eq!((totals.shipping_discount, totals.total), (300, 0));
    }

    #[test]
    fn huge_or_negative_inputs_do_not_panic() {
        for extreme in [i64::MIN, -1, i64::MAX] {
            for (inclusive, exempt) in [(false, false), (false, true), (true, false), (true, true)] {
                let input = PriceInput {
                    lines: vec![line(extreme, extreme, extreme, extreme); 3],
                    tax_inclusive: inclusive,
                    tax_exempt: exempt,
                    shipping_amount: extreme,
                    shipping_discount: extreme,
                    shipping_tax_rate_bps: extreme,
                };
                let totals = compute(&input);
                assert!(totals.total >= 0 && totals.tax_total >= 0);
            }
            assert!(tax_exclusive(extreme, extreme) >= 0);
            assert!(tax_included(extreme, extreme) >= 0);
            assert!(percent_of(extreme, extreme) >= 0);
        }
        assert_eq!(tax_exclusive(i64::MAX, 30_000), i64::MAX);
        let no_discount = compute(&order(vec![line(i64::MAX, 2, 0, 0)], false, false));
        assert_eq!(no_discount.total, i64::MAX);
    }

    #[test]
    fn inputs_deserialize_and_outputs_serialize() {
        fn deserializable<T: for<'de> Deserialize<'de>>() {}
        fn serializable<T: Serialize>() {}
        deserializable::<PriceInput>();
        deserializable::<PriceLine>();
        serializable::<Totals>();
        serializable::<LineTotals>();
    }

    fn price_line_strategy() -> impl Strategy<Value = PriceLine> {
        (0..=1_000_000_000i64, 1..=1000i64, 0..=30_000i64, 0..=2_000_000_000_000i64).prop_map(
            |(unit_amount, quantity, tax_rate_bps, discount)| {
                let discount = discount % (unit_amount * quantity * 2 + 1);
                PriceLine { unit_amount, quantity, tax_rate_bps, discount }
            },
        )
    }

    fn price_input_strategy() -> impl Strategy<Value = PriceInput> {
        (
            prop::collection::vec(price_line_strategy(), 0..=20),
            any::<bool>(),
            any::<bool>(),
            0..=1_000_000_000i64,
            0..=2_000_000_000i64,
            0..=30_000i64,
        )
            .prop_map(
                |(lines, tax_inclusive, tax_exempt, shipping_amount, shipping_discount, shipping_tax_rate_bps)| {
                    PriceInput {
                        lines,
                        tax_inclusive,
                        tax_exempt,
                        shipping_amount,
                        shipping_discount: shipping_discount % (shipping_amount * 2 + 1),
                        shipping_tax_rate_bps,
                    }
                },
            )
    }

    fn included_tax_of_order(input: &PriceInput, totals: &Totals) -> i64 {
        let lines: i64 = input
            .lines
            .iter()
            .zip(&totals.lines)
            .map(|(line, priced)| tax_included(priced.subtotal - priced.discount, line.tax_rate_bps))
            .sum();
        lines + tax_included(totals.shipping - totals.shipping_discount, input.shipping_tax_rate_bps)
    }

    fn expected_total(amount: i64, discount: i64, rate_bps: i64, input: &PriceInput) -> i64 {
        let discounted = amount - discount;
        match (input.tax_inclusive, input.tax_exempt) {
            (false, false) => discounted + tax_exclusive(discounted, rate_bps),
            (false, true) | (true, false) => discounted,
            (true, true) => discounted - tax_included(discounted, rate_bps),
        }
    }

    proptest! {
        #[test]
        fn order_totals_add_up(input in price_input_strategy()) {
            let totals = compute(&input);
            let before_tax = totals.subtotal - totals.discount_total + totals.shipping - totals.shipping_discount;
            match (input.tax_inclusive, input.tax_exempt) {
                (false, false) => prop_assert_eq!(totals.total, before_tax + totals.tax_total),
                (true, false) => {
                    prop_assert_eq!(totals.total, before_tax);
                    prop_assert!(totals.tax_total <= totals.total);
                }
                (true, true) => {
                    prop_assert_eq!(totals.total, before_tax - included_tax_of_order(&input, &totals));
                    prop_assert_eq!(totals.tax_total, 0);
                }
                (false, true) => {
                    prop_assert_eq!(totals.total, before_tax);
                    prop_assert_eq!(totals.tax_total, 0);
                }
            }
        }

        #[test]
        fn every_part_is_consistent_and_never_negative(input in price_input_strategy()) {
            let totals = compute(&input);
            for (line, priced) in input.lines.iter().zip(&totals.lines) {
                prop_assert_eq!(priced.subtotal, line.unit_amount * line.quantity);
                prop_assert_eq!(priced.discount, line.discount.min(priced.subtotal));
                prop_assert!(priced.discount >= 0 && priced.tax >= 0 && priced.total >= 0);
                prop_assert_eq!(priced.total, expected_total(priced.subtotal, priced.discount, line.tax_rate_bps, &input));
            }
            prop_assert_eq!(totals.shipping, input.shipping_amount);
            prop_assert_eq!(totals.shipping_discount, input.shipping_discount.min(input.shipping_amount));
            let shipping_part =
                expected_total(totals.shipping, totals.shipping_discount, input.shipping_tax_rate_bps, &input);
            let lines_total: i64 = totals.lines.iter().map(|line| line.total).sum();
            prop_assert_eq!(totals.total, lines_total + shipping_part);
            let lines_tax: i64 = totals.lines.iter().map(|line| line.tax).sum();
            prop_assert_eq!(totals.tax_total, lines_tax + totals.shipping_tax);
            for part in [totals.subtotal, totals.discount_total, totals.shipping, totals.shipping_discount,
                         totals.shipping_tax, totals.tax_total, totals.total] {
                prop_assert!(part >= 0);
            }
        }

        #[test]
        fn allocation_is_exact_bounded_and_proportional(
            amount in -1_000i64..=30_000_000_000_000,
            weights in prop::collection::vec(-1_000_000_000i64..=1_000_000_000_000, 0..=20),
        ) {
            let parts = allocate(amount, &weights);
            prop_assert_eq!(&parts, &allocate(amount, &weights));
            prop_assert_eq!(parts.len(), weights.len());
            let total: i128 = weights.iter().map(|&weight| i128::from(weight.max(0))).sum();
            let target = i128::from(amount.max(0)).min(total);
            prop_assert_eq!(parts.iter().map(|&part| i128::from(part)).sum::<i128>(), target);
            for (&part, &weight) in parts.iter().zip(&weights) {
                prop_assert!(part >= 0 && part <= weight.max(0));
                let off_by = (i128::from(part) * total - target * i128::from(weight.max(0))).abs();
                prop_assert!(total == 0 || off_by < total);
            }
        }

        #[test]
        fn rounding_matches_the_half_up_rule(numerator in 0i128..=1_000_000_000_000_000, denominator in 1i128..=1_000_000_000) {
            let expected = (2 * numerator + denominator) / (2 * denominator);
            prop_assert_eq!(i128::from(round_half_up_div(numerator, denominator)), expected);
        }

        #[test]
        fn included_tax_splits_the_gross(gross in 0i64..=1_000_000_000_000, rate_bps in 0i64..=30_000) {
            let tax = tax_included(gross, rate_bps);
            prop_assert!(tax >= 0 && tax <= gross);
            prop_assert_eq!(tax + (gross - tax), gross);
            prop_assert_eq!(tax_included(gross, 0), 0);
            let net = gross - tax;
            prop_assert!((i128::from(net) * i128::from(10_000 + rate_bps) - i128::from(gross) * 10_000).abs()
                <= i128::from(10_000 + rate_bps) / 2);
        }

        #[test]
        fn exclusive_tax_grows_with_the_net(a in 0i64..=1_000_000_000_000, b in 0i64..=1_000_000_000_000, rate_bps in 0i64..=30_000) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(tax_exclusive(low, rate_bps) <= tax_exclusive(high, rate_bps));
            prop_assert_eq!(tax_exclusive(low, 0), 0);
        }
    }
}
