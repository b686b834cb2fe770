-- job: payroll_customers
-- description: Payroll customers: those with a payroll credit in the last 30 days, with
--   the count, total, average and last date of their payroll credits.
-- reads: transactions

-- @build
SELECT customer_id,
       COUNT(*) AS payroll_credits,
       SUM(amount) AS payroll_total,
       AVG(amount) AS payroll_avg,
       MAX(ts) AS last_payroll_at
FROM {bank}.transactions
WHERE kind = 'payroll_credit' AND direction = 'credit' AND ts >= {as_of_ts} - INTERVAL '30 days'
GROUP BY customer_id

-- @check every_payroll_customer_once
SELECT p.n AS rows_out, p.distinct_customers, t.n AS payroll_customers
FROM (SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS distinct_customers FROM {bench}.payroll_customers) AS p,
     (SELECT COUNT(DISTINCT customer_id) AS n FROM {bank}.transactions
      WHERE kind = 'payroll_credit' AND direction = 'credit' AND ts >= {as_of_ts} - INTERVAL '30 days') AS t
WHERE p.n <> t.n OR p.distinct_customers <> t.n

-- @check totals_equal_ledger
SELECT p.total AS job_total, t.total AS ledger_total
FROM (SELECT COALESCE(SUM(payroll_total), 0) AS total FROM {bench}.payroll_customers) AS p,
     (SELECT COALESCE(SUM(amount), 0) AS total FROM {bank}.transactions
      WHERE kind = 'payroll_credit' AND direction = 'credit' AND ts >= {as_of_ts} - INTERVAL '30 days') AS t
WHERE p.total <> t.total

-- @check positive_amounts
SELECT customer_id, payroll_credits, payroll_total
FROM {bench}.payroll_customers
WHERE payroll_credits < 1 OR payroll_total <= 0
LIMIT 5
