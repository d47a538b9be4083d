-- A refund is recorded before the provider is asked, and settled after: `pending` until then.
ALTER TABLE order_refunds ADD COLUMN status TEXT NOT NULL DEFAULT 'succeeded'
    CHECK (status IN ('pending', 'succeeded', 'failed'));
-- Until when a payment waiting on the shopper keeps its cart and stock.
ALTER TABLE payments ADD COLUMN hold_until INTEGER;
