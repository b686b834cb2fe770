-- job: churn_features
-- description: Churn-model features per customer: transactions in 7 and 30 days, credits and
--   debits in 30 days, share of outflow to other banks, days since the last transaction,
--   marketing contacts in 30 days, AUM.
-- reads: customers, transactions, contact_history
-- after: aum_snapshot

-- @build
SELECT c.customer_id,
       COALESCE(t.txns_7d, 0) AS txns_7d,
       COALESCE(t.txns_30d, 0) AS txns_30d,
       COALESCE(t.credit_30d, 0) AS credit_30d,
       COALESCE(t.debit_30d, 0) AS debit_30d,
       CASE WHEN COALESCE(t.debit_30d, 0) = 0 THEN 0.0
            ELSE CAST(t.other_bank_out_30d AS DOUBLE PRECISION) / CAST(t.debit_30d AS DOUBLE PRECISION)
       END AS other_bank_out_share,
       CASE WHEN t.last_ts IS NULL THEN NULL
            ELSE CAST(FLOOR(EXTRACT(EPOCH FROM ({as_of_ts} - t.last_ts)) / 86400) AS INTEGER) END
           AS days_since_last_txn,
       COALESCE(k.contacts_30d, 0) AS contacts_30d,
       a.aum
FROM {bank}.customers AS c
JOIN {bench}.aum_snapshot AS a ON a.customer_id = c.customer_id
LEFT JOIN (
    SELECT customer_id,
           SUM(CASE WHEN ts >= {as_of_ts} - INTERVAL '7 days' THEN 1 ELSE 0 END) AS txns_7d,
           COUNT(*) AS txns_30d,
           SUM(CASE WHEN direction = 'credit' THEN amount ELSE 0 END) AS credit_30d,
           SUM(CASE WHEN direction = 'debit' THEN amount ELSE 0 END) AS debit_30d,
           SUM(CASE WHEN kind = 'transfer_out_other_bank' THEN amount ELSE 0 END) AS other_bank_out_30d,
           MAX(ts) AS last_ts
    FROM {bank}.transactions
    WHERE ts >= {as_of_ts} - INTERVAL '30 days'
    GROUP BY customer_id
) AS t ON t.customer_id = c.customer_id
LEFT JOIN (
    SELECT customer_id, COUNT(*) AS contacts_30d
    FROM {bank}.contact_history
    WHERE ts >= {as_of_ts} - INTERVAL '30 days'
    GROUP BY customer_id
) AS k ON k.customer_id = c.customer_id

-- @check one_row_per_customer
SELECT f.n AS feature_rows, f.distinct_customers, c.n AS customers
FROM (SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS distinct_customers FROM {bench}.churn_features) AS f,
     (SELECT COUNT(*) AS n FROM {bank}.customers) AS c
WHERE f.n <> c.n OR f.distinct_customers <> c.n

-- @check transaction_counts_match_ledger
SELECT f.total AS features_total, t.total AS ledger_total
FROM (SELECT COALESCE(SUM(txns_30d), 0) AS total FROM {bench}.churn_features) AS f,
     (SELECT COUNT(*) AS total FROM {bank}.transactions WHERE ts >= {as_of_ts} - INTERVAL '30 days') AS t
WHERE f.total <> t.total

-- @check features_in_range
SELECT customer_id, txns_7d, txns_30d, other_bank_out_share, days_since_last_txn
FROM {bench}.churn_features
WHERE txns_7d > txns_30d OR other_bank_out_share < 0 OR other_bank_out_share > 1
   OR days_since_last_txn < 0 OR days_since_last_txn > 30
LIMIT 5
