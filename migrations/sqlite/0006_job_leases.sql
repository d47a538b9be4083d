-- Expired leases are looked for at every claim: this index finds the oldest lease among the
-- running jobs alone, instead of every version the status index still lists.
CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE status = 'running';
