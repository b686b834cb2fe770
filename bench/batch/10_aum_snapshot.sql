-- job: aum_snapshot
-- description: Daily AUM snapshot: every customer's deposits (balances of accounts not closed)
--   plus investments (active product holdings), as of the data set's business date.
-- reads: customers, accounts, holdings
--
-- Placeholders: {bank} and {bench} are the (quoted) schemas, {as_of} the business date
-- (DATE literal), {as_of_ts} its midnight in Asia/Shanghai (TIMESTAMPTZ literal).
-- Sections: "-- @build [ENGINE]" is the SELECT whose result becomes {bench}."<job>";
-- "-- @check NAME [ENGINE]" is a query that returns no rows when the invariant holds
-- (the rows it returns are the violations). ENGINE (postgres | duckdb) overrides the
-- section for that engine only: dialect differences are explicit, per file.

-- @build
SELECT c.customer_id,
       c.branch_id,
       c.segment,
       {as_of} AS snapshot_date,
       COALESCE(d.deposits, 0) AS deposits,
       COALESCE(h.investments, 0) AS investments,
       COALESCE(d.deposits, 0) + COALESCE(h.investments, 0) AS aum
FROM {bank}.customers AS c
LEFT JOIN (
    SELECT customer_id, SUM(balance) AS deposits
    FROM {bank}.accounts
    WHERE status <> 'closed'
    GROUP BY customer_id
) AS d ON d.customer_id = c.customer_id
LEFT JOIN (
    SELECT customer_id, SUM(amount) AS investments
    FROM {bank}.holdings
    WHERE status = 'active'
    GROUP BY customer_id
) AS h ON h.customer_id = c.customer_id

-- @check one_row_per_customer
SELECT s.n AS snapshot_rows, s.distinct_customers, c.n AS customers
FROM (SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS distinct_customers FROM {bench}.aum_snapshot) AS s,
     (SELECT COUNT(*) AS n FROM {bank}.customers) AS c
WHERE s.n <> c.n OR s.distinct_customers <> c.n

-- @check total_equals_holdings_plus_balances
SELECT s.total AS snapshot_total, h.total AS holdings_total, b.total AS balances_total
FROM (SELECT COALESCE(SUM(aum), 0) AS total FROM {bench}.aum_snapshot) AS s,
     (SELECT COALESCE(SUM(amount), 0) AS total FROM {bank}.holdings WHERE status = 'active') AS h,
     (SELECT COALESCE(SUM(balance), 0) AS total FROM {bank}.accounts WHERE status <> 'closed') AS b
WHERE s.total <> h.total + b.total

-- @check parts_add_up
SELECT customer_id, deposits, investments, aum
FROM {bench}.aum_snapshot
WHERE aum <> deposits + investments OR deposits < 0 OR investments < 0
LIMIT 5
