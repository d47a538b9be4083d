-- Whether a refund puts its units back in stock, kept with it, so that no unit of an order is
-- put back twice (by a refund and a return, or two refunds).
ALTER TABLE order_refunds ADD COLUMN restock BOOLEAN NOT NULL DEFAULT FALSE;
