-- query: customer_360
-- description: One customer's 360° view for a relationship manager: profile, deposits,
--   investments, 30-day activity, last transaction and recent marketing contacts.
-- weight: 6
--
-- A pgbench script: '\set' draws the parameters (random(lo, hi), bounds may be the
-- variables :customers and :branches, the highest ids in the loaded data); the harness
-- draws them the same way, so both run exactly this text. {bank}/{bench} are the schemas.
\set cid random(1, :customers)
SELECT c.customer_id, c.name, c.segment, c.risk_level, c.branch_id, c.status,
       (SELECT COUNT(*) FROM {bank}.accounts AS a WHERE a.customer_id = c.customer_id) AS accounts,
       (SELECT COALESCE(SUM(a.balance), 0) FROM {bank}.accounts AS a
         WHERE a.customer_id = c.customer_id AND a.status <> 'closed') AS deposits,
       (SELECT COALESCE(SUM(h.amount), 0) FROM {bank}.holdings AS h
         WHERE h.customer_id = c.customer_id AND h.status = 'active') AS investments,
       (SELECT COUNT(*) FROM {bank}.transactions AS t
         WHERE t.customer_id = c.customer_id AND t.ts >= {as_of_ts} - INTERVAL '30 days') AS txns_30d,
       (SELECT MAX(t.ts) FROM {bank}.transactions AS t WHERE t.customer_id = c.customer_id) AS last_txn,
       (SELECT COUNT(*) FROM {bank}.contact_history AS k
         WHERE k.customer_id = c.customer_id AND k.ts >= {as_of_ts} - INTERVAL '30 days') AS contacts_30d
FROM {bank}.customers AS c
WHERE c.customer_id = :cid;
