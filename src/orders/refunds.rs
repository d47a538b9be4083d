//! What can be given back: the amount of a refund, by line, shipping or amount, never more
//! than what was paid and not yet refunded. Pure: no I/O.

/// A line of an order, with what was already refunded of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundableLine {
    pub id: String,
    pub quantity: i64,
    /// What the customer paid for the whole line.
    pub total: i64,
    pub refunded_units: i64,
}

/// What staff ask to give back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefundRequest {
    /// Units of lines, by line id.
    pub lines: Vec<(String, i64)>,
    /// The shipping the customer paid, less what was already refunded of it.
    pub shipping: bool,
    /// An amount on top, such as a goodwill gesture.
    pub extra: i64,
}

/// Why a refund cannot be made: the field and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

fn refused(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Refused {
    Refused { field: field.into(), code, message: message.into() }
}

/// The part of a line's `total` that `units` more units are worth, after `already` units were
/// refunded: refunding every unit, in any steps, gives back exactly the line's total.
pub fn units_worth(total: i64, quantity: i64, already: i64, units: i64) -> i64 {
    if quantity <= 0 {
        return 0;
    }
    let share = |n: i64| (i128::from(total) * i128::from(n.clamp(0, quantity)) / i128::from(quantity)) as i64;
    share(already + units) - share(already)
}

/// The amount to refund for `request`, with `shipping_left` of the shipping and `paid_left` of
/// the payment still refundable.
pub fn amount(
    lines: &[RefundableLine],
    request: &RefundRequest,
    shipping_left: i64,
    paid_left: i64,
) -> Result<i64, Refused> {
    let mut total: i64 = 0;
    for (index, (line_id, units)) in request.lines.iter().enumerate() {
        let field = format!("lines[{index}]");
        let Some(line) = lines.iter().find(|line| &line.id == line_id) else {
            return Err(refused(field, "unknown", "names no line of this order"));
        };
        if request.lines[..index].iter().any(|(other, _)| other == line_id) {
            return Err(refused(field, "duplicate", "names a line twice"));
        }
        let left = line.quantity - line.refunded_units;
        if *units < 1 || *units > left {
            return Err(refused(format!("{field}.quantity"), "out_of_range", format!("must be between 1 and {left}")));
        }
        total = total.saturating_add(units_worth(line.total, line.quantity, line.refunded_units, *units));
    }
    if request.shipping {
        total = total.saturating_add(shipping_left.max(0));
    }
    if request.extra < 0 {
        return Err(refused("amount", "out_of_range", "may not be negative"));
    }
    total = total.saturating_add(request.extra);
    if total <= 0 {
        return Err(refused("amount", "nothing", "the refund gives nothing back"));
    }
    if total > paid_left {
        return Err(refused("amount", "too_much", format!("at most {paid_left} is left to refund")));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn line(id: &str, quantity: i64, total: i64) -> RefundableLine {
        RefundableLine { id: id.into(), quantity, total, refunded_units: 0 }
    }

    #[test]
    fn lines_shipping_and_amounts() {
        let lines = [line("a", 3, 1000), line("b", 1, 500)];
        let one = RefundRequest { lines: vec![("a".into(), 1)], ..Default::default() };
        assert_eq!(amount(&lines, &one, 490, 1990), Ok(333));
        let all = RefundRequest { lines: vec![("a".into(), 3), ("b".into(), 1)], shipping: true, extra: 0 };
        assert_eq!(amount(&lines, &all, 490, 1990), Ok(1990));
        let too_much = RefundRequest { extra: 2000, ..Default::default() };
        assert_eq!(amount(&lines, &too_much, 0, 1990).map_err(|r| r.code), Err("too_much"));
        let too_many = RefundRequest { lines: vec![("a".into(), 4)], ..Default::default() };
        assert_eq!(amount(&lines, &too_many, 0, 1990).map_err(|r| r.field), Err("lines[0].quantity".to_owned()));
        assert_eq!(amount(&lines, &RefundRequest::default(), 0, 1990).map_err(|r| r.code), Err("nothing"));
    }

    proptest! {
        #[test]
        fn unit_by_unit_refunds_add_up_to_the_line(total in 0i64..10_000_000, quantity in 1i64..50) {
            let mut given = 0;
            for already in 0..quantity {
                given += units_worth(total, quantity, already, 1);
            }
            prop_assert_eq!(given, total);
        }

        #[test]
        fn refunds_never_exceed_what_was_paid(
            totals in prop::collection::vec((1i64..20, 0i64..100_000), 1..6),
            steps in prop::collection::vec((0usize..6, 1i64..20, any::<bool>(), 0i64..5_000), 1..12),
            shipping in 0i64..2_000,
        ) {
            let mut lines: Vec<RefundableLine> =
                totals.iter().enumerate().map(|(i, (q, t))| line(&format!("l{i}"), *q, *t)).collect();
            let paid: i64 = lines.iter().map(|l| l.total).sum::<i64>() + shipping;
            let (mut refunded, mut shipping_left) = (0i64, shipping);
            for (index, units, with_shipping, extra) in steps {
                let Some(target) = lines.get(index % lines.len()).map(|l| l.id.clone()) else { continue };
                let request = RefundRequest { lines: vec![(target.clone(), units)], shipping: with_shipping, extra };
                if let Ok(amount) = amount(&lines, &request, shipping_left, paid - refunded) {
                    prop_assert!(amount > 0);
                    refunded += amount;
                    if with_shipping { shipping_left = 0; }
                    if let Some(line) = lines.iter_mut().find(|l| l.id == target) { line.refunded_units += units; }
                }
                prop_assert!(refunded <= paid);
            }
        }
    }
}
