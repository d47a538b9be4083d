-- A refund keeps what it was asked for, so that it can be finished as asked when the process
-- stopped before the provider answered: whether its units go back in stock (so that no unit
-- of an order goes back twice, by a refund and a return), whether the customer is emailed,
-- and who asked.
ALTER TABLE order_refunds ADD COLUMN restock INTEGER NOT NULL DEFAULT 0 CHECK (restock IN (0, 1));
ALTER TABLE order_refunds ADD COLUMN notify INTEGER NOT NULL DEFAULT 1 CHECK (notify IN (0, 1));
ALTER TABLE order_refunds ADD COLUMN actor_kind TEXT NOT NULL DEFAULT 'staff';
ALTER TABLE order_refunds ADD COLUMN actor_id TEXT NOT NULL DEFAULT '';
CREATE INDEX order_refunds_pending_idx ON order_refunds (created_at) WHERE status = 'pending';
