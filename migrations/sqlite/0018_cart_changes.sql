-- A customer's active carts are found by the customer alone (they have one or two), so that
-- changing a cart touches no index: neither its last change nor, most of the time, its
-- expiry, which a change moves on only when it would move by an hour or more.
DROP INDEX carts_customer_idx;
CREATE INDEX carts_customer_idx ON carts (customer_id) WHERE status = 'active' AND customer_id IS NOT NULL;
