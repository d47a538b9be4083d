//! The order's state machine: which status may follow which. Every change goes through
//! [`Status::can_become`] and is written to the order's timeline.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Placed; the money has not arrived (bank transfer, cash on delivery).
    PendingPayment,
    /// Placed; the card is authorised, to be captured at fulfilment.
    Authorized,
    /// Paid in full.
    Paid,
    PartiallyFulfilled,
    Fulfilled,
    /// Handed to the carrier, with tracking.
    Shipped,
    Delivered,
    Cancelled,
    PartiallyRefunded,
    Refunded,
    /// Sent back by the customer.
    Returned,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Self::PendingPayment,
        Self::Authorized,
        Self::Paid,
        Self::PartiallyFulfilled,
        Self::Fulfilled,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Authorized => "authorized",
            Self::Paid => "paid",
            Self::PartiallyFulfilled => "partially_fulfilled",
            Self::Fulfilled => "fulfilled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Returned => "returned",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// The statuses that may follow this one.
    pub fn next(self) -> &'static [Status] {
        use Status::*;
        match self {
            PendingPayment => &[Paid, Cancelled],
            Authorized => &[Paid, PartiallyFulfilled, Fulfilled, Cancelled],
            Paid => &[PartiallyFulfilled, Fulfilled, Shipped, Cancelled, PartiallyRefunded, Refunded],
            PartiallyFulfilled => &[PartiallyFulfilled, Fulfilled, Shipped, PartiallyRefunded, Refunded],
            Fulfilled => &[Shipped, Delivered, PartiallyRefunded, Refunded],
            Shipped => &[Delivered, Returned, PartiallyRefunded, Refunded],
            Delivered => &[Returned, PartiallyRefunded, Refunded],
            PartiallyRefunded => {
                &[PartiallyRefunded, Refunded, Returned, PartiallyFulfilled, Fulfilled, Shipped, Delivered]
            }
            Returned => &[PartiallyRefunded, Refunded],
            Cancelled | Refunded => &[],
        }
    }

    pub fn can_become(self, next: Status) -> bool {
        self.next().contains(&next)
    }

    /// Whether the order was placed and its goods are still owed or on their way: it may be
    /// cancelled with its stock put back.
    pub fn cancellable(self) -> bool {
        self.can_become(Status::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_ends_are_final() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert!(Status::Cancelled.next().is_empty() && Status::Refunded.next().is_empty());
        assert!(!Status::Shipped.cancellable());
        assert!(Status::PendingPayment.can_become(Status::Paid));
        assert!(!Status::PendingPayment.can_become(Status::Shipped));
    }

    #[test]
    fn every_status_is_reachable_from_a_placed_order_and_can_end() {
        let starts = [Status::PendingPayment, Status::Authorized, Status::Paid];
        let mut reached: Vec<Status> = starts.to_vec();
        let mut frontier = reached.clone();
        while let Some(status) = frontier.pop() {
            for next in status.next() {
                if !reached.contains(next) {
                    reached.push(*next);
                    frontier.push(*next);
                }
            }
        }
        assert_eq!(reached.len(), Status::ALL.len());
        // From every status, an end (cancelled or refunded) can be reached.
        for status in Status::ALL {
            let mut seen = vec![status];
            let mut frontier = vec![status];
            while let Some(at) = frontier.pop() {
                for next in at.next() {
                    if !seen.contains(next) {
                        seen.push(*next);
                        frontier.push(*next);
                    }
                }
            }
            assert!(seen.iter().any(|s| s.next().is_empty()), "{status:?} cannot end");
        }
    }
}
