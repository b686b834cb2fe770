-- job: lifecycle_stage
-- description: One lifecycle stage per customer, first rule that applies wins:
--   new (opened in the last 90 days), dormant (status dormant), inactive (no transaction
--   in 30 days), churn_risk (30-day outflow above 80% of deposits), growing (investments
--   above 20% of AUM), else mature.
-- reads: customers, transactions
-- after: aum_snapshot

-- @build
SELECT c.customer_id,
       c.branch_id,
       CASE WHEN c.opened_at > {as_of} - INTERVAL '90 days' THEN 'new'
            WHEN c.status = 'dormant' THEN 'dormant'
            WHEN t.customer_id IS NULL THEN 'inactive'
            WHEN t.outflow > 0.8 * a.deposits THEN 'churn_risk'
            WHEN a.investments > 0.2 * a.aum THEN 'growing'
            ELSE 'mature' END AS stage
FROM {bank}.customers AS c
JOIN {bench}.aum_snapshot AS a ON a.customer_id = c.customer_id
LEFT JOIN (
    SELECT customer_id, SUM(CASE WHEN direction = 'debit' THEN amount ELSE 0 END) AS outflow
    FROM {bank}.transactions
    WHERE ts >= {as_of_ts} - INTERVAL '30 days'
    GROUP BY customer_id
) AS t ON t.customer_id = c.customer_id

-- @check exactly_one_stage_per_customer
SELECT c.customer_id, COUNT(s.customer_id) AS stages
FROM {bank}.customers AS c
LEFT JOIN {bench}.lifecycle_stage AS s ON s.customer_id = c.customer_id
GROUP BY c.customer_id
HAVING COUNT(s.customer_id) <> 1
LIMIT 5

-- @check no_stage_for_unknown_customers
SELECT s.customer_id
FROM {bench}.lifecycle_stage AS s
LEFT JOIN {bank}.customers AS c ON c.customer_id = s.customer_id
WHERE c.customer_id IS NULL
LIMIT 5

-- @check known_stages
SELECT stage, COUNT(*) AS n
FROM {bench}.lifecycle_stage
WHERE stage IS NULL OR stage NOT IN ('new', 'dormant', 'inactive', 'churn_risk', 'growing', 'mature')
GROUP BY stage
